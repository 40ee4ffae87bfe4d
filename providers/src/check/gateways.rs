//! `east-west gateway`, `ambient …`: the gateways the other networks and
//! the remotes reach this cluster through have an address (the one the
//! state recorded), and an ambient cluster's data plane runs on its nodes.

use super::*;
use crate::istio::EASTWEST_GATEWAY;

pub(super) async fn eastwest(
    spec: &ClusterSpec,
    conn: &Connection,
    recorded: Option<&str>,
) -> Result<Check, ClusterError> {
    let svc = crate::k8s::get(conn, &object("v1", "Service", Some(NS), EASTWEST_GATEWAY)).await?;
    let address = svc.as_ref().map(crate::istio::eastwest_address);
    Ok(eastwest_gateway(spec, address, recorded))
}

/// The gateway Service's address (outer None: no Service; inner None: no
/// address yet) against the one the state `recorded`.
fn eastwest_gateway(
    spec: &ClusterSpec,
    address: Option<Option<Result<String, String>>>,
    recorded: Option<&str>,
) -> Check {
    let (c, ctx) = (&spec.name, &spec.target.context);
    let check = "east-west gateway";
    let Some(address) = address else {
        return Check::fail(c, check, format!("Service {NS}/{EASTWEST_GATEWAY} missing"))
            .fix(MESH_APPLY);
    };
    match address {
        None => Check::fail(c, check, "its load balancer has no address".into()).fix(format!(
            "kubectl --context {ctx} -n {NS} describe service {EASTWEST_GATEWAY} (the cluster's load-balancer controller gives it one)"
        )),
        Some(Err(why)) => Check::fail(c, check, why),
        Some(Ok(ip)) => match recorded {
            Some(r) if r != ip => Check::fail(
                c,
                check,
                format!(
                    "address {ip}, but the state records {}: the remotes still point at the old one",
                    shown(r)
                ),
            )
            .fix(format!(
                "{MESH_APPLY} (the remotes are re-installed with the new address)"
            )),
            Some(_) => Check::pass(c, check, format!("address {ip}, as recorded")),
            None => Check::pass(c, check, format!("address {ip}")),
        },
    }
}

/// An ambient cluster: istio-cni and ztunnel ready on every node, and
/// (across networks) the ambient east-west Gateway programmed with an
/// address, which the other clusters' istiods route to.
pub(super) async fn ambient(
    spec: &ClusterSpec,
    conn: &Connection,
    gateway: bool,
) -> Result<Vec<Check>, ClusterError> {
    let mut out = Vec::new();
    for ds in ["ztunnel", "istio-cni-node"] {
        let live = crate::k8s::get(conn, &object("apps/v1", "DaemonSet", Some(NS), ds)).await?;
        out.push(ambient_daemonset(spec, ds, live.as_ref().map(|d| &d.data)));
    }
    if gateway {
        let name = EASTWEST_GATEWAY;
        let live = crate::k8s::get(
            conn,
            &object("gateway.networking.k8s.io/v1", "Gateway", Some(NS), name),
        )
        .await?;
        let svc = match &live {
            Some(_) => crate::k8s::get(conn, &object("v1", "Service", Some(NS), name)).await?,
            None => None,
        };
        out.push(ambient_eastwest_gateway(
            spec,
            live.as_ref().map(|g| &g.data),
            svc.as_ref().map(|s| &s.data),
        ));
    }
    Ok(out)
}

