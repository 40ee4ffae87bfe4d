//! Whether every istiod of a control plane has taken a rewritten remote
//! secret: the evidence mesh waits for before it revokes the token the
//! secret held before.
//!
//! Why logs: when a remote secret's kubeconfig changes, Istio's secret
//! controller builds a second client for the cluster, keeps the first
//! until the second has synced, and only then stops it, logging
//! `stopping previous cluster <id> after new cluster synced`
//! (`pkg/kube/multicluster/clusterstore.go`). Revoking the old token
//! before that turns the client istiod still uses into 401s, and an
//! updated secret is sometimes never taken (istio/istio#60612). istiod's
//! `/debug/clusterz` cannot tell: it lists the cluster as `synced` whether
//! its client holds the old token or the new one. So a pod has taken the
//! secret when its log has that line from after the write, or when it
//! started after the write (it read the new secret from the start).
//! Every running pod of every revision counts: each reads the same
//! secrets in istio-system.

use crate::cluster::{ClusterError, Connection};
use crate::istio::NAMESPACE as NS;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Istio's line for a client swapped once the new one synced.
pub fn swap_line(cluster: &str) -> String {
    format!("stopping previous cluster {cluster} after new cluster synced")
}

/// One running istiod pod (label `app=istiod`, any revision).
#[derive(Debug, Clone, PartialEq)]
pub struct IstiodPod {
    pub name: String,
    /// A pod re-created under the same name is another pod.
    pub uid: String,
    /// Its `discovery` container's restarts.
    pub restarts: i32,
    /// When that container (else the pod) started, to the second.
    pub started: Option<Timestamp>,
}

/// The running istiod pods of `conn`'s istio-system, by name.
pub async fn running(conn: &Connection) -> Result<Vec<IstiodPod>, ClusterError> {
    let api: kube::Api<Pod> = kube::Api::namespaced(conn.client.clone(), NS);
    let lp = kube::api::ListParams::default().labels("app=istiod");
    let listed = conn.call("listing istiod pods", || api.list(&lp)).await?;
    let mut pods: Vec<IstiodPod> = listed
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| {
            let status = p.status.unwrap_or_default();
            let discovery = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.name == "discovery");
            let container_start = discovery
                .as_ref()
                .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
                .map(|t| t.0);
            IstiodPod {
                name: p.metadata.name.unwrap_or_default(),
                uid: p.metadata.uid.unwrap_or_default(),
                restarts: discovery.map_or(0, |c| c.restart_count),
                started: container_start.or(status.start_time.map(|t| t.0)),
            }
        })
        .collect();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(pods)
}

/// The remote secret's annotation that keeps the [`Mark`]s taken just
/// before mesh wrote it, with the fingerprint of the kubeconfig written,
/// so a later apply (one that finishes what a failed or killed one began)
/// knows exactly which log lines came after the write (the write's own
/// time is known to the second only), and ignores marks another writer's
/// change of the secret made stale.
pub const MARKS_ANNOTATION: &str = "mesh/istiod-marks";

/// The remote secret's annotation naming the kubeconfig (its sha256) that
/// every istiod is known to use: written with a secret no istiod held a
/// client for before, and after a wait that saw every pod take it. A later
/// look needs no log then (logs rotate).
pub const TOOK_ANNOTATION: &str = "mesh/istiod-took";

/// `marks`, taken before writing the kubeconfig of fingerprint
/// `kubeconfig`, as the annotation's value (JSON).
pub fn marks_annotation(kubeconfig: &str, marks: &BTreeMap<String, Mark>) -> String {
    let pods: serde_json::Map<String, serde_json::Value> = marks
        .iter()
        .map(|(pod, m)| {
            let line = m.last_line.map(|t| t.to_string());
            (
                pod.clone(),
                serde_json::json!({"uid": m.uid, "restarts": m.restarts, "last_line": line}),
            )
        })
        .collect();
    serde_json::json!({"kubeconfig": kubeconfig, "pods": pods}).to_string()
}

/// The marks a remote secret's annotation kept before the write of the
/// kubeconfig of fingerprint `kubeconfig` (None: none, not ours, or taken
/// before another kubeconfig).
pub fn marks_of(meta: &kube::api::ObjectMeta, kubeconfig: &str) -> Option<BTreeMap<String, Mark>> {
    let text = meta.annotations.as_ref()?.get(MARKS_ANNOTATION)?;
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v["kubeconfig"].as_str() != Some(kubeconfig) {
        return None;
    }
    v["pods"]
        .as_object()?
        .iter()
        .map(|(pod, m)| {
            let uid = m["uid"].as_str()?.to_string();
            let restarts = i32::try_from(m["restarts"].as_i64()?).ok()?;
            let last_line = match &m["last_line"] {
                serde_json::Value::Null => None,
                t => Some(t.as_str()?.parse().ok()?),
            };
            Some((
                pod.clone(),
                Mark {
                    uid,
                    restarts,
                    last_line,
                },
            ))
        })
        .collect()
}

