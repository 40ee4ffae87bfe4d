//! Small Kubernetes verbs the step kinds and checks share: server-side
//! apply of a rendered document, get, delete, and waiting on an object
//! with a watch; reviews ([`review`]) and a GET through a pod's
//! port-forward ([`port_forward`]).

pub mod port_forward;
pub mod review;

use crate::cluster::{ClusterError, Connection};
use futures::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use std::time::Duration;

/// The label that marks the objects mesh owns, and its value.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MESH: &str = "mesh";

/// Whether mesh owns an object: it has [`MANAGED_BY`]=[`MESH`].
pub fn managed_by_mesh(meta: &kube::api::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY))
        .is_some_and(|v| v == MESH)
}

/// The field manager mesh applies with.
pub const FIELD_MANAGER: &str = "mesh";
/// Where Istio lives.
pub const ISTIO_NAMESPACE: &str = crate::istio::NAMESPACE;

/// A reference to one object by `apiVersion`, `kind`, namespace and name,
/// as [`get`] takes it.
pub fn object(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Value {
    let mut doc =
        serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
    if let Some(ns) = namespace {
        doc["metadata"]["namespace"] = Value::from(ns);
    }
    doc
}

/// The API resource of a rendered document (`apiVersion` + `kind`), for the
/// kinds mesh applies directly and the kinds istioctl installs (which refresh
/// reads back). Any other kind is refused: a damaged state record must
/// never make mesh touch objects it never made.
pub fn resource_of(doc: &Value) -> Option<ApiResource> {
    let api_version = doc.get("apiVersion")?.as_str()?;
    let kind = doc.get("kind")?.as_str()?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let plural = match kind {
        "Gateway" => "gateways",
        "VirtualService" => "virtualservices",
        "Secret" => "secrets",
        "Namespace" => "namespaces",
        "Service" => "services",
        "Deployment" => "deployments",
        "ServiceAccount" => "serviceaccounts",
        "MutatingWebhookConfiguration" => "mutatingwebhookconfigurations",
        "ValidatingWebhookConfiguration" => "validatingwebhookconfigurations",
        "ConfigMap" => "configmaps",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "CustomResourceDefinition" => "customresourcedefinitions",
        "EndpointSlice" => "endpointslices",
        "HorizontalPodAutoscaler" => "horizontalpodautoscalers",
        "PodDisruptionBudget" => "poddisruptionbudgets",
        "DaemonSet" => "daemonsets",
        _ => return None,
    };
    Some(ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    })
}

/// The API resource of `doc`, or an error for a kind mesh does not apply
/// (only reachable through a damaged state record).
fn resource(doc: &Value) -> Result<ApiResource, ClusterError> {
    resource_of(doc).ok_or_else(|| ClusterError::Document {
        detail: format!(
            "`{}` `{}` is not a kind mesh manages",
            doc.get("apiVersion").and_then(Value::as_str).unwrap_or("?"),
            doc.get("kind").and_then(Value::as_str).unwrap_or("?")
        ),
    })
}

/// `Kind namespace/name` (or `Kind name`) of a document, for messages.
pub fn describe(doc: &Value) -> String {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("?");
    match namespace_of(doc) {
        Some(ns) => format!("{kind} {ns}/{}", name_of(doc)),
        None => format!("{kind} {}", name_of(doc)),
    }
}

/// A data key of a live Secret, base64-decoded (None: no such key, or not
/// base64).
pub fn secret_data(secret: &DynamicObject, key: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let pointer = format!("/data/{}", key.replace('~', "~0").replace('/', "~1"));
    let b64 = secret.data.pointer(&pointer)?.as_str()?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Whether two documents name the same object.
pub fn same_object(a: &Value, b: &Value) -> bool {
    a.get("apiVersion") == b.get("apiVersion")
        && a.get("kind") == b.get("kind")
        && namespace_of(a) == namespace_of(b)
        && name_of(a) == name_of(b)
}

fn name_of(doc: &Value) -> &str {
    doc.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn namespace_of(doc: &Value) -> Option<&str> {
    doc.pointer("/metadata/namespace").and_then(Value::as_str)
}

/// Whether an API error means "no such object". Two answers say so: the
/// object's own 404 (a `Status` with reason `NotFound`), and the plain-text
/// `404 page not found` kube-apiserver gives for a group/version nobody
/// serves, as when Istio's CRDs were removed with Istio or never installed.
/// An object of a type that does not exist is absent too: drift, not an
/// error (kubesim answers both ways as the API server does).
pub fn is_absent(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.is_not_found())
}

/// A 404 that is not about the object: the path itself is not served (the
/// type's CustomResourceDefinition is missing).
fn is_unserved(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 && !s.is_not_found())
}

