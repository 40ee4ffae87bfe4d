//! `P/install-control-plane`: `istioctl install` of the primary's control plane.

use crate::rendered::{Rendered, deep_merge};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub mesh_id: String,
    pub cluster: String,
    pub network: String,
    pub revision: Option<String>,
    /// `values.pilot.env.EXTERNAL_ISTIOD: true`: set when the primary has remotes.
    pub external_istiod: bool,
    /// The cluster's `[cluster.values]`, deep-merged into `spec.values`.
    pub values: Map<String, Value>,
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
        values["pilot"] = json!({"env": {"EXTERNAL_ISTIOD": true}});
    }
    let mut values = values.as_object().cloned().unwrap_or_default();
    deep_merge(&mut values, &input.values);
    let mut spec = Map::new();
    if let Some(rev) = &input.revision {
        spec.insert("revision".into(), Value::from(rev.as_str()));
    }
    spec.insert("values".into(), Value::Object(values));
    Rendered {
        documents: vec![json!({
            "apiVersion": "install.istio.io/v1alpha1",
            "kind": "IstioOperator",
            "spec": spec,
        })],
        unknown: false,
    }
}