/// Whether the live remote secret `meta` says every istiod uses its
/// kubeconfig of fingerprint `kubeconfig` ([`TOOK_ANNOTATION`]).
pub fn known_taken(meta: &kube::api::ObjectMeta, kubeconfig: &str) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(TOOK_ANNOTATION))
        .is_some_and(|t| t == kubeconfig)
}

/// What counts as after the write of the live remote secret `meta`, whose
/// kubeconfig has fingerprint `kubeconfig`: its write time and the marks
/// it keeps for that kubeconfig.
pub fn since_written(meta: &kube::api::ObjectMeta, kubeconfig: &str) -> Since {
    Since {
        written: written_at(meta),
        before: marks_of(meta, kubeconfig),
    }
}

/// Where a pod's evidence starts: what counts as after the write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Since {
    /// When the secret was written (its managedFields time, to the second).
    pub written: Option<Timestamp>,
    /// Each pod as it was just before the write (None: an earlier apply
    /// wrote the secret, and only `written` is known).
    pub before: Option<BTreeMap<String, Mark>>,
}

/// A pod just before the write.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub uid: String,
    pub restarts: i32,
    /// The time of its last log line (kubelet's, to the nanosecond).
    pub last_line: Option<Timestamp>,
}

/// How a pod showed it took the secret, or why it has not yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    /// Started (or restarted) after the write: it read the new secret.
    Restarted,
    /// Logged the swap at this time.
    Logged(Timestamp),
    /// Not yet: why.
    Outstanding(String),
}

impl Evidence {
    pub fn taken(&self) -> bool {
        !matches!(self, Evidence::Outstanding(_))
    }
}

/// The pods as they are now, before a write ([`Since::before`]): their
/// restarts and the time of their last log line (a log that cannot be
/// read marks none; its pod then counts lines from `written` on).
pub async fn mark(conn: &Connection) -> Result<BTreeMap<String, Mark>, ClusterError> {
    let pods = running(conn).await?;
    let marks = futures::future::join_all(pods.iter().map(|p| async move {
        let lp = kube::api::LogParams {
            container: Some("discovery".into()),
            tail_lines: Some(1),
            timestamps: true,
            ..Default::default()
        };
        let last = log(conn, &p.name, &lp).await.ok().and_then(|l| {
            l.lines()
                .filter_map(|line| line.split_once(' ')?.0.parse::<Timestamp>().ok())
                .next_back()
        });
        (
            p.name.clone(),
            Mark {
                uid: p.uid.clone(),
                restarts: p.restarts,
                last_line: last,
            },
        )
    }))
    .await;
    Ok(marks.into_iter().collect())
}

async fn log(conn: &Connection, pod: &str, lp: &kube::api::LogParams) -> Result<String, String> {
    let api: kube::Api<Pod> = kube::Api::namespaced(conn.client.clone(), NS);
    conn.call(&format!("reading the log of pod {pod}"), || {
        api.logs(pod, lp)
    })
    .await
    .map_err(|e| e.to_string())
}

/// Whether `pod` took the remote secret of `cluster` written at `since`,
/// from its log (`timestamps=true` lines, or why it cannot be read). Pure.
pub fn evidence(
    pod: &IstiodPod,
    since: &Since,
    log: Result<&str, &str>,
    cluster: &str,
) -> Evidence {
    let mark = since.before.as_ref().map(|b| b.get(&pod.name));
    // Another pod than the one marked (none, re-created under the same
    // name, or restarted since): it read the secret when it started, so
    // it took it when it started after the write. Whole seconds: a start
    // in a later second than the write's. A pod that started in time but
    // was not yet running when marked read the old secret: its log says.
    let another = match mark {
        Some(None) => true,
        Some(Some(m)) => m.uid != pod.uid || pod.restarts > m.restarts,
        None => true,
    };
    if let (true, Some(w), Some(s)) = (another, since.written, pod.started)
        && s.as_second() > w.as_second()
    {
        return Evidence::Restarted;
    }
    let log = match log {
        Ok(l) => l,
        Err(e) => return Evidence::Outstanding(format!("its log cannot be read ({e})")),
    };
    // After the pod's last line before the write (the node's clock, as
    // the lines'), else from the write's second on (the API server's).
    let floor = mark.flatten().and_then(|m| m.last_line);
    let wanted = swap_line(cluster);
    let logged = log.lines().find_map(|line| {
        let (at, rest) = line.split_once(' ')?;
        let at = at.parse::<Timestamp>().ok()?;
        let after = match floor {
            Some(f) => at > f,
            None => since
                .written
                .is_none_or(|w| at.as_second() >= w.as_second()),
        };
        (after && rest.contains(&wanted)).then_some(at)
    });
    match logged {
        Some(at) => Evidence::Logged(at),
        None => Evidence::Outstanding(format!(
            "it has not logged \"{wanted}\" since the remote secret was written"
        )),
    }
}