/// Says what a write to a type the cluster does not serve means, rather
/// than only kube's "404 page not found".
fn explain_unserved(e: ClusterError, ar: &ApiResource) -> ClusterError {
    match e {
        ClusterError::Api {
            cluster,
            context,
            server,
            what,
            cause,
        } if is_unserved(&cause) => ClusterError::Api {
            cluster,
            context,
            server,
            what: format!(
                "{what} (the cluster does not serve {} {}: its CustomResourceDefinition is missing, \
                 as after Istio was uninstalled by hand. `istioctl install` installs Istio's CRDs: \
                 mesh runs it when the control plane is missing too; otherwise re-create the CRDs \
                 and run the command again)",
                ar.api_version, ar.plural
            ),
            cause,
        },
        other => other,
    }
}

fn api(conn: &Connection, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(conn.client.clone(), ns, ar),
        None => Api::all_with(conn.client.clone(), ar),
    }
}

/// Server-side applies `doc` (field manager `mesh`, forced: mesh owns what it renders).
pub async fn apply(conn: &Connection, doc: &Value) -> Result<(), ClusterError> {
    applied(conn, doc).await.map(|_| ())
}

/// [`apply`], returning the object as the API server stored it.
pub async fn applied(conn: &Connection, doc: &Value) -> Result<DynamicObject, ClusterError> {
    let ar = resource(doc)?;
    let name = name_of(doc).to_string();
    let a = api(conn, &ar, namespace_of(doc));
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(doc);
    conn.call(&format!("applying {} {name}", ar.kind), || {
        a.patch(&name, &pp, &patch)
    })
    .await
    .map_err(|e| explain_unserved(e, &ar))
}

