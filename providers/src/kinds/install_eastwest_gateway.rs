//! `P/install-eastwest-gateway`: `istioctl install` of the east-west gateway
//! (what `samples/multicluster/gen-eastwest-gateway.sh --network N` prints).

use crate::rendered::{Rendered, deep_merge};
use serde_json::{Map, Value, json};

/// The gateway's IstioOperator name (why it has one:
/// [`super::istioctl_install::iop_metadata`]).
pub const IOP_NAME: &str = "eastwest";

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub network: String,
    pub revision: Option<String>,
    /// The cluster's `[cluster.eastwest_values]`, deep-merged into `spec.values`.
    pub values: Map<String, Value>,
    /// `[mesh] istio_version`, recorded in the document (see
    /// [`super::istioctl_install::iop_metadata`]).
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
            "metadata": super::istioctl_install::iop_metadata(IOP_NAME, input.istio_version.as_deref()),
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

// ---- against a cluster: an istioctl install ----

use super::istioctl_install::{IstioctlInstall, Uninstall, object};
use crate::kind::OutputLookup;

/// The kind: [`IstioctlInstall`] of the east-west gateway.
pub struct InstallEastwestGateway;

impl IstioctlInstall for InstallEastwestGateway {
    const NAME: &'static str = "install-eastwest-gateway";
    const WHAT: &'static str = "east-west gateway";
    /// Its own objects deleted by their labels, never `istioctl uninstall`
    /// (why: [`Uninstall::Labelled`]).
    const UNINSTALL: Uninstall = Uninstall::Labelled {
        component: "IngressGateways",
        owner: IOP_NAME,
    };
    /// The other networks (and a remote's sidecars, through
    /// `eastwest-address`) reach this cluster at its address.
    const SERVICE_ADDRESS: Option<&'static str> = Some(crate::istio::EASTWEST_GATEWAY);
    const OWNER: &'static str = IOP_NAME;
    /// One gateway (one Service, one address) for the mesh: a revision
    /// change upgrades it in place.
    const MOVES_WITH_REVISION: bool = true;
    type Input = Input;

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn removes(cluster: &str) -> String {
        format!(
            "the east-west gateway in {cluster}: traffic from other networks \
             and remotes through it stops"
        )
    }

    /// The gateway's Service.
    fn owned(_recorded: &[Value]) -> Vec<Value> {
        vec![object(
            "v1",
            "Service",
            Some(crate::k8s::ISTIO_NAMESPACE),
            "istio-eastwestgateway",
        )]
    }
}