/// Each pod's evidence, once every running pod has taken the secret.
pub type Taken = Vec<(String, Evidence)>;

/// Polls every running istiod pod of `conn` until each has taken the remote
/// secret of `cluster` written at `since` ([`evidence`]), for at most
/// `timeout`: Ok with each pod's evidence (none running: nothing holds an
/// old client), or Err with the pods still outstanding and why.
pub async fn wait_taken(
    conn: &Connection,
    cluster: &str,
    since: &Since,
    timeout: Duration,
) -> Result<Result<Taken, Taken>, ClusterError> {
    let deadline = Instant::now() + timeout;
    let mut taken: BTreeMap<String, Evidence> = BTreeMap::new();
    loop {
        let pods = running(conn).await?;
        // A pod gone since the last poll holds no client any more.
        taken.retain(|name, _| pods.iter().any(|p| &p.name == name));
        let mut outstanding = Vec::new();
        let asked: Vec<&IstiodPod> = pods
            .iter()
            .filter(|p| !taken.contains_key(&p.name))
            .collect();
        for pod in asked {
            // From the pod's mark (its last line before the write), else
            // the write's second, truncated here: kube rounds to the second.
            let floor = since
                .before
                .as_ref()
                .and_then(|b| b.get(&pod.name))
                .and_then(|m| m.last_line);
            let from = floor.or(since.written).or(pod.started);
            let lp = kube::api::LogParams {
                container: Some("discovery".into()),
                since_time: from.and_then(|t| Timestamp::from_second(t.as_second()).ok()),
                timestamps: true,
                limit_bytes: Some(8 << 20),
                ..Default::default()
            };
            let text = log(conn, &pod.name, &lp).await;
            match evidence(pod, since, text.as_deref().map_err(String::as_str), cluster) {
                Evidence::Outstanding(why) => {
                    outstanding.push((pod.name.clone(), Evidence::Outstanding(why)))
                }
                e => {
                    taken.insert(pod.name.clone(), e);
                }
            }
        }
        if outstanding.is_empty() {
            return Ok(Ok(taken.into_iter().collect()));
        }
        if Instant::now() >= deadline {
            return Ok(Err(outstanding));
        }
        tokio::time::sleep(Duration::from_secs(1).min(deadline - Instant::now())).await;
    }
}

/// When a live object was last written: the latest `time` of its
/// managedFields (the API server's clock, to the second).
pub fn written_at(meta: &kube::api::ObjectMeta) -> Option<Timestamp> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.time.as_ref().map(|t| t.0))
        .max()
}