/// `ambient <ds>`: the DaemonSet (None: missing) ready on every node.
fn ambient_daemonset(spec: &ClusterSpec, ds: &str, live: Option<&Value>) -> Check {
    let (c, ctx) = (&spec.name, &spec.target.context);
    let check = format!("ambient {ds}");
    let Some(d) = live else {
        return Check::fail(
            c,
            check,
            format!("DaemonSet {NS}/{ds} missing: no ambient data plane on this cluster's nodes"),
        )
        .fix(MESH_APPLY);
    };
    let n = |k: &str| {
        d.pointer(&format!("/status/{k}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let (ready, desired) = (n("numberReady"), n("desiredNumberScheduled"));
    if desired > 0 && ready == desired {
        Check::pass(c, check, format!("ready on {ready} of {desired} nodes"))
    } else {
        Check::fail(c, check, format!("ready on {ready} of {desired} nodes")).fix(format!(
            "kubectl --context {ctx} -n {NS} describe daemonset {ds} (its pods say why)"
        ))
    }
}

/// `ambient east-west gateway`: the Gateway (None: missing) programmed,
/// with its own Service's load-balancer address among those it lists.
fn ambient_eastwest_gateway(
    spec: &ClusterSpec,
    gateway: Option<&Value>,
    svc: Option<&Value>,
) -> Check {
    let (c, ctx) = (&spec.name, &spec.target.context);
    let name = EASTWEST_GATEWAY;
    let check = "ambient east-west gateway";
    let Some(g) = gateway else {
        return Check::fail(
            c,
            check,
            format!("Gateway {NS}/{name} missing: the other networks cannot reach this one"),
        )
        .fix(MESH_APPLY);
    };
    let programmed = crate::istio::gateway_programmed(g);
    let listed: Vec<&str> = programmed.iter().flatten().map(String::as_str).collect();
    let own = svc.and_then(|s| {
        let i = s.pointer("/status/loadBalancer/ingress/0")?;
        i["ip"]
            .as_str()
            .or(i["hostname"].as_str())
            .map(String::from)
    });
    let address = match &own {
        Some(own) => listed.iter().find(|a| **a == own.as_str()).copied(),
        None => None,
    };
    match (programmed.is_some(), address) {
        (true, Some(a)) => Check::pass(
            c,
            check,
            format!("Gateway {name} programmed at {a}, its Service's load-balancer address"),
        ),
        _ => Check::fail(
            c,
            check,
            format!(
                "Gateway {name} is not programmed with its Service's load-balancer address ({}; status lists {}): the other clusters' istiods route to the address istiod writes there",
                own.as_deref().unwrap_or("none yet"),
                if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
            ),
        )
        .fix(format!(
            "kubectl --context {ctx} -n {NS} describe gateways.gateway.networking.k8s.io {name} (istiod deploys it; its Service needs a LoadBalancer address)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests_support::spec;
    use serde_json::json;

    #[test]
    fn the_eastwest_address_is_the_recorded_one() {
        let s = spec("c1");
        let ip = || Some(Some(Ok("10.0.0.1".to_string())));
        assert_eq!(
            eastwest_gateway(&s, ip(), Some("10.0.0.1")).detail,
            "address 10.0.0.1, as recorded"
        );
        assert_eq!(eastwest_gateway(&s, ip(), None).status, Status::Pass);
        let moved = eastwest_gateway(&s, ip(), Some("10.0.0.9"));
        assert_eq!(moved.status, Status::Fail);
        assert!(moved.detail.contains("the state records 10.0.0.9"));
        assert!(
            eastwest_gateway(&s, Some(None), None)
                .detail
                .contains("no address")
        );
        assert!(eastwest_gateway(&s, None, None).detail.contains("missing"));
        let name = eastwest_gateway(&s, Some(Some(Err("a hostname".into()))), None);
        assert_eq!(
            (name.status, name.detail.as_str()),
            (Status::Fail, "a hostname")
        );
    }

    #[test]
    fn ambient_daemonsets_and_gateway() {
        let s = spec("c1");
        let ds = |ready, desired| json!({"status": {"numberReady": ready, "desiredNumberScheduled": desired}});
        assert_eq!(
            ambient_daemonset(&s, "ztunnel", Some(&ds(2, 2))).status,
            Status::Pass
        );
        assert_eq!(
            ambient_daemonset(&s, "ztunnel", Some(&ds(1, 2))).status,
            Status::Fail
        );
        assert_eq!(
            ambient_daemonset(&s, "ztunnel", Some(&ds(0, 0))).status,
            Status::Fail
        );
        assert!(
            ambient_daemonset(&s, "ztunnel", None)
                .detail
                .contains("missing")
        );
        let gw = |programmed: &str| {
            json!({"status": {
            "conditions": [{"type": "Programmed", "status": programmed}],
            "addresses": [{"value": "10.9.9.9"}, {"value": "10.0.0.1"}]}})
        };
        let svc = json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}});
        let ok = ambient_eastwest_gateway(&s, Some(&gw("True")), Some(&svc));
        assert_eq!(ok.status, Status::Pass, "{}", ok.detail);
        assert!(ok.detail.contains("programmed at 10.0.0.1"));
        // Another cluster's address listed first is not this one's.
        let other = json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.7"}]}}});
        assert_eq!(
            ambient_eastwest_gateway(&s, Some(&gw("True")), Some(&other)).status,
            Status::Fail
        );
        assert_eq!(
            ambient_eastwest_gateway(&s, Some(&gw("False")), Some(&svc)).status,
            Status::Fail
        );
        assert!(
            ambient_eastwest_gateway(&s, None, None)
                .detail
                .contains("missing")
        );
    }
}
