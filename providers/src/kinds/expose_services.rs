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

// ---- against a cluster: the same verbs as expose-istiod's objects ----

pub use super::expose_istiod::{destroy, read};

use crate::env::{Applied, Env, StepError};
use crate::rendered::Target;

/// Server-side apply of the Gateway.
pub async fn apply(
    env: &Env,
    step: &str,
    target: &Target,
    rendered: &Rendered,
) -> Result<Applied, StepError> {
    super::expose_istiod::apply(env, step, target, rendered, None).await
}
