//! `P/install-eastwest-gateway`: `istioctl install` of the east-west gateway
//! (what `samples/multicluster/gen-eastwest-gateway.sh --network N` prints).

use crate::rendered::{Rendered, deep_merge};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub network: String,
    pub revision: Option<String>,
    /// The cluster's `[cluster.eastwest_values]`, deep-merged into `spec.values`.
    pub values: Map<String, Value>,
    /// `[mesh] istio_version`, recorded in the document (see [`super::iop_metadata`]).
    pub istio_version: Option<String>,
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
            "metadata": super::iop_metadata("eastwest", input.istio_version.as_deref()),
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

/// The kinds Istio's gateway chart renders.
const GATEWAY_KINDS: &[(&str, &str, &str)] = &[
    ("apps/v1", "Deployment", "deployments"),
    ("v1", "Service", "services"),
    ("v1", "ServiceAccount", "serviceaccounts"),
    ("rbac.authorization.k8s.io/v1", "Role", "roles"),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
    ),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
];

/// Deletes the gateway's own objects: those istioctl labelled as the
/// `IngressGateways` component of the IstioOperator recorded here.
///
/// Not `istioctl uninstall -f <document>`, which is what Istio's guide would
/// suggest: every install on the default revision regenerates the default
/// tag's webhooks (`istio-revision-tag-default`, `istiod-default-validator`)
/// and labels them as its own, so uninstalling the gateway's IstioOperator
/// deletes them and sidecar injection stops in the whole cluster.
pub async fn destroy(
    env: &Env,
    step: &str,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<String, StepError> {
    let docs = recorded.documents()?;
    let owner = docs
        .first()
        .and_then(|d| d.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .unwrap_or("eastwest");
    let selector = format!(
        "install.operator.istio.io/owning-resource={owner},operator.istio.io/component=IngressGateways"
    );
    env.say(
        step,
        &format!("deleting the east-west gateway ({selector})…"),
    );
    let conn = env.clusters.connect(target).await?;
    let deleted =
        crate::k8s::delete_labelled(&conn, GATEWAY_KINDS, crate::k8s::ISTIO_NAMESPACE, &selector)
            .await?;
    Ok(deleted
        .iter()
        .map(|d| format!("deleted {d}\n"))
        .collect::<String>())
}
