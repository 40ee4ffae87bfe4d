//! The API server's answers that are computed, not stored: TokenReview
//! (which token is whose), SubjectAccessReview (what RBAC allows), and the
//! simulated istiod's `/debug/clusterz` reached through the pod proxy.
//! `mesh check` asks all three; none of them changes the store.

use crate::cluster::{Cluster, SA_TOKEN_TYPE};
use crate::store::Store;
use base64::Engine as _;
use serde_json::{Value, json};

const SA_ANNOTATION: &str = "kubernetes.io/service-account.name";
const RBAC: &str = "rbac.authorization.k8s.io";

/// A TokenReview's answer: as kube-apiserver's legacy service-account
/// token authenticator, a token is a ServiceAccount's while its token
/// Secret exists and holds it (deleting the Secret revokes it); the
/// cluster's admin token is the admin.
pub fn token_review(cluster: &Cluster, review: &Value) -> Value {
    let token = review
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let status = if token.is_empty() {
        json!({"authenticated": false, "error": "no token given"})
    } else if token == cluster.token {
        json!({"authenticated": true, "user": {"username": "kubesim-admin", "groups": ["system:masters", "system:authenticated"]}})
    } else {
        match service_account_of(&cluster.store(), token) {
            Some((ns, sa)) => json!({"authenticated": true, "user": {
                "username": format!("system:serviceaccount:{ns}:{sa}"),
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
            }}),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        }
    };
    json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null}, "spec": review.get("spec").cloned().unwrap_or(json!({})),
        "status": status})
}

/// The ServiceAccount `(namespace, name)` whose token Secret holds `token`.
fn service_account_of(store: &Store, token: &str) -> Option<(String, String)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    store.all("", "secrets").into_iter().find_map(|s| {
        if s["type"] != SA_TOKEN_TYPE {
            return None;
        }
        let t = s.pointer("/data/token").and_then(Value::as_str)?;
        if b64.decode(t).ok()? != token.as_bytes() {
            return None;
        }
        let ns = s.pointer("/metadata/namespace").and_then(Value::as_str)?;
        let sa = s
            .pointer(&format!(
                "/metadata/annotations/{}",
                SA_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)?;
        Some((ns.to_string(), sa.to_string()))
    })
}

/// A SubjectAccessReview's answer, by RBAC: the ClusterRoleBindings (and,
/// for a namespaced request, that namespace's RoleBindings) whose subjects
/// name the user, a group of it, or its ServiceAccount, and whose role has
/// a rule for the verb, group and resource. Wildcards as RBAC's; no
/// aggregation, no resourceNames, no non-resource URLs.
pub fn access_review(cluster: &Cluster, review: &Value) -> Value {
    let spec = review.get("spec").cloned().unwrap_or(json!({}));
    let user = spec["user"].as_str().unwrap_or_default();
    let groups: Vec<&str> = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let attr = &spec["resourceAttributes"];
    let field = |k: &str| attr[k].as_str().unwrap_or_default();
    let (verb, group, resource, ns) = (
        field("verb"),
        field("group"),
        field("resource"),
        field("namespace"),
    );
    let store = cluster.store();
    let by = allowed_by(&store, user, &groups, verb, group, resource, ns);
    let status = match by {
        Some(binding) => json!({"allowed": true, "reason": format!("RBAC: allowed by {binding}")}),
        None => json!({"allowed": false}),
    };
    json!({"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null}, "spec": spec, "status": status})
}

fn allowed_by(
    store: &Store,
    user: &str,
    groups: &[&str],
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
) -> Option<String> {
    let subject_matches = |s: &Value| {
        let name = s["name"].as_str().unwrap_or_default();
        match s["kind"].as_str().unwrap_or_default() {
            "User" => name == user,
            "Group" => groups.contains(&name),
            "ServiceAccount" => {
                user == format!(
                    "system:serviceaccount:{}:{name}",
                    s["namespace"].as_str().unwrap_or_default()
                )
            }
            _ => false,
        }
    };
    let rules_allow = |role: Option<&Value>| {
        role.and_then(|r| r["rules"].as_array())
            .into_iter()
            .flatten()
            .any(|rule| {
                let has = |k: &str, want: &str| {
                    rule[k]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .any(|v| v == "*" || v == want)
                };
                let named = rule["resourceNames"]
                    .as_array()
                    .is_some_and(|n| !n.is_empty());
                !named
                    && has("verbs", verb)
                    && has("apiGroups", group)
                    && has("resources", resource)
            })
    };
    let mut bindings: Vec<Value> = store.all(RBAC, "clusterrolebindings");
    if !ns.is_empty() {
        bindings.extend(
            store
                .all(RBAC, "rolebindings")
                .into_iter()
                .filter(|b| b.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)),
        );
    }
    bindings.into_iter().find_map(|b| {
        let subjects = b["subjects"].as_array()?;
        if !subjects.iter().any(subject_matches) {
            return None;
        }
        let role_name = b.pointer("/roleRef/name").and_then(Value::as_str)?;
        let role = match b.pointer("/roleRef/kind").and_then(Value::as_str)? {
            "ClusterRole" => store.get_raw(RBAC, "clusterroles", "", role_name),
            "Role" => store.get_raw(
                RBAC,
                "roles",
                b.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                role_name,
            ),
            _ => None,
        };
        rules_allow(role).then(|| {
            format!(
                "{} {}",
                b["kind"].as_str().unwrap_or("binding"),
                b.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            )
        })
    })
}

/// A GET through the pod proxy (`pods/<pod>:<port>/proxy/<path>`): kubesim
/// runs no containers, so only the simulated istiod's debug port answers,
/// and of it only `/debug/clusterz`: the clusters of the remote secrets
/// (label `istio/multiCluster=true`) in istio-system, each as synced, as a
/// real istiod lists the clusters it reads. `Err((code, message))` as the
/// API server's proxy answers.
pub fn pod_proxy(
    cluster: &Cluster,
    ns: &str,
    pod_port: &str,
    path: &[&str],
) -> Result<Value, (u16, String)> {
    let (pod, port) = pod_port.split_once(':').unwrap_or((pod_port, ""));
    let store = cluster.store();
    let Some(p) = store.get_raw("", "pods", ns, pod) else {
        return Err((404, format!("pods \"{pod}\" not found")));
    };
    let istiod = p.pointer("/metadata/labels/app").and_then(Value::as_str) == Some("istiod");
    if !istiod || port != "15014" {
        return Err((
            503,
            format!(
                "error trying to reach service: kubesim runs no containers (pod {pod}, port {port:?})"
            ),
        ));
    }
    if path != ["debug", "clusterz"] {
        return Err((404, format!("404 page not found: /{}", path.join("/"))));
    }
    let mut clusters = Vec::new();
    for s in store.all("", "secrets") {
        if s.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns)
            || s.pointer("/metadata/labels/istio~1multiCluster")
                .and_then(Value::as_str)
                != Some("true")
        {
            continue;
        }
        let name = s
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for id in s["data"].as_object().into_iter().flatten().map(|(k, _)| k) {
            clusters.push(
                json!({"id": id, "secretName": format!("{ns}/{name}"), "syncStatus": "synced"}),
            );
        }
    }
    Ok(Value::Array(clusters))
}
