//! What in a cluster still uses an Istio revision: namespaces labelled
//! `istio.io/rev=R`, workloads whose pod template asks for it by the same
//! label (Istio's injector also selects pods by it), and revision tags
//! pointing at it. Removing a revision any of these use leaves their new
//! pods without a sidecar, or without pods at all (a tag's webhook calling
//! a deleted istiod, `failurePolicy: Fail`).
//!
//! Read twice: by the plan over every cluster, and by a revision's
//! uninstall on its own cluster right before it runs, since a namespace
//! labelled between the plan and the apply must stop it too.

use crate::cluster::{ClusterError, Connection};
use crate::istio::{REVISION_LABEL, TAG_LABEL};
use crate::k8s;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;

/// The label `istioctl install` puts on everything it makes.
const COMPONENT_LABEL: &str = "operator.istio.io/component";

/// One user of a revision in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Use {
    /// A namespace labelled `istio.io/rev=R`.
    Namespace(String),
    /// A workload (`Deployment shop/cart`) whose pods ask for R by label.
    Workload(String),
    /// A revision tag's webhook pointing at R: `(tag, webhook)`.
    Tag(String, String),
}

/// The workload kinds whose pod templates are read.
const WORKLOADS: &[(&str, &str, &str, &str)] = &[
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
];

/// How many objects one list page holds: a cluster's workloads are read a
/// page at a time, never whole.
const PAGE: u32 = 500;

/// Everything in the cluster that uses revision `rev`, sorted as found
/// (namespaces, workloads, tags).
pub async fn of(conn: &Connection, rev: &str) -> Result<Vec<Use>, ClusterError> {
    let mut uses: Vec<Use> = k8s::list_labelled(
        conn,
        &[("v1", "Namespace")],
        "",
        &format!("{REVISION_LABEL}={rev}"),
    )
    .await?
    .iter()
    .map(|ns| Use::Namespace(name(ns)))
    .collect();
    for (group, version, kind, plural) in WORKLOADS {
        let ar = ApiResource {
            group: (*group).into(),
            version: (*version).into(),
            api_version: format!("{group}/{version}"),
            kind: (*kind).into(),
            plural: (*plural).into(),
        };
        let api: Api<DynamicObject> = Api::all_with(conn.client.clone(), &ar);
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(PAGE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = conn
                .call(&format!("listing {plural}"), || api.list(&lp))
                .await?;
            for o in &page.items {
                // A DynamicObject keeps its metadata apart from its data.
                let whole = serde_json::json!({
                    "metadata": {"labels": o.metadata.labels},
                    "spec": o.data["spec"],
                });
                if asks_for(&whole, rev) {
                    uses.push(Use::Workload(format!(
                        "{kind} {}/{}",
                        o.metadata.namespace.as_deref().unwrap_or_default(),
                        o.metadata.name.as_deref().unwrap_or_default()
                    )));
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
    }
    let tags = k8s::list_labelled(
        conn,
        &[(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
        )],
        "",
        &format!("{TAG_LABEL},{REVISION_LABEL}={rev}"),
    )
    .await?;
    uses.extend(tags.iter().map(|w| {
        let tag = w["metadata"]["labels"][TAG_LABEL]
            .as_str()
            .unwrap_or_default();
        Use::Tag(tag.to_string(), name(w))
    }));
    Ok(uses)
}

/// Why `u` in `cluster` (reached as `context`) stops the uninstall of
/// revision `rev`, and what to do first.
pub fn refusal(u: &Use, cluster: &str, context: &str, rev: &str) -> String {
    use crate::rendered::shown;
    let keep = format!("or keep `{rev}` in [[mesh.keep_revision]]");
    match u {
        Use::Namespace(ns) => format!(
            "namespace `{}` in {cluster} is labelled `istio.io/rev={rev}`, and this plan \
             uninstalls revision `{rev}`: relabel it first (`kubectl --context {context} label \
             namespace {} istio.io/rev=<new revision or tag> --overwrite`), {keep}",
            shown(ns),
            shown(ns),
        ),
        Use::Workload(w) => format!(
            "{} in {cluster} asks for revision `{rev}` in its pod template (label \
             `istio.io/rev={rev}`), and this plan uninstalls `{rev}`: its new pods would get \
             no sidecar. Change the label to the new revision or a tag first, {keep}",
            shown(w),
        ),
        Use::Tag(tag, webhook) => format!(
            "tag `{}` in {cluster} (MutatingWebhookConfiguration {}) points at revision `{rev}`, \
             and this plan uninstalls `{rev}`: the namespaces it injects would get no sidecars, \
             or no pods at all. Move the tag first (in [tags], `{} = \"<revision>\"`, and apply; \
             for a tag made by hand, `istioctl --context {context} tag set {} --revision \
             <revision> --overwrite`), then remove the revision, {keep}",
            shown(tag),
            shown(webhook),
            shown(tag),
            shown(tag),
        ),
    }
}

fn name(o: &Value) -> String {
    o["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Whether a workload's pod template asks for revision `rev` by label
/// (pure). What Istio's installer made (its component label: the
/// revision's istiod, the gateways that move with the mesh's revision)
/// goes or moves with the revision and is not a user of it.
fn asks_for(workload: &Value, rev: &str) -> bool {
    let installed = workload
        .pointer("/metadata/labels")
        .and_then(|l| l.get(COMPONENT_LABEL))
        .is_some();
    !installed
        && workload
            .pointer("/spec/template/metadata/labels")
            .and_then(|l| l.get(REVISION_LABEL))
            .and_then(Value::as_str)
            == Some(rev)
}

/// The access [`of`] needs.
pub fn access() -> Vec<crate::access::Access> {
    let mut access = vec![
        crate::access::Access::new("list", "", "namespaces", None),
        crate::access::Access::new(
            "list",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            None,
        ),
    ];
    for (group, _, _, plural) in WORKLOADS {
        access.push(crate::access::Access::new("list", group, plural, None));
    }
    access
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_template_asks_for_a_revision_by_its_label_only() {
        let w = |labels: Value| json!({"spec": {"template": {"metadata": {"labels": labels}}}});
        assert!(asks_for(&w(json!({"istio.io/rev": "1-28"})), "1-28"));
        assert!(!asks_for(&w(json!({"istio.io/rev": "1-29"})), "1-28"));
        assert!(!asks_for(&w(json!({"app": "cart"})), "1-28"));
        assert!(!asks_for(&json!({"spec": {}}), "1-28"));
        // istiod itself, as istioctl installs it.
        let mut istiod = w(json!({"app": "istiod", "istio.io/rev": "1-28"}));
        istiod["metadata"] = json!({"labels": {"operator.istio.io/component": "Pilot"}});
        assert!(!asks_for(&istiod, "1-28"));
    }
}
