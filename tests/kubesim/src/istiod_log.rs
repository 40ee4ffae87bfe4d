//! What a simulated istiod logs about the remote secrets it reads, and the
//! pod log API that serves it (kubesim runs no istiod).
//!
//! mesh revokes a link's old token only once every istiod pod has taken
//! the rewritten remote secret, and the evidence a real istiod gives is a
//! line of its log: when a remote secret's kubeconfig changes, Istio's
//! secret controller builds a second client, keeps the first until the
//! second has synced, then logs `stopping previous cluster <id> after new
//! cluster synced` (`pkg/kube/multicluster/clusterstore.go`). This module
//! writes the same lines when a remote secret in istio-system changes, and
//! none while [`crate::cluster::Faults::istiod_keeps_old_clients`] is set
//! (as istio/istio#60612: an updated secret not taken).

use k8s_openapi::jiff::Timestamp;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Istio's line for a swapped client (see the module doc).
pub fn swap_line(cluster: &str) -> String {
    format!("stopping previous cluster {cluster} after new cluster synced")
}

/// The simulated istiods' log and the kubeconfig each remote secret's
/// cluster was last read with.
#[derive(Debug, Default)]
pub struct IstiodLog {
    /// (when, message), oldest first: shared by every istiod pod of the
    /// cluster (each reads the same secrets); a pod sees the lines since
    /// it started.
    lines: Vec<(Timestamp, String)>,
    /// "secret|cluster id" → the kubeconfig (base64) istiod's client uses.
    clients: BTreeMap<String, String>,
}

/// The remote secrets of istio-system (label `istio/multiCluster=true`):
/// "secret|cluster id" → kubeconfig (base64).
fn remote_kubeconfigs(secrets: &[Value]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in secrets {
        if !is_remote_secret(s) {
            continue;
        }
        let name = s
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for (id, v) in s["data"].as_object().into_iter().flatten() {
            out.insert(
                format!("{name}|{id}"),
                v.as_str().unwrap_or_default().to_string(),
            );
        }
    }
    out
}

fn is_remote_secret(s: &Value) -> bool {
    s.pointer("/metadata/namespace").and_then(Value::as_str) == Some("istio-system")
        && s.pointer("/metadata/labels/istio~1multiCluster")
            .and_then(Value::as_str)
            == Some("true")
}

impl IstiodLog {
    /// What istiod read before anything changed: the store's `secrets`.
    pub fn new(secrets: &[Value]) -> IstiodLog {
        IstiodLog {
            lines: Vec::new(),
            clients: remote_kubeconfigs(secrets),
        }
    }

    /// A remote secret of istio-system written or deleted: what istiod's
    /// secret controller does with it. `secrets` is every Secret of the
    /// store after the change; `keeps_old` the fault.
    pub fn remote_secrets_changed(&mut self, secrets: &[Value], keeps_old: bool) {
        let now = remote_kubeconfigs(secrets);
        let at = Timestamp::now();
        let id = |key: &str| key.split_once('|').map_or(key, |(_, c)| c).to_string();
        for (key, config) in &now {
            match self.clients.get(key) {
                None => self.lines.push((at, format!("Adding cluster {}", id(key)))),
                Some(old) if old != config && keeps_old => continue,
                Some(old) if old != config => self.lines.push((at, swap_line(&id(key)))),
                Some(_) => continue,
            }
            self.clients.insert(key.clone(), config.clone());
        }
        let gone: Vec<String> = self
            .clients
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            self.lines
                .push((at, format!("Deleting cluster_id={}", id(&key))));
            self.clients.remove(&key);
        }
    }

    /// The pod log API's answer for an istiod pod started at `started`:
    /// its lines since then (and since `sinceTime`), each prefixed with its
    /// time when `timestamps=true`, the last `tailLines` only.
    pub fn pod_log(
        &self,
        started: Timestamp,
        q: &HashMap<String, String>,
    ) -> Result<String, (u16, String)> {
        let since = match q.get("sinceTime") {
            Some(t) => t
                .parse::<Timestamp>()
                .map_err(|e| (400, format!("invalid sinceTime {t:?}: {e}")))?,
            None => started,
        };
        let stamped = q.get("timestamps").is_some_and(|v| v == "true");
        let mut lines: Vec<String> = self
            .lines
            .iter()
            .filter(|(at, _)| *at >= started && *at >= since)
            .map(|(at, m)| {
                let line = format!("{at}\tinfo\t{m}");
                if stamped {
                    format!("{at} {line}")
                } else {
                    line
                }
            })
            .collect();
        if let Some(n) = q.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
            lines.drain(..lines.len().saturating_sub(n));
        }
        Ok(lines.into_iter().map(|l| l + "\n").collect())
    }
}
