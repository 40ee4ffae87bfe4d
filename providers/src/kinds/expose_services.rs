//! `P/expose-services`: Gateway `cross-network-gateway` in istio-system
//! (Istio's `samples/multicluster/expose-services.yaml`), so that workloads
//! of other networks reach this network's services through its east-west
//! gateway on port 15443.

use crate::rendered::Rendered;
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {}

/// expose-services.yaml, with `metadata.namespace: istio-system`, where
/// Istio's guide applies it.
pub fn render(_input: &Input) -> Rendered {
    Rendered {
        documents: vec![json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "cross-network-gateway", "namespace": "istio-system"},
            "spec": {
                "selector": {"istio": "eastwestgateway"},
                "servers": [{
                    "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                    "tls": {"mode": "AUTO_PASSTHROUGH"},
                    "hosts": ["*.local"],
                }],
            }
        })],
        unknown: false,
    }
}

// ---- against a cluster: [`Kind`]'s defaults ----

use crate::access::{self, Access, Need};
use crate::kind::{Kind, OutputLookup};

/// The kind: its Gateway server-side applied, read and deleted by
/// [`Kind`]'s defaults.
pub struct ExposeServices;

impl Kind for ExposeServices {
    const NAME: &'static str = "expose-services";
    type Input = Input;

    /// The Gateway, server-side applied.
    fn apply_access(_: &Input, update: bool) -> Vec<Need> {
        access::here(access::applied("networking.istio.io", &["gateways"], update))
    }

    fn destroy_access() -> Vec<Access> {
        access::in_istio(&["delete"], "networking.istio.io", "gateways")
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn removes(cluster: &str, _: Option<&str>, _: &[serde_json::Value]) -> String {
        format!(
            "Gateway cross-network-gateway in {cluster}: other networks can no \
             longer reach its services"
        )
    }
}
