//! `R/prepare-namespace`: istio-system in the remote, annotated with the
//! primary that manages it (`topology.istio.io/controlPlaneClusters`).

use crate::rendered::Rendered;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The primary cluster's name.
    pub primary: String,
}

/// The namespace as the guide leaves it: istio-system, annotated.
pub fn render(input: &Input) -> Rendered {
    Rendered {
        documents: vec![json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "istio-system",
                "annotations": {"topology.istio.io/controlPlaneClusters": input.primary},
            }
        })],
        unknown: false,
    }
}
