//! Which cluster a context reaches: the UID of its `kube-system`
//! namespace. A kubeconfig context is only a name on this machine; the
//! same API server can have several (a kubeconfig renamed or merged), and
//! one name can come to reach another cluster. The namespace every
//! cluster has from its first start, and keeps until it is rebuilt, tells
//! them apart (as `kubectl get ns kube-system -o jsonpath={.metadata.uid}`
//! shows it).

use crate::cluster::Connection;
use serde_json::json;

/// The namespace whose UID is a cluster's identity.
pub const NAMESPACE: &str = "kube-system";

/// The identity of the cluster `conn` reaches; Err says why it could not
/// be read (no permission to get namespaces, no `kube-system`).
pub async fn read(conn: &Connection) -> Result<String, String> {
    let doc = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    match crate::k8s::get(conn, &doc).await {
        Ok(Some(ns)) => ns
            .metadata
            .uid
            .filter(|u| !u.is_empty())
            .ok_or_else(|| format!("namespace {NAMESPACE} has no uid")),
        Ok(None) => Err(format!("the cluster has no namespace {NAMESPACE}")),
        Err(e) => Err(e.to_string()),
    }
}
