//! `P/ambient-eastwest-gateway`: an ambient mesh's east-west gateway for
//! P's network, exactly what Istio's
//! `samples/multicluster/gen-eastwest-gateway.sh --ambient --network N`
//! prints: a Gateway API `Gateway` of class `istio-east-west` with one
//! HBONE listener on 15008 that terminates Istio mTLS.
//!
//! No istioctl: istiod itself deploys the gateway's pod and LoadBalancer
//! Service from this Gateway (its deployment controller), and writes the
//! address into the Gateway's `status.addresses`. The istiods of the other
//! clusters read that Gateway through their remote secret for P, and route
//! cross-network traffic to that address (Istio's
//! `pilot/pkg/serviceregistry/ambient/networks.go`).

use crate::rendered::Rendered;
use serde_json::json;

pub const NAME: &str = crate::istio::EASTWEST_GATEWAY;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// P's network, the Gateway's `topology.istio.io/network` label.
    pub network: String,
    /// `[mesh] revision`: the Gateway's `istio.io/rev` label, so that the
    /// revision's istiod deploys it (Istio's script leaves it out, for the
    /// default revision).
    pub revision: Option<String>,
}

/// gen-eastwest-gateway.sh --ambient's Gateway.
pub fn render(input: &Input) -> Rendered {
    let mut labels = json!({"topology.istio.io/network": input.network});
    if let Some(rev) = &input.revision {
        labels["istio.io/rev"] = json!(rev);
    }
    Rendered {
        documents: vec![json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {
                "name": NAME,
                "namespace": "istio-system",
                "labels": labels,
            },
            "spec": {
                "gatewayClassName": "istio-east-west",
                "listeners": [{
                    "name": "mesh",
                    "port": 15008,
                    "protocol": "HBONE",
                    "tls": {
                        "mode": "Terminate",
                        "options": {"gateway.istio.io/tls-terminate-mode": "ISTIO_MUTUAL"},
                    },
                }],
            },
        })],
        unknown: false,
    }
}

// ---- against a cluster: [`Kind`]'s defaults ----

use crate::access::{self, Access, Need};
use crate::kind::{Kind, OutputLookup};

/// The kind: its Gateway server-side applied, read and deleted by
/// [`Kind`]'s defaults.
pub struct AmbientEastwestGateway;

impl Kind for AmbientEastwestGateway {
    const NAME: &'static str = "ambient-eastwest-gateway";
    type Input = Input;

    /// The Gateway, server-side applied.
    fn apply_access(_: &Input, update: bool) -> Vec<Need> {
        access::here(access::applied("gateway.networking.k8s.io", &["gateways"], update))
    }

    fn destroy_access() -> Vec<Access> {
        access::in_istio(&["delete"], "gateway.networking.k8s.io", "gateways")
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn removes(cluster: &str, _: Option<&str>, _: &[serde_json::Value]) -> String {
        format!(
            "Gateway {NAME} in {cluster} (istiod removes its pod and Service): the other \
             networks can no longer reach its ambient workloads"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact output of Istio 1.31's
    /// `gen-eastwest-gateway.sh --ambient --network network2`.
    #[test]
    fn renders_what_istios_script_prints() {
        let script = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: istio-eastwestgateway
  namespace: istio-system
  labels:
    topology.istio.io/network: "network2"
spec:
  gatewayClassName: "istio-east-west"
  listeners:
    - name: mesh
      port: 15008
      protocol: HBONE
      tls:
        mode: Terminate
        options:
          gateway.istio.io/tls-terminate-mode: ISTIO_MUTUAL
"#;
        let want: serde_json::Value = serde_saphyr::from_str(script).unwrap();
        let got = render(&Input {
            network: "network2".into(),
            revision: None,
        });
        assert_eq!(got.documents, vec![want]);
    }
}
