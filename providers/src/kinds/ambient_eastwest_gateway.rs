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
//!
//! So apply waits, after the server-side apply, until istiod has programmed
//! the Gateway with an address (bounded by the wait timeout): a step that
//! ends before leaves a mesh `mesh check` fails, and the other networks
//! with nothing to route to.

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
use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::istio::NAMESPACE as NS;
use crate::kind::{Kind, OutputLookup};

/// The kind: its Gateway server-side applied (then waited for), read and
/// deleted by [`Kind`]'s defaults.
pub struct AmbientEastwestGateway;

impl Kind for AmbientEastwestGateway {
    const NAME: &'static str = "ambient-eastwest-gateway";
    type Input = Input;

    /// The Gateway, server-side applied, then watched until programmed.
    fn apply_access(_: &Input, update: bool) -> Vec<Need> {
        let mut need = access::applied("gateway.networking.k8s.io", &["gateways"], update);
        need.extend(access::in_istio(
            &["list", "watch"],
            "gateway.networking.k8s.io",
            "gateways",
        ));
        access::here(need)
    }

    fn destroy_access() -> Vec<Access> {
        access::in_istio(&["delete"], "gateway.networking.k8s.io", "gateways")
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    /// The default apply, then a watch of the Gateway until istiod has
    /// programmed it with an address.
    async fn apply(
        cx: Ctx<'_>,
        _input: &Input,
        rendered: &Rendered,
        previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        let mut applied = crate::objects::apply(cx, rendered, previous, &|_| false).await?;
        let conn = cx.connect().await?;
        let ar = crate::k8s::resource_of(&rendered.documents[0]).expect("Gateway is a known kind");
        let timeout = cx.env.wait_timeout;
        cx.say(&format!("waiting for istiod to program Gateway {NAME}…"));
        let programmed = |gw: &kube::api::DynamicObject| {
            crate::istio::gateway_programmed(&gw.data)
                .filter(|a| !a.is_empty())
                .map(Ok)
        };
        match crate::k8s::wait_for(&conn, &ar, Some(NS), NAME, timeout, programmed).await {
            Ok(Ok(addresses)) => {
                applied.log.push_str(&format!(
                    "Gateway {NAME} programmed at {}\n",
                    addresses.join(", ")
                ));
                Ok(applied)
            }
            Ok(Err(why)) => Err(StepError::Failed(why)),
            Err(_) => Err(StepError::Failed(format!(
                "Gateway {NS}/{NAME} in cluster `{}` was not programmed with an address within {} s \
                 (applied; the next apply waits again). istiod deploys its pod and LoadBalancer \
                 Service: does istiod run, and does the cluster have a load-balancer \
                 implementation? `kubectl --context {} -n {NS} describe \
                 gateways.gateway.networking.k8s.io {NAME}` shows its conditions",
                cx.target.cluster,
                timeout.as_secs(),
                cx.target.context
            ))),
        }
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
