//! `remotePilotAddress`: a remote's profile points at its primary's
//! east-west address, and so does what routes istiod's traffic (the
//! EndpointSlice of the remote's selector-less `istiod[-rev]` Service).

use super::*;
use crate::istio::{istiod_name, revisioned};

const CHECK: &str = "remotePilotAddress";

pub(super) async fn pilot_address(
    spec: &ClusterSpec,
    conn: &Connection,
    want: Option<&str>,
) -> Result<Check, ClusterError> {
    let primary = spec.primary.as_deref().unwrap_or_default();
    let Some(want) = want else {
        return Ok(Check::warn(
            &spec.name,
            CHECK,
            format!("the state records no east-west address for `{primary}`: not compared"),
        )
        .fix("`mesh apply` records it"));
    };
    let name = revisioned("values", spec.revision.as_deref());
    let Some(cm) = crate::k8s::get(conn, &object("v1", "ConfigMap", Some(NS), &name)).await? else {
        return Ok(Check::fail(
            &spec.name,
            CHECK,
            format!("ConfigMap {NS}/{name} missing: the remote profile is not installed"),
        )
        .fix(MESH_APPLY));
    };
    let live = cm
        .data
        .pointer("/data/merged-values")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| {
            v.pointer("/global/remotePilotAddress")
                .and_then(Value::as_str)
                .map(String::from)
        });
    // What routes: the remote's selector-less `istiod[-rev]` Service sends
    // to the address in its EndpointSlice (Istio's chart makes one for an
    // IP address; a hostname uses an ExternalName Service instead).
    let routed = if live.as_deref() == Some(want) && want.parse::<std::net::IpAddr>().is_ok() {
        let slice = object(
            "discovery.k8s.io/v1",
            "EndpointSlice",
            Some(NS),
            &istiod_name(spec.revision.as_deref()),
        );
        crate::k8s::get(conn, &slice).await?.map(|o| {
            o.data["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .map(String::from)
                .collect::<Vec<_>>()
        })
    } else {
        None
    };
    Ok(remote_pilot_address(
        spec,
        want,
        live.as_deref(),
        routed.as_deref(),
    ))
}

/// The profile's `live` address and the EndpointSlice's `routed` ones
/// (None: not read) against the primary's east-west address `want`.
fn remote_pilot_address(
    spec: &ClusterSpec,
    want: &str,
    live: Option<&str>,
    routed: Option<&[String]>,
) -> Check {
    let c = &spec.name;
    let primary = spec.primary.as_deref().unwrap_or_default();
    let name = revisioned("values", spec.revision.as_deref());
    let slice_name = istiod_name(spec.revision.as_deref());
    if let Some(addresses) = routed
        && !addresses.iter().any(|a| a == want)
    {
        return Check::fail(
            c,
            CHECK,
            format!(
                "EndpointSlice {NS}/{slice_name} routes istiod's traffic to {}, not {primary}'s east-west address {want}: this cluster's sidecars cannot reach istiod",
                if addresses.is_empty() { "nothing".to_string() } else { shown(&addresses.join(", ")) }
            ),
        )
        .fix(format!(
            "mesh apply --replace {c}/install-remote (re-installs the remote profile, which writes the EndpointSlice again)"
        ));
    }
    match live {
        Some(l) if l == want => Check::pass(c, CHECK, format!("{l}: {primary}'s east-west gateway")),
        other => Check::fail(
            c,
            CHECK,
            format!(
                "{} in ConfigMap {NS}/{name}, but {primary}'s east-west address is {want}: this cluster's sidecars cannot reach istiod",
                other.map_or("none".into(), |l| format!("`{}`", shown(l)))
            ),
        )
        .fix(format!("{MESH_APPLY} (re-installs the remote profile with {want})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests_support::spec;

    #[test]
    fn the_profile_and_the_route_must_reach_the_primary_gateway() {
        let mut s = spec("c2");
        s.primary = Some("c1".into());
        let want = "10.0.0.1";
        let ok = remote_pilot_address(&s, want, Some(want), Some(&[want.to_string()]));
        assert_eq!(ok.status, Status::Pass);
        assert_eq!(ok.detail, "10.0.0.1: c1's east-west gateway");
        let misrouted = remote_pilot_address(&s, want, Some(want), Some(&["10.9.9.9".to_string()]));
        assert!(
            misrouted
                .detail
                .contains("routes istiod's traffic to 10.9.9.9")
        );
        assert!(
            misrouted
                .fix
                .unwrap()
                .contains("--replace c2/install-remote")
        );
        let unrouted = remote_pilot_address(&s, want, Some(want), Some(&[]));
        assert!(unrouted.detail.contains("traffic to nothing"));
        let stale = remote_pilot_address(&s, want, Some("10.0.0.2"), None);
        assert!(
            stale
                .detail
                .starts_with("`10.0.0.2` in ConfigMap istio-system/values,")
        );
        s.revision = Some("canary".into());
        assert!(
            remote_pilot_address(&s, want, None, None)
                .detail
                .starts_with("none in ConfigMap istio-system/values-canary")
        );
    }
}
