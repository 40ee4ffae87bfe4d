//! `P/install-eastwest-gateway`: `istioctl install` of the east-west gateway
//! (what `samples/multicluster/gen-eastwest-gateway.sh --network N` prints).

use crate::rendered::{Rendered, deep_merge};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub network: String,
    pub revision: Option<String>,
    /// The cluster's `[cluster.values]`, deep-merged into `spec.values`.
    pub values: Map<String, Value>,
}

/// Exactly what `gen-eastwest-gateway.sh --network <network> [--revision
/// <rev>]` prints (reference/eastwest-gateway-network1.yaml), with the
/// user's values merged into `spec.values`.
pub fn render(input: &Input) -> Rendered {
    let net = input.network.as_str();
    let mut values = json!({
        "gateways": {"istio-ingressgateway": {"injectionTemplate": "gateway"}},
        "global": {"network": net},
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    deep_merge(&mut values, &input.values);
    Rendered {
        documents: vec![json!({
            "apiVersion": "install.istio.io/v1alpha1",
            "kind": "IstioOperator",
            "metadata": {"name": "eastwest"},
            "spec": {
                "revision": input.revision.as_deref().unwrap_or(""),
                "profile": "empty",
                "components": {
                    "ingressGateways": [{
                        "name": "istio-eastwestgateway",
                        "label": {
                            "istio": "eastwestgateway",
                            "app": "istio-eastwestgateway",
                            "topology.istio.io/network": net,
                        },
                        "enabled": true,
                        "k8s": {
                            "env": [{"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": net}],
                            "service": {
                                "ports": [
                                    {"name": "status-port", "port": 15021, "targetPort": 15021},
                                    {"name": "tls", "port": 15443, "targetPort": 15443},
                                    {"name": "tls-istiod", "port": 15012, "targetPort": 15012},
                                    {"name": "tls-webhook", "port": 15017, "targetPort": 15017},
                                ]
                            }
                        }
                    }]
                },
                "values": values,
            }
        })],
        unknown: false,
    }
}

// ---- against a cluster ----

use crate::env::{Applied, Env, Recorded, StepError};
use crate::observe::Observation;
use crate::rendered::Target;

/// `istioctl install -y -f -` with the east-west IstioOperator.
pub async fn apply(
    env: &Env,
    step: &str,
    target: &Target,
    rendered: &Rendered,
) -> Result<Applied, StepError> {
    crate::env::istioctl_install(env, step, target, rendered, "east-west gateway").await
}

/// Drift: the gateway's Service missing.
pub async fn read(
    env: &Env,
    target: &Target,
    _recorded: &Recorded<'_>,
) -> Result<Observation, StepError> {
    crate::env::expect_present(
        env,
        target,
        (
            "v1",
            "Service",
            crate::k8s::ISTIO_NAMESPACE,
            "istio-eastwestgateway",
        ),
    )
    .await
}

/// `istioctl uninstall -y -f <the recorded document>`.
pub async fn destroy(
    env: &Env,
    step: &str,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<String, StepError> {
    env.say(step, "istioctl uninstall -f (east-west gateway)…");
    let log = env
        .istioctl
        .uninstall_document(target, env.kubeconfig.as_ref(), &recorded.yaml())
        .await?;
    Ok(log.output)
}
