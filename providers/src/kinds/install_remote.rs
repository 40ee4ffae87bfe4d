//! `R/install-remote`: `istioctl install` of the remote profile, pointing at
//! the primary's east-west address.

use crate::kinds::OutputLookup;
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
}

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
    deep_merge(&mut values, &input.values);
    let mut spec = Map::new();
    if let Some(rev) = &input.revision {
        spec.insert("revision".into(), Value::from(rev.as_str()));
    }
    spec.insert("profile".into(), Value::from("remote"));
    spec.insert("values".into(), Value::Object(values));
    Rendered {
        documents: vec![json!({
            "apiVersion": "install.istio.io/v1alpha1",
            "kind": "IstioOperator",
            "spec": spec,
        })],
        unknown,
    }
}
