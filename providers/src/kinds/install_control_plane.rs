//! `P/install-control-plane`: `istioctl install` of the primary's control plane.

use crate::rendered::{Rendered, deep_merge};
use serde_json::{Map, Value, json};

/// The control plane's IstioOperator name (why it has one:
/// [`super::istioctl_install::iop_metadata`]).
pub const NAME: &str = "control-plane";

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub mesh_id: String,
    pub cluster: String,
    pub network: String,
    pub revision: Option<String>,
    /// `values.pilot.env.EXTERNAL_ISTIOD: true`: set when the primary has remotes.
    pub external_istiod: bool,
    /// `[mesh] istio_version`, recorded in the document (see
    /// [`super::istioctl_install::iop_metadata`]).
    pub istio_version: Option<String>,
    /// The cluster's `[cluster.values]`, deep-merged into `spec.values`.
    pub values: Map<String, Value>,
    /// A kept revision's own istioctl (`[[mesh.keep_revision]]`): it alone
    /// installs and uninstalls this revision. None: `[istioctl] path`.
    pub istioctl: Option<String>,
    /// `values.pilot.env.ISTIO_MULTIROOT_MESH: true`: set from a root
    /// rotation's first phase on (see `plug_ca`), and kept, so that istiod
    /// takes a root added or dropped without a restart.
    pub multi_root: bool,
    /// `meshConfig.defaultConfig.proxyMetadata.PROXY_CONFIG_XDS_AGENT:
    /// "true"`: set by a root rotation's phase 1 (`engine::trust`), and
    /// kept where the recorded install has it.
    pub xds_agent: bool,
    /// `dataplane = "ambient"`: Istio's `ambient` profile (istiod,
    /// istio-cni and ztunnel), with multi-network ambient
    /// (`AMBIENT_ENABLE_MULTI_NETWORK`, with `AMBIENT_ENABLE_BAGGAGE`) when
    /// the mesh spans networks.
    pub ambient: Option<Ambient>,
}

/// An ambient control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct Ambient {
    pub multi_network: bool,
}

/// The seed's cluster1 document (`apiVersion`, `kind`, `spec.values.global`
/// with meshID, clusterName and network), `EXTERNAL_ISTIOD` folded in so it
/// shows in plans, the revision, then the user's values on top.
pub fn render(input: &Input) -> Rendered {
    let mut values = json!({
        "global": {
            "meshID": input.mesh_id,
            "multiCluster": {"clusterName": input.cluster},
            "network": input.network,
        }
    });
    if input.external_istiod {
        values["pilot"]["env"]["EXTERNAL_ISTIOD"] = json!(true);
    }
    if input.multi_root {
        values["pilot"]["env"][super::plug_ca::MULTI_ROOT_ENV] = json!(true);
    }
    if let Some(a) = &input.ambient
        && a.multi_network
    {
        // A string, as Istio's guide sets it (`--set
        // values.pilot.env.AMBIENT_ENABLE_MULTI_NETWORK="true"`).
        values["pilot"]["env"]["AMBIENT_ENABLE_MULTI_NETWORK"] = json!("true");
        // Peer metadata across networks (waypoints' telemetry), as Istio's
        // own multi-network ambient test installs it and its 1.29 guide
        // says to (`tests/integration/ambient/main_test.go`); an istiod
        // that does not know the flag ignores it.
        values["pilot"]["env"]["AMBIENT_ENABLE_BAGGAGE"] = json!("true");
    }
    let mut values = values.as_object().cloned().unwrap_or_default();
    deep_merge(&mut values, &input.values);
    let mut spec = Map::new();
    if input.ambient.is_some() {
        spec.insert("profile".into(), Value::from("ambient"));
    }
    if let Some(rev) = &input.revision {
        spec.insert("revision".into(), Value::from(rev.as_str()));
    }
    if input.xds_agent {
        // The proxies' side of a root rotation without restarts, as
        // Istio's rotation test installs it: their agents take the trust
        // bundle from istiod over xDS and re-request their certificates
        // when it changes. Injected as env, so into pods created from now
        // on (the plan names the proxies that need one restart).
        spec.insert(
            "meshConfig".into(),
            json!({"defaultConfig": {"proxyMetadata": {crate::proxies::XDS_AGENT_ENV: "true"}}}),
        );
    }
    spec.insert("values".into(), Value::Object(values));
    let mut doc = json!({
            "apiVersion": "install.istio.io/v1alpha1",
            "kind": "IstioOperator",
            "metadata": super::istioctl_install::iop_metadata(NAME, input.istio_version.as_deref()),
            "spec": spec,
        });
    if input.istioctl.is_some() {
        super::istioctl_install::mark_kept(&mut doc);
    }
    Rendered {
        documents: vec![doc],
        unknown: false,
    }
}

// ---- against a cluster: an istioctl install ----

use super::istioctl_install::{IstioctlInstall, Uninstall, object, revisioned};
use crate::kind::OutputLookup;

/// The kind: [`IstioctlInstall`] of the control plane.
pub struct InstallControlPlane;

impl IstioctlInstall for InstallControlPlane {
    const NAME: &'static str = "install-control-plane";
    const WHAT: &'static str = "control plane";
    /// Uninstalled with `--purge`, and istio-system deleted with it.
    const UNINSTALL: Uninstall = Uninstall::PurgeAndNamespace;
    const OWNER: &'static str = NAME;
    /// What makes this istiod this mesh's control plane of this cluster.
    const DEFINING: &'static [(&'static str, &'static str)] = &[
        ("/global/meshID", "meshID"),
        ("/global/multiCluster/clusterName", "clusterName"),
        ("/global/network", "network"),
        ("/pilot/env/EXTERNAL_ISTIOD", "EXTERNAL_ISTIOD"),
    ];
    type Input = Input;

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn istioctl(input: &Input) -> Option<&str> {
        input.istioctl.as_deref()
    }

    fn removes(cluster: &str) -> String {
        format!(
            "Istio's control plane in {cluster} (`istioctl uninstall --purge`), \
             then namespace istio-system with everything in it"
        )
    }

    /// istiod's Deployment (`istiod` or `istiod-<revision>`), and for the
    /// ambient profile the DaemonSets of istio-cni and ztunnel.
    fn owned(recorded: &[Value]) -> Vec<Value> {
        let ns = Some(crate::k8s::ISTIO_NAMESPACE);
        let mut owned = vec![object(
            "apps/v1",
            "Deployment",
            ns,
            &revisioned("istiod", recorded.first()),
        )];
        if recorded
            .first()
            .and_then(|d| d.pointer("/spec/profile"))
            .and_then(Value::as_str)
            == Some("ambient")
        {
            for name in ["istio-cni-node", "ztunnel"] {
                owned.push(object("apps/v1", "DaemonSet", ns, name));
            }
        }
        owned
    }
}
