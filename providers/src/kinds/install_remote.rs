//! `R/install-remote`: `istioctl install` of the remote profile, pointing at
//! the primary's east-west address.

use crate::kind::OutputLookup;
use crate::rendered::{KNOWN_AFTER_APPLY, Known, Rendered, deep_merge};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub cluster: String,
    pub network: String,
    /// The primary's name: its `eastwest-address` step gives `remotePilotAddress`.
    pub primary: String,
    pub revision: Option<String>,
    pub values: Map<String, Value>,
    /// `[mesh] istio_version`, recorded in the document (see
    /// [`super::istioctl_install::iop_metadata`]).
    pub istio_version: Option<String>,
    /// In a multi-network mesh: `values.global.network` is the remote's own.
    pub multi_network: bool,
    /// A kept revision's own istioctl, as the control plane's.
    pub istioctl: Option<String>,
}

/// The remote profile's IstioOperator name (why it has one:
/// [`super::istioctl_install::iop_metadata`]).
pub const NAME: &str = "remote";

/// The seed's cluster2 document: the remote profile, the injection path
/// for this cluster and network, and the primary's east-west address as
/// `remotePilotAddress` (`(known after apply)` until it is known).
pub fn render(input: &Input, outputs: OutputLookup<'_>) -> Rendered {
    let address_step = format!("{}/eastwest-address", input.primary);
    let (address, unknown) = match outputs(&address_step, "address") {
        Known::Known(v) => (v, false),
        Known::AfterApply => (Value::from(KNOWN_AFTER_APPLY), true),
    };
    let mut values = json!({
        "istiodRemote": {"injectionPath": format!("/inject/cluster/{}/net/{}", input.cluster, input.network)},
        "global": {"remotePilotAddress": address},
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if input.multi_network {
        values["global"]["network"] = Value::from(input.network.as_str());
    }
    deep_merge(&mut values, &input.values);
    let mut spec = Map::new();
    if let Some(rev) = &input.revision {
        spec.insert("revision".into(), Value::from(rev.as_str()));
    }
    spec.insert("profile".into(), Value::from("remote"));
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
        unknown,
    }
}

// ---- against a cluster: an istioctl install ----

use super::istioctl_install::{IstioctlInstall, Uninstall, object, revisioned};

/// The kind: [`IstioctlInstall`] of the remote profile.
pub struct InstallRemote;

impl IstioctlInstall for InstallRemote {
    const NAME: &'static str = "install-remote";
    const WHAT: &'static str = "remote profile";
    /// `--purge`; the remote's istio-system is its prepare-namespace step's.
    const UNINSTALL: Uninstall = Uninstall::Purge;
    const OWNER: &'static str = NAME;
    /// Where the remote's workloads find their control plane.
    const DEFINING: &'static [(&'static str, &'static str)] = &[
        ("/global/remotePilotAddress", "remotePilotAddress"),
        ("/istiodRemote/injectionPath", "injectionPath"),
        ("/global/network", "network"),
    ];
    type Input = Input;

    fn render(input: &Input, outputs: OutputLookup<'_>) -> Rendered {
        render(input, outputs)
    }

    fn istioctl(input: &Input) -> Option<&str> {
        input.istioctl.as_deref()
    }

    fn removes(cluster: &str) -> String {
        format!("Istio's remote profile in {cluster} (`istioctl uninstall --purge`)")
    }

    /// The sidecar injector's webhook, and Istio's reader ServiceAccount
    /// (which `attach` needs). A reader named by
    /// `values.global.readerServiceAccount` is the user's to create, not
    /// istioctl's, so it is not looked for here (attach reports it).
    fn owned(recorded: &[Value]) -> Vec<Value> {
        let doc = recorded.first();
        let custom_reader = doc
            .and_then(|d| d.pointer("/spec/values/global/readerServiceAccount/name"))
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let mut owned = Vec::new();
        if !custom_reader {
            owned.push(object(
                "v1",
                "ServiceAccount",
                Some(crate::k8s::ISTIO_NAMESPACE),
                "istio-reader-service-account",
            ));
        }
        owned.push(object(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            None,
            &revisioned("istio-sidecar-injector", doc),
        ));
        owned
    }
}
