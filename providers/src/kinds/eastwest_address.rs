//! `P/eastwest-address`: wait until the east-west gateway's LoadBalancer
//! Service has an external IP; its output `address` feeds the remotes.

use crate::rendered::Rendered;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// How long apply waits for the address.
    pub timeout_secs: u64,
}

/// What the step waits for; it applies nothing.
pub fn render(input: &Input) -> Rendered {
    Rendered {
        documents: vec![json!({
            "wait": {
                "service": "istio-system/istio-eastwestgateway",
                "for": ".status.loadBalancer.ingress[0].ip",
                "timeout": format!("{}s", input.timeout_secs),
            }
        })],
        unknown: false,
    }
}

// ---- against a cluster ----

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::access::{self, Access, Need};
use crate::kind::{Adoption, Kind, OutputLookup};
use crate::observe::Observation;
use kube::api::ApiResource;
use std::collections::BTreeMap;

const SERVICE: &str = "istio-eastwestgateway";

fn service_resource() -> ApiResource {
    crate::k8s::resource_of(&serde_json::json!({"apiVersion": "v1", "kind": "Service"}))
        .expect("known kind")
}

/// The kind.
pub struct EastwestAddress;

impl Kind for EastwestAddress {
    const NAME: &'static str = "eastwest-address";
    type Input = Input;

    /// It only waits: reads and watches the gateway's Service.
    fn apply_access(_: &Input, _update: bool) -> Vec<Need> {
        access::here(access::in_istio(&["get", "watch"], "", "services"))
    }

    /// Nothing to undo.
    fn destroy_access() -> Vec<Access> {
        Vec::new()
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn removes(cluster: &str, _: Option<&str>, _: &[Value]) -> String {
        format!("nothing in {cluster}: only the recorded east-west address")
    }

    /// Waits (a watch, with a timeout) for the gateway's external IP.
    async fn apply(
        cx: Ctx<'_>,
        input: &Input,
        _rendered: &Rendered,
        _previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        let (env, target) = (cx.env, cx.target);
        let conn = cx.connect().await?;
        cx.say(&format!("waiting for {SERVICE} to get an external IP…"));
        let timeout = std::time::Duration::from_secs(input.timeout_secs).min(
            env.wait_timeout
                .max(std::time::Duration::from_secs(input.timeout_secs)),
        );
        match crate::k8s::wait_for(
            &conn,
            &service_resource(),
            Some(crate::k8s::ISTIO_NAMESPACE),
            SERVICE,
            timeout,
            crate::istio::eastwest_address,
        )
        .await
        {
            Ok(Ok(ip)) => Ok(Applied {
                log: format!("{SERVICE} has external IP {ip}\n"),
                outputs: BTreeMap::from([("address".to_string(), Value::from(ip))]),
            }),
            Ok(Err(why)) => Err(StepError::Failed(why)),
            Err(_) => Err(StepError::Failed(format!(
                "Service istio-system/{SERVICE} in cluster `{}` got no external IP within {} s. \
             Does the cluster have a load-balancer implementation (MetalLB on kind)? \
             `kubectl --context {} -n istio-system get svc {SERVICE}` shows its state",
                target.cluster,
                timeout.as_secs(),
                target.context
            ))),
        }
    }

    /// For `mesh import`: the live address, if the gateway has an IP.
    async fn adopt(cx: Ctx<'_>, _input: &Input, _text: &str) -> Result<Adoption, StepError> {
        let conn = cx.connect().await?;
        let doc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": crate::k8s::ISTIO_NAMESPACE}});
        Ok(match crate::k8s::get(&conn, &doc).await? {
            None => Adoption::Differs(vec![format!("Service istio-system/{SERVICE} missing")]),
            Some(svc) => match crate::istio::eastwest_address(&svc) {
                Some(Ok(ip)) => {
                    Adoption::Adopted(BTreeMap::from([("address".to_string(), Value::from(ip))]))
                }
                Some(Err(why)) => Adoption::Differs(vec![why]),
                None => Adoption::Differs(vec![format!(
                    "Service istio-system/{SERVICE} has no address yet"
                )]),
            },
        })
    }

    /// The current address; drift when it differs from the recorded one.
    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        _input: Option<&Input>,
    ) -> Result<Observation, StepError> {
        let conn = cx.connect().await?;
        let doc = serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": crate::k8s::ISTIO_NAMESPACE}});
        let mut obs = Observation::default();
        let was = recorded
            .output_str("address")
            .unwrap_or_default()
            .to_string();
        match crate::k8s::get(&conn, &doc).await? {
            None => obs
                .drift
                .push(format!("Service istio-system/{SERVICE} missing")),
            Some(svc) => match crate::istio::eastwest_address(&svc) {
                Some(Ok(ip)) => {
                    if ip != was {
                        obs.drift.push(format!(
                            "load-balancer address changed from {} to {ip}",
                            crate::rendered::shown(&was)
                        ));
                    }
                    obs.outputs.insert("address".into(), Value::from(ip));
                }
                Some(Err(_)) => obs.drift.push(
                    "load balancer has no usable IP address (a hostname, or not an IP)".into(),
                ),
                None => obs
                    .drift
                    .push(format!("Service istio-system/{SERVICE} has no external IP")),
            },
        }
        Ok(obs)
    }

    /// Nothing to undo: the address goes with the gateway.
    async fn destroy(_cx: Ctx<'_>, _recorded: &Recorded<'_>) -> Result<String, StepError> {
        Ok(String::new())
    }
}
