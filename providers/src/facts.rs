//! What a step's rendered input says about the mesh, read back for the
//! plan's review (`engine::review`, `engine::policy`): a cluster's network
//! and primary, the revision, the Istio version, the root of trust, and in
//! plain words what deleting a step removes.
//!
//! The planner keeps only rendered inputs (`# context: …` then YAML
//! documents), the same for the recorded and the planned side, so the
//! meaning of a change is read from them here, where the documents are
//! known. Pure, and it never fails: what it cannot read, it does not say.

use crate::kinds::StepKind;
use crate::kinds::istioctl_install::{ISTIO_VERSION_ANNOTATION, revision_of};
use serde_json::Value;

/// What one rendered input says. `None`: the input does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The cluster's Istio network: the namespace's
    /// `topology.istio.io/network` label, an IstioOperator's
    /// `values.global.network`, or a remote's injection path.
    pub network: Option<String>,
    /// A remote's primary (the namespace's `controlPlaneClusters`).
    pub primary: Option<String>,
    /// An IstioOperator's revision, `default` when it has none.
    pub revision: Option<String>,
    /// An IstioOperator's `mesh/istio-version` annotation.
    pub istio_version: Option<String>,
    /// The root of trust a `cacerts` is made from (its sha256).
    pub root_sha256: Option<String>,
}

const NETWORK_LABEL: &str = "topology.istio.io/network";
const CONTROL_PLANE_ANNOTATION: &str = "topology.istio.io/controlPlaneClusters";

/// The documents of a rendered input; none when it is not YAML.
fn documents(input: &str) -> Vec<Value> {
    let yaml = crate::env::Recorded {
        input,
        outputs: &Default::default(),
    }
    .yaml();
    serde_saphyr::from_multiple::<Value>(&yaml)
        .unwrap_or_default()
        .into_iter()
        .filter(Value::is_object)
        .collect()
}

fn str_at(doc: &Value, pointer: &str) -> Option<String> {
    doc.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

fn annotation(doc: &Value, key: &str) -> Option<String> {
    doc.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Reads the facts of one rendered input.
pub fn of_input(input: &str) -> Facts {
    let mut f = Facts::default();
    for doc in documents(input) {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "Namespace" => {
                if let Some(n) = doc
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(NETWORK_LABEL))
                    .and_then(Value::as_str)
                {
                    f.network = Some(n.to_string());
                }
                f.primary = annotation(&doc, CONTROL_PLANE_ANNOTATION);
            }
            "IstioOperator" => {
                f.revision = Some(revision_of(Some(&doc)));
                f.istio_version = annotation(&doc, ISTIO_VERSION_ANNOTATION);
                f.network = f
                    .network
                    .or_else(|| str_at(&doc, "/spec/values/global/network"))
                    .or_else(|| {
                        // A remote on its primary's network says it only here:
                        // `/inject/cluster/<cluster>/net/<network>`.
                        str_at(&doc, "/spec/values/istiodRemote/injectionPath")
                            .and_then(|p| p.rsplit_once("/net/").map(|(_, n)| n.to_string()))
                    });
            }
            "RevisionTag" => f.revision = str_at(&doc, "/spec/revision"),
            "Secret" => {
                if let Some(r) = annotation(&doc, crate::kinds::plug_ca::ROOT_ANNOTATION) {
                    f.root_sha256 = Some(r);
                }
            }
            _ => {}
        }
    }
    f
}

/// What deleting a step removes, in plain words, from its recorded input
/// (each kind says it: [`crate::Kind::removes`]). `holder` is, for an
/// `attach`, the primary that holds the Secret. A kind mesh does not know
/// (a state from a newer mesh) is named as is.
pub fn removes(kind: &str, cluster: &str, holder: Option<&str>, recorded: &str) -> String {
    match kind.parse::<StepKind>() {
        Ok(kind) => kind.removes(cluster, holder, &documents(recorded)),
        Err(_) => format!("what step kind `{kind}` applied in {cluster}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_networks_primaries_revisions_versions_and_roots() {
        let ns = "# context: c2\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n  \
                  labels:\n    topology.istio.io/network: network2\n  annotations:\n    \
                  topology.istio.io/controlPlaneClusters: cluster1\n";
        let f = of_input(ns);
        assert_eq!(f.network.as_deref(), Some("network2"));
        assert_eq!(f.primary.as_deref(), Some("cluster1"));
        assert_eq!(f.revision, None);

        let iop = "# context: c1\napiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\n\
                   metadata:\n  name: control-plane\n  annotations:\n    mesh/istio-version: 1.28.0\n\
                   spec:\n  revision: canary\n  values:\n    global:\n      network: network1\n";
        let f = of_input(iop);
        assert_eq!(f.revision.as_deref(), Some("canary"));
        assert_eq!(f.istio_version.as_deref(), Some("1.28.0"));
        assert_eq!(f.network.as_deref(), Some("network1"));

        let remote = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata:\n  \
                      name: remote\nspec:\n  values:\n    istiodRemote:\n      \
                      injectionPath: /inject/cluster/c3/net/network1\n";
        let f = of_input(remote);
        assert_eq!(f.network.as_deref(), Some("network1"));
        assert_eq!(f.revision.as_deref(), Some("default"));

        let ca = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cacerts\n  annotations:\n    \
                  mesh/root-sha256: abc\n";
        assert_eq!(of_input(ca).root_sha256.as_deref(), Some("abc"));
        assert_eq!(of_input("not: [yaml").network, None);
        assert_eq!(of_input(""), Facts::default());
    }

    #[test]
    fn a_remote_namespace_delete_says_the_namespace_goes() {
        let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: istio-system\n  annotations:\n    \
                  topology.istio.io/controlPlaneClusters: cluster1\n";
        let r = removes("prepare-namespace", "cluster3", None, ns);
        assert!(r.starts_with("namespace istio-system in cluster3"), "{r}");
        let r = removes("attach", "cluster3", Some("cluster1"), "");
        assert!(
            r.contains("istio-remote-secret-cluster3 in cluster1"),
            "{r}"
        );
        assert!(removes("future-kind", "c", None, "").contains("future-kind"));
    }
}