/// The live object for a rendered document, if it exists. None also when
/// the cluster does not serve its type at all ([`is_absent`]): kube's
/// `get_opt` counts only a `NotFound` Status as absent.
pub async fn get(conn: &Connection, doc: &Value) -> Result<Option<DynamicObject>, ClusterError> {
    let ar = resource(doc)?;
    let name = name_of(doc).to_string();
    let a = api(conn, &ar, namespace_of(doc));
    conn.call(&format!("reading {} {name}", ar.kind), || async {
        match a.get(&name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Deletes the object of a rendered document; already gone (or its type
/// no longer served, [`is_absent`]) is fine.
pub async fn delete(conn: &Connection, doc: &Value) -> Result<(), ClusterError> {
    let ar = resource(doc)?;
    let name = name_of(doc).to_string();
    let a = api(conn, &ar, namespace_of(doc));
    conn.call(&format!("deleting {} {name}", ar.kind), || async {
        match a.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_absent(&e) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Creates the object of `doc`; Ok(false) when it already exists (then it is
/// left as it is). Unlike an apply, this tells who made the object.
pub async fn create(conn: &Connection, doc: &Value) -> Result<bool, ClusterError> {
    let ar = resource(doc)?;
    let name = name_of(doc).to_string();
    let a = api(conn, &ar, namespace_of(doc));
    let obj: DynamicObject =
        serde_json::from_value(doc.clone()).map_err(|e| ClusterError::Document {
            detail: format!("{} {name}: {e}", ar.kind),
        })?;
    let pp = kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    conn.call(&format!("creating {} {name}", ar.kind), || async {
        match a.create(&pp, &obj).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
    .map_err(|e| explain_unserved(e, &ar))
}

/// Deletes the object of `doc` and waits until it is gone (a namespace
/// terminates for a while): a re-apply right after must not meet it
/// half-deleted. Polls, since a deletion is short and a watch would need
/// the object's list permission on the whole kind.
pub async fn delete_and_wait(
    conn: &Connection,
    doc: &Value,
    timeout: Duration,
) -> Result<Result<(), String>, ClusterError> {
    delete(conn, doc).await?;
    wait_gone(conn, doc, timeout).await
}

/// Waits (bounded by `timeout`) until the object of `doc` is gone, e.g. a
/// CRD that istioctl deleted and the API server is still cleaning up; the
/// error names it and says where to look.
pub async fn wait_gone(
    conn: &Connection,
    doc: &Value,
    timeout: Duration,
) -> Result<Result<(), String>, ClusterError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if get(conn, doc).await?.is_none() {
            return Ok(Ok(()));
        }
        if tokio::time::Instant::now() >= deadline {
            let ar = resource(doc)?;
            return Ok(Err(format!(
                "{} {} in cluster `{}` was deleted but is still there after {} s (finalizers?): \
                 look at `kubectl --context {} get {} {} -o yaml`, then run the command again",
                ar.kind,
                name_of(doc),
                conn.cluster,
                timeout.as_secs(),
                conn.context,
                ar.plural,
                name_of(doc)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Kinds that are not in a namespace, of those [`resource_of`] knows.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// References (`apiVersion`, `kind`, `metadata.name`, and
/// `metadata.namespace` for namespaced kinds) to every object of the kinds
/// `kinds` (`(apiVersion, kind)`) matching the label `selector`: in
/// `namespace` for namespaced kinds, anywhere for the others. One list
/// request per kind; a kind the cluster does not serve has none. Sorted.
pub async fn list_labelled(
    conn: &Connection,
    kinds: &[(&str, &str)],
    namespace: &str,
    selector: &str,
) -> Result<Vec<Value>, ClusterError> {
    let mut found = Vec::new();
    for (api_version, kind) in kinds {
        let doc = serde_json::json!({"apiVersion": api_version, "kind": kind});
        let ar = resource(&doc)?;
        let namespaced = !CLUSTER_SCOPED.contains(kind);
        let a = api(conn, &ar, namespaced.then_some(namespace));
        let lp = kube::api::ListParams::default().labels(selector);
        let listed = conn
            .call(&format!("listing {kind}s labelled {selector}"), || async {
                match a.list(&lp).await {
                    Err(e) if is_absent(&e) => Ok(None),
                    other => other.map(Some),
                }
            })
            .await?;
        for obj in listed.map(|l| l.items).unwrap_or_default() {
            let mut r = serde_json::json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"name": obj.metadata.name.unwrap_or_default()}});
            if namespaced {
                r["metadata"]["namespace"] = Value::from(namespace);
            }
            if let Some(labels) = obj.metadata.labels {
                r["metadata"]["labels"] = serde_json::to_value(labels).unwrap_or_default();
            }
            found.push(r);
        }
    }
    found.sort_by_key(describe);
    Ok(found)
}

/// Deletes every object of the kinds `kinds` (`(apiVersion, kind)`) that
/// matches the label `selector` ([`list_labelled`]); returns what it
/// deleted (`Kind name`, sorted). A kind the cluster does not serve is
/// skipped.
pub async fn delete_labelled(
    conn: &Connection,
    kinds: &[(&str, &str)],
    namespace: &str,
    selector: &str,
) -> Result<Vec<String>, ClusterError> {
    let mut deleted = Vec::new();
    for doc in list_labelled(conn, kinds, namespace, selector).await? {
        delete(conn, &doc).await?;
        deleted.push(format!(
            "{} {}",
            doc["kind"].as_str().unwrap_or_default(),
            name_of(&doc)
        ));
    }
    deleted.sort();
    Ok(deleted)
}

/// Applies a JSON merge patch to the object of a rendered document.
pub async fn merge_patch(
    conn: &Connection,
    doc: &Value,
    patch: &Value,
) -> Result<(), ClusterError> {
    let ar = resource(doc)?;
    let name = name_of(doc).to_string();
    let a = api(conn, &ar, namespace_of(doc));
    let pp = PatchParams::default();
    let patch = Patch::Merge(patch);
    conn.call(&format!("patching {} {name}", ar.kind), || {
        a.patch(&name, &pp, &patch)
    })
    .await
    .map(|_| ())
    .map_err(|e| explain_unserved(e, &ar))
}

/// Whether every field of `want` has the same value in `live` (objects
/// compared key by key; lists item by item; scalars whole). Fields the
/// server adds to objects (status, defaults, metadata) do not count as
/// drift. Inside list items the comparison is exact, but for the keys a
/// server is known to default there ([`LIST_ITEM_DEFAULTS`]): a key added
/// by hand to a route or a listener is drift.
pub fn contains(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| l.get(k).is_some_and(|lv| contains(lv, wv))),
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(lv, wv)| same_item(lv, wv))
        }
        _ => live == want,
    }
}

/// Keys an API server adds to list items of what mesh applies: Gateway
/// API's listener `allowedRoutes` (its CRD's default).
const LIST_ITEM_DEFAULTS: &[&str] = &["allowedRoutes"];

fn same_item(live: &Value, want: &Value) -> bool {
    match (live, want) {
        (Value::Object(l), Value::Object(w)) => {
            l.keys()
                .all(|k| w.contains_key(k) || LIST_ITEM_DEFAULTS.contains(&k.as_str()))
                && w.iter()
                    .all(|(k, wv)| l.get(k).is_some_and(|lv| same_item(lv, wv)))
        }
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(lv, wv)| same_item(lv, wv))
        }
        _ => live == want,
    }
}

/// Watches the object `name` of `ar` until `done` returns `Some`, for at
/// most `timeout`. A dropped watch is re-established (with backoff); an
/// object that does not exist yet is waited for too. `done` may return an
/// error to stop waiting at once.
pub async fn wait_for<T>(
    conn: &Connection,
    ar: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    timeout: Duration,
    mut done: impl FnMut(&DynamicObject) -> Option<Result<T, String>>,
) -> Result<Result<T, String>, WaitError> {
    let a = api(conn, ar, namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(a, config).default_backoff().applied_objects();
    let mut stream = std::pin::pin!(stream);
    let wait = async {
        while let Some(item) = stream.next().await {
            // Errors are retried by the backoff; only objects matter here.
            if let Ok(obj) = item
                && let Some(r) = done(&obj)
            {
                return Some(r);
            }
        }
        None
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(WaitError::Ended),
        Err(_) => Err(WaitError::Timeout),
    }
}

/// Waits until CustomResourceDefinition `name` is `Established` (its API
/// serves), for at most `timeout`.
pub async fn wait_crd_established(
    conn: &Connection,
    name: &str,
    timeout: Duration,
) -> Result<(), crate::env::StepError> {
    let ar = resource_of(&serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"}))
        .expect("CRDs are a known kind");
    let established = |o: &DynamicObject| {
        o.data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
            .then_some(Ok(()))
    };
    match wait_for(conn, &ar, None, name, timeout, established).await {
        Ok(r) => r.map_err(crate::env::StepError::Failed),
        Err(_) => Err(crate::env::StepError::Failed(format!(
            "CustomResourceDefinition {name} was not Established within {} s: `kubectl get crd {name} -o yaml` shows why",
            timeout.as_secs()
        ))),
    }
}

#[derive(Debug)]
pub enum WaitError {
    Timeout,
    Ended,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_of_rendered_kinds() {
        let ar = resource_of(&json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway"}))
            .unwrap();
        assert_eq!(
            (ar.group.as_str(), ar.version.as_str(), ar.plural.as_str()),
            ("networking.istio.io", "v1", "gateways")
        );
        let ar = resource_of(&json!({"apiVersion": "v1", "kind": "Secret"})).unwrap();
        assert_eq!((ar.group.as_str(), ar.version.as_str()), ("", "v1"));
        assert!(resource_of(&json!({"apiVersion": "v1", "kind": "Pod"})).is_none());
    }

    /// Both 404s are "absent": the object's own Status, and the plain text
    /// of a path nobody serves (as kube turns it into a Status). Only the
    /// second is "unserved"; other errors are neither.
    #[test]
    fn both_kinds_of_404_mean_absent() {
        use kube::core::Status;
        let not_found = kube::Error::Api(
            Status::failure("gateways \"x\" not found", "NotFound")
                .with_code(404)
                .boxed(),
        );
        let unserved = kube::Error::Api(
            Status::failure("404 page not found", "Failed to parse error data")
                .with_code(404)
                .boxed(),
        );
        let forbidden = kube::Error::Api(Status::failure("no", "Forbidden").with_code(403).boxed());
        assert!(is_absent(&not_found) && is_absent(&unserved));
        assert!(!is_absent(&forbidden));
        assert!(is_unserved(&unserved) && !is_unserved(&not_found) && !is_unserved(&forbidden));
    }

    #[test]
    fn contains_ignores_what_the_server_adds() {
        let live = json!({"spec": {"a": 1, "b": [1, 2], "extra": true}, "status": {}});
        assert!(contains(&live, &json!({"spec": {"a": 1, "b": [1, 2]}})));
        assert!(!contains(&live, &json!({"spec": {"a": 2}})));
        assert!(!contains(&live, &json!({"spec": {"b": [1]}})));
        assert!(!contains(&live, &json!({"spec": {"missing": 1}})));
        // Defaults the server adds inside list items are not drift; a
        // changed or missing item is.
        let live = json!({"spec": {"l": [{"port": 15008, "allowedRoutes": {"namespaces": {"from": "Same"}}}]}});
        assert!(contains(&live, &json!({"spec": {"l": [{"port": 15008}]}})));
        assert!(!contains(&live, &json!({"spec": {"l": [{"port": 15009}]}})));
        assert!(!contains(
            &live,
            &json!({"spec": {"l": [{"port": 15008}, {"port": 1}]}})
        ));
    }
}
