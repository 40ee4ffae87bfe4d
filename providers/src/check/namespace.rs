//! `istio-system`: the namespace is there, with the network label of a
//! multi-network mesh and a remote's control-plane annotation.

use super::*;
use crate::istio::{CONTROL_PLANE_ANNOTATION, NETWORK_LABEL};

pub(super) async fn namespace(
    spec: &ClusterSpec,
    conn: &Connection,
) -> Result<Check, ClusterError> {
    let Some(ns) = crate::k8s::get(conn, &object("v1", "Namespace", None, NS)).await? else {
        return Ok(Check::fail(
            &spec.name,
            "istio-system",
            "namespace istio-system missing".into(),
        )
        .fix(MESH_APPLY));
    };
    let meta = serde_json::to_value(&ns.metadata).unwrap_or_default();
    let label = meta
        .pointer(&format!("/labels/{}", NETWORK_LABEL.replace('/', "~1")))
        .and_then(Value::as_str);
    let annotation = meta
        .pointer(&format!(
            "/annotations/{}",
            CONTROL_PLANE_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str);
    Ok(istio_system(spec, label, annotation))
}

/// The namespace's network `label` and control-plane `annotation` against
/// what the cluster's role and network need.
fn istio_system(spec: &ClusterSpec, label: Option<&str>, annotation: Option<&str>) -> Check {
    let c = &spec.name;
    let ctx = &spec.target.context;
    let mut wrong = Vec::new();
    let mut fixes = Vec::new();
    let mut said = Vec::new();
    if let Some(want) = &spec.network_label {
        if label != Some(want.as_str()) {
            wrong.push(format!(
                "label {NETWORK_LABEL} is {}, not {want}",
                label.map_or("missing".into(), |l| format!("`{}`", shown(l)))
            ));
            fixes.push(format!(
                "kubectl --context {ctx} label namespace {NS} {NETWORK_LABEL}={want} --overwrite"
            ));
        } else {
            said.push(format!("network {want}"));
        }
    }
    if let Some(primary) = &spec.primary {
        if annotation != Some(primary.as_str()) {
            wrong.push(format!(
                "annotation {CONTROL_PLANE_ANNOTATION} is {}, not {primary}",
                annotation.map_or("missing".into(), |a| format!("`{}`", shown(a)))
            ));
            fixes.push(format!(
                "kubectl --context {ctx} annotate namespace {NS} {CONTROL_PLANE_ANNOTATION}={primary} --overwrite"
            ));
        } else {
            said.push(format!("controlled by {primary}"));
        }
    }
    if wrong.is_empty() {
        Check::pass(
            c,
            "istio-system",
            if said.is_empty() {
                "present".into()
            } else {
                format!("present, {}", said.join(", "))
            },
        )
    } else {
        Check::fail(c, "istio-system", wrong.join("; "))
            .fix(format!("`mesh apply`, or {}", fixes.join(" && ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::tests_support::spec;

    #[test]
    fn a_remote_needs_its_network_label_and_its_primary() {
        let mut s = spec("c2");
        s.network_label = Some("n2".into());
        s.primary = Some("c1".into());
        let ok = istio_system(&s, Some("n2"), Some("c1"));
        assert_eq!(ok.status, Status::Pass);
        assert_eq!(ok.detail, "present, network n2, controlled by c1");
        let bad = istio_system(&s, Some("n1\u{1b}"), None);
        assert_eq!(bad.status, Status::Fail);
        assert!(
            bad.detail.contains("is `n1\\u{1b}`, not n2"),
            "{}",
            bad.detail
        );
        assert!(
            bad.detail
                .contains("annotation topology.istio.io/controlPlaneClusters is missing")
        );
        let fix = bad.fix.unwrap();
        assert!(
            fix.contains("kubectl --context k-c2 label namespace istio-system"),
            "{fix}"
        );
        assert!(fix.contains(" && kubectl --context k-c2 annotate"), "{fix}");
        assert_eq!(istio_system(&spec("c1"), None, None).detail, "present");
    }
}