/// One line per pod for the step's log: how each showed it took the secret.
pub fn describe(taken: &Taken) -> String {
    taken
        .iter()
        .map(|(pod, e)| match e {
            Evidence::Restarted => format!("pod {pod} started after the write"),
            Evidence::Logged(at) => format!("pod {pod} swapped its client at {at}"),
            Evidence::Outstanding(why) => format!("pod {pod}: {why}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(name: &str, restarts: i32, started: &str) -> IstiodPod {
        IstiodPod {
            name: name.into(),
            uid: format!("uid-{name}"),
            restarts,
            started: Some(at(started)),
        }
    }

    fn marked(name: &str, restarts: i32, last: Option<&str>) -> BTreeMap<String, Mark> {
        BTreeMap::from([(
            name.to_string(),
            Mark {
                uid: format!("uid-{name}"),
                restarts,
                last_line: last.map(at),
            },
        )])
    }

    const SWAP: &str = "2026-12-07T10:00:05.5Z 2026-12-07T10:00:05.500000Z\tinfo\tstopping previous cluster c3 after new cluster synced\n";

    #[test]
    fn only_a_swap_line_after_the_mark_of_the_same_cluster_counts() {
        let p = pod("istiod-a", 0, "2026-12-07T09:00:00Z");
        let before = |last| Since {
            written: Some(at("2026-12-07T10:00:05Z")),
            before: Some(marked("istiod-a", 0, last)),
        };
        // Logged after the mark: taken.
        let s = before(Some("2026-12-07T10:00:05.1Z"));
        assert_eq!(
            evidence(&p, &s, Ok(SWAP), "c3"),
            Evidence::Logged(at("2026-12-07T10:00:05.5Z"))
        );
        // A swap from before the mark (an earlier write, the same second): not this one.
        let s = before(Some("2026-12-07T10:00:05.7Z"));
        assert!(!evidence(&p, &s, Ok(SWAP), "c3").taken());
        // Another cluster's swap, or one whose id only starts the same: no.
        let s = before(None);
        assert!(!evidence(&p, &s, Ok(SWAP), "c").taken());
        assert!(!evidence(&p, &s, Ok(&SWAP.replace("c3 after", "c33 after")), "c3").taken());
        // A log that cannot be read says why.
        match evidence(&p, &s, Err("pods/log is forbidden"), "c3") {
            Evidence::Outstanding(why) => assert!(why.contains("pods/log is forbidden"), "{why}"),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn a_pod_that_started_after_the_write_read_the_new_secret() {
        let written = Some(at("2026-12-07T10:00:05Z"));
        // Not among the pods marked before the write, or restarted since.
        let s = Since {
            written,
            before: Some(marked("istiod-a", 0, None)),
        };
        assert_eq!(
            evidence(
                &pod("istiod-b", 0, "2026-12-07T10:00:06Z"),
                &s,
                Ok(""),
                "c3"
            ),
            Evidence::Restarted
        );
        assert_eq!(
            evidence(
                &pod("istiod-a", 1, "2026-12-07T10:00:06Z"),
                &s,
                Ok(""),
                "c3"
            ),
            Evidence::Restarted
        );
        assert!(
            !evidence(
                &pod("istiod-a", 0, "2026-12-07T09:00:00Z"),
                &s,
                Ok(""),
                "c3"
            )
            .taken()
        );
        // Re-created under the same name: another pod.
        let again = IstiodPod {
            uid: "another".into(),
            ..pod("istiod-a", 0, "2026-12-07T10:00:06Z")
        };
        assert_eq!(evidence(&again, &s, Ok(""), "c3"), Evidence::Restarted);
        // Not marked, but started in the write's second or before (it was
        // not running yet when marked): it read the old secret.
        assert!(
            !evidence(
                &pod("istiod-b", 0, "2026-12-07T10:00:05Z"),
                &s,
                Ok(""),
                "c3"
            )
            .taken()
        );
        // Known only by the write's second: a start in a later second.
        let s = Since {
            written,
            before: None,
        };
        assert_eq!(
            evidence(
                &pod("istiod-a", 0, "2026-12-07T10:00:06Z"),
                &s,
                Ok(""),
                "c3"
            ),
            Evidence::Restarted
        );
        assert!(
            !evidence(
                &pod("istiod-a", 0, "2026-12-07T10:00:05Z"),
                &s,
                Ok(""),
                "c3"
            )
            .taken()
        );
        // …or its swap line, from that second on.
        assert!(
            evidence(
                &pod("istiod-a", 0, "2026-12-07T09:00:00Z"),
                &s,
                Ok(SWAP),
                "c3"
            )
            .taken()
        );
    }

    #[test]
    fn the_marks_survive_the_annotation() {
        let mut marks = marked("istiod-a", 2, Some("2026-12-07T10:00:05.123456789Z"));
        marks.insert(
            "istiod-b".into(),
            Mark {
                uid: "u".into(),
                restarts: 0,
                last_line: None,
            },
        );
        let meta = kube::api::ObjectMeta {
            annotations: Some(BTreeMap::from([(
                MARKS_ANNOTATION.to_string(),
                marks_annotation("k1", &marks),
            )])),
            ..Default::default()
        };
        assert_eq!(marks_of(&meta, "k1"), Some(marks));
        // Taken before another kubeconfig (another writer since): stale.
        assert_eq!(marks_of(&meta, "k2"), None);
        let other = kube::api::ObjectMeta {
            annotations: Some(BTreeMap::from([(
                MARKS_ANNOTATION.to_string(),
                "[1]".to_string(),
            )])),
            ..Default::default()
        };
        assert_eq!(marks_of(&other, "k1"), None);
    }

    #[test]
    fn the_write_time_is_the_latest_managed_fields_time() {
        let meta: kube::api::ObjectMeta = serde_json::from_value(serde_json::json!({
            "managedFields": [
                {"manager": "kubectl", "operation": "Update", "time": "2026-12-07T09:00:00Z"},
                {"manager": "mesh", "operation": "Apply", "time": "2026-12-07T10:00:05Z"},
                {"manager": "other", "operation": "Update"}
            ]
        }))
        .unwrap();
        assert_eq!(written_at(&meta), Some(at("2026-12-07T10:00:05Z")));
    }
}
