//! The lock: a `coordination.k8s.io/v1` Lease named `<name>-lock`, taken,
//! renewed, fenced and released as the module docs of `state_store` say.
//! The [`Worker`]'s lock, unlock, force-unlock, may-start and fence are
//! here, with the pure judgements of a Lease they rest on ([`taken`],
//! [`holder`], [`lease_duration`], [`stale_by_its_timestamps`],
//! [`Hold::check`]).

use super::worker::Worker;
use super::{FINALIZER, lease_seconds};
use crate::cluster::Connection;
use crate::k8s::{MANAGED_BY, MESH};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, PostParams};
use state::{LockInfo, RemoteOp, StateError};
use std::sync::Arc;
use std::time::Duration;

/// The Lease's annotation with the holder's [`LockInfo`].
const LOCK_INFO: &str = "mesh/lock-info";

/// This process's hold on the Lease, shared with the task that renews it.
pub(super) struct Hold {
    id: String,
    /// How long the Lease lives without a renewal.
    duration: Duration,
    /// When this process last wrote the Lease (took or renewed it), by
    /// this machine's monotonic clock.
    renewed: std::sync::Mutex<std::time::Instant>,
    /// Why the hold is lost, once it is.
    lost: std::sync::Mutex<Option<String>>,
}

impl Hold {
    fn lose(&self, why: String) {
        self.lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(why);
    }

    /// Whether this process may still act as the holder: the hold is not
    /// known lost, and the last renewal is recent enough that no other
    /// process can have seen the Lease unchanged for its duration (a
    /// margin of a sixth of it covers the time a write takes).
    pub(super) fn check(&self) -> Result<(), String> {
        if let Some(why) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(why);
        }
        let since = self
            .renewed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed();
        if since + self.duration / 6 >= self.duration {
            let why = format!(
                "its last renewal of the Lease was {} s ago and the Lease lives {} s: \
                 another mesh may have taken it since",
                since.as_secs(),
                self.duration.as_secs()
            );
            self.lose(why.clone());
            return Err(why);
        }
        Ok(())
    }
}

impl Worker {
    /// Takes the Lease: creates it, or replaces one this process has seen
    /// unchanged for its whole duration (an expired holder). Waits up to
    /// `timeout` for a live holder; a Lease whose own timestamps say it is
    /// stale (a holder that died) is watched for its duration even past
    /// `timeout`, so a crashed apply's lock frees itself without
    /// `--lock-timeout`.
    pub(super) async fn lock(
        &mut self,
        operation: &str,
        timeout: Duration,
    ) -> Result<LockInfo, StateError> {
        let conn = self.connect(RemoteOp::Lock).await?;
        let leases: Api<Lease> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        let name = self.location.lease_name();
        let info = LockInfo::new(operation, &self.location.describe());
        let started = tokio::time::Instant::now();
        // The Lease as last seen: its resourceVersion, and since when.
        let mut seen: Option<(String, tokio::time::Instant)> = None;
        loop {
            let existing = match leases.get_opt(&name).await {
                Ok(l) => l,
                Err(e) => {
                    return Err(self
                        .explain(
                            RemoteOp::Lock,
                            &conn,
                            "get",
                            "leases.coordination.k8s.io",
                            e,
                        )
                        .await);
                }
            };
            let mut lease = self.lease(&info);
            let taken = match &existing {
                None => leases.create(&PostParams::default(), &lease).await,
                Some(l) => {
                    self.foreign(&l.metadata, "Lease", &name)?;
                    let version = l.metadata.resource_version.clone().unwrap_or_default();
                    let now = tokio::time::Instant::now();
                    let since = match &seen {
                        Some((v, since)) if *v == version => *since,
                        _ => {
                            seen = Some((version, now));
                            now
                        }
                    };
                    if now - since >= lease_duration(l) && l.metadata.deletion_timestamp.is_some() {
                        // A holder that died after its Lease was deleted by
                        // hand: its finalizer goes, and with it the Lease;
                        // the next round creates a fresh one.
                        release(&leases, l.clone()).await
                    } else if now - since >= lease_duration(l) {
                        lease.metadata.resource_version = l.metadata.resource_version.clone();
                        leases.replace(&name, &PostParams::default(), &lease).await
                    } else {
                        // A stale-looking Lease is watched until it has
                        // been seen unchanged for its duration.
                        let patience = if stale_by_its_timestamps(l) {
                            timeout.max(lease_duration(l) + Duration::from_secs(2))
                        } else {
                            timeout
                        };
                        if now - started >= patience {
                            return Err(StateError::Locked {
                                path: self.location.path(),
                                info: holder(l).map(Box::new),
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                }
            };
            match taken {
                Ok(l) if l.metadata.deletion_timestamp.is_some() => continue,
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => {
                    return Err(self
                        .explain(
                            RemoteOp::Lock,
                            &conn,
                            "create or update",
                            "leases.coordination.k8s.io",
                            e,
                        )
                        .await);
                }
            }
        }
        let hold = Arc::new(Hold {
            id: info.id.clone(),
            duration: Duration::from_secs(lease_seconds() as u64),
            renewed: std::sync::Mutex::new(std::time::Instant::now()),
            lost: std::sync::Mutex::new(None),
        });
        let renew = tokio::spawn(renew(leases, name, hold.clone()));
        self.held = Some((hold, renew));
        Ok(info)
    }

    /// The Lease this process takes, naming it the holder.
    fn lease(&self, info: &LockInfo) -> Lease {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": self.location.lease_name(),
                "namespace": self.location.namespace,
                "labels": {MANAGED_BY: MESH, "mesh/state": self.location.name},
                "annotations": {LOCK_INFO: serde_json::to_string(info).unwrap_or_default()},
                "finalizers": [FINALIZER],
            },
            "spec": {
                "holderIdentity": info.id,
                "leaseDurationSeconds": lease_seconds(),
                "acquireTime": micro_now().0,
                "renewTime": micro_now().0,
            }
        }))
        .expect("a valid Lease")
    }

    pub(super) async fn unlock(&mut self) -> Result<(), StateError> {
        let Some((hold, renew)) = self.held.take() else {
            return Ok(());
        };
        renew.abort();
        let conn = self.connect(RemoteOp::Unlock).await?;
        let leases: Api<Lease> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        if let Ok(Some(l)) = leases.get_opt(&self.location.lease_name()).await
            && taken(Some(&l), &hold.id).is_none()
        {
            let _ = release(&leases, l).await;
        }
        Ok(())
    }

    pub(super) async fn force_unlock(&mut self, id: &str) -> Result<(), StateError> {
        let conn = self.connect(RemoteOp::Unlock).await?;
        let leases: Api<Lease> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        let name = self.location.lease_name();
        let lease = match leases.get_opt(&name).await {
            Ok(l) => l,
            Err(e) => {
                return Err(self
                    .explain(
                        RemoteOp::Unlock,
                        &conn,
                        "get",
                        "leases.coordination.k8s.io",
                        e,
                    )
                    .await);
            }
        };
        let Some(lease) = lease else {
            return Err(StateError::NotLocked {
                path: self.location.path(),
            });
        };
        self.foreign(&lease.metadata, "Lease", &name)?;
        let holder_id = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default();
        if holder_id != id {
            return Err(StateError::LockIdMismatch {
                path: self.location.path(),
                given: id.into(),
                actual: holder_id,
            });
        }
        // A holder that still renews is alive: its lock is not forced away
        // (it would go on with the steps it runs while another starts).
        // Watched for a renewal interval and a margin.
        let watch = lease_duration(&lease) / 3 + Duration::from_secs(2);
        let deadline = tokio::time::Instant::now() + watch;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Ok(Some(now)) = leases.get_opt(&name).await
                && now.metadata.resource_version != lease.metadata.resource_version
            {
                return Err(StateError::LockHeld {
                    path: self.location.path(),
                    // An unreadable record still names the holder's ID (a
                    // placeholder, not this process's record).
                    info: Box::new(holder(&now).unwrap_or_else(|| LockInfo {
                        id: holder_id.clone(),
                        who: String::new(),
                        pid: 0,
                        operation: String::new(),
                        created: String::new(),
                        path: self.location.describe(),
                    })),
                });
            }
        }
        match release(&leases, lease).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self
                .explain(
                    RemoteOp::Unlock,
                    &conn,
                    "delete",
                    "leases.coordination.k8s.io",
                    e,
                )
                .await),
        }
    }

    /// Refuses a write unless this process still holds the Lease (see the
    /// module docs): by its own renewals, and by the Lease as it is now,
    /// which it returns.
    pub(super) async fn fence(&self, conn: &Connection) -> Result<Lease, StateError> {
        let lost = |why: String| StateError::LockLost {
            path: self.location.path(),
            why,
        };
        let Some((hold, _)) = &self.held else {
            return Err(lost("it never took it".into()));
        };
        hold.check().map_err(lost)?;
        let leases: Api<Lease> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        let lease = match leases.get_opt(&self.location.lease_name()).await {
            Ok(l) => l,
            Err(e) => return Err(lost(format!("the Lease cannot be read ({e})"))),
        };
        match (taken(lease.as_ref(), &hold.id), lease) {
            (None, Some(lease)) => Ok(lease),
            (why, _) => {
                let why = why.unwrap_or_default();
                hold.lose(why.clone());
                Err(lost(why))
            }
        }
    }

    /// Whether new steps may start: the Lease is still ours (as [`fence`]
    /// checks) and nobody asked it away. A Lease deleted by hand is only
    /// marked (its finalizer keeps it, see the module docs): no new step
    /// starts, but the writes that record the running ones still pass the
    /// fence.
    ///
    /// [`fence`]: Worker::fence
    pub(super) async fn may_start(&self) -> Result<(), StateError> {
        let conn = self.connect(RemoteOp::Lock).await?;
        // The Lease as the fence read it: marked for deletion, or not.
        match self.fence(&conn).await? {
            l if l.metadata.deletion_timestamp.is_some() => Err(StateError::LockRevoked {
                path: self.location.path(),
                why: format!(
                    "The Lease {}/{} that locks the state was deleted (by `kubectl delete lease` \
                     or another tool) while this mesh held it",
                    self.location.namespace,
                    self.location.lease_name()
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// Deletes the Lease `l` as it was read: drops mesh's finalizer (a write
/// that fails if the Lease changed since), then deletes it unless the
/// finalizer was all that kept it. Returns the Lease as last written.
async fn release(leases: &Api<Lease>, mut l: Lease) -> Result<Lease, kube::Error> {
    let name = l.metadata.name.clone().unwrap_or_default();
    let finalizers = l.metadata.finalizers.take().unwrap_or_default();
    let kept: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if kept.len() != finalizers.len() {
        l.metadata.finalizers = Some(kept);
        l = match leases.replace(&name, &PostParams::default(), &l).await {
            Ok(l) => l,
            // Gone with its finalizer: released.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(l),
            Err(e) => return Err(e),
        };
    } else {
        l.metadata.finalizers = Some(finalizers);
    }
    if l.metadata.deletion_timestamp.is_none() {
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: l.metadata.resource_version.clone(),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match leases.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(l)
}

/// The holder's details from a Lease's annotation.
fn holder(l: &Lease) -> Option<LockInfo> {
    l.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LOCK_INFO))
        .and_then(|j| serde_json::from_str(j).ok())
}

/// How long a Lease lives without renewal, as it says.
fn lease_duration(l: &Lease) -> Duration {
    let secs = l
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .unwrap_or(0);
    Duration::from_secs(secs.max(0) as u64)
}

/// Whether a Lease's own timestamps say its holder stopped renewing it
/// longer ago than its duration. Only a hint (the clocks may differ): it
/// decides how long to watch, never whether to take.
fn stale_by_its_timestamps(l: &Lease) -> bool {
    let Some(spec) = &l.spec else { return true };
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    crate::ca::now() > renewed.0.as_second() + lease_duration(l).as_secs() as i64
}

/// Why the Lease is no longer held by `id` (None: it is).
fn taken(lease: Option<&Lease>, id: &str) -> Option<String> {
    let Some(l) = lease else {
        return Some(
            "the Lease was deleted (by `mesh force-unlock` or by hand) while this mesh held it"
                .into(),
        );
    };
    let holder_id = l.spec.as_ref().and_then(|s| s.holder_identity.as_deref());
    if holder_id == Some(id) {
        return None;
    }
    Some(match holder(l) {
        Some(info) => format!(
            "the Lease was taken by {} (pid {}, {}) at {}",
            crate::rendered::shown(&info.who),
            info.pid,
            crate::rendered::shown(&info.operation),
            crate::rendered::shown(&info.created)
        ),
        None => format!(
            "the Lease is now held by `{}`",
            crate::rendered::shown(holder_id.unwrap_or_default())
        ),
    })
}

/// Renews the held Lease at a third of its life until it is released or
/// lost; records each renewal in `hold`, and why it was lost.
async fn renew(api: Api<Lease>, name: String, hold: Arc<Hold>) {
    let every = (hold.duration / 3).max(Duration::from_millis(500));
    loop {
        tokio::time::sleep(every).await;
        let current = match api.get_opt(&name).await {
            Ok(l) => l,
            // Unreachable for now: `Hold::check` judges by the time since
            // the last renewal.
            Err(_) => continue,
        };
        if let Some(why) = taken(current.as_ref(), &hold.id) {
            hold.lose(why);
            return;
        }
        let Some(mut l) = current else { return };
        if let Some(spec) = l.spec.as_mut() {
            spec.renew_time = Some(micro_now());
        }
        let sent = std::time::Instant::now();
        if api.replace(&name, &PostParams::default(), &l).await.is_ok() {
            // The renewal counts from when it was sent: the other side may
            // have seen the old version until then.
            *hold.renewed.lock().unwrap_or_else(|p| p.into_inner()) = sent;
        }
    }
}

fn micro_now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A Lease held by `holder_id`, renewed at `renewed` (RFC 3339), living
    /// `secs`, with `info` as its holder record when there is one.
    fn lease(holder_id: &str, info: Option<&LockInfo>, renewed: Value, secs: i32) -> Lease {
        let annotations = match info {
            Some(i) => json!({LOCK_INFO: serde_json::to_string(i).unwrap()}),
            None => json!({}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": "st-lock", "namespace": "ns", "annotations": annotations},
            "spec": {
                "holderIdentity": holder_id,
                "leaseDurationSeconds": secs,
                "acquireTime": renewed,
                "renewTime": renewed,
            }
        }))
        .unwrap()
    }

    fn now() -> Value {
        serde_json::to_value(micro_now()).unwrap()
    }

    fn info() -> LockInfo {
        LockInfo {
            id: "other".into(),
            who: "eve@host".into(),
            pid: 4242,
            operation: "apply".into(),
            created: "2026-01-02T03:04:05Z".into(),
            path: "Secret ns/st in context c".into(),
        }
    }

    fn hold(duration: Duration) -> Hold {
        Hold {
            id: "me".into(),
            duration,
            renewed: std::sync::Mutex::new(std::time::Instant::now()),
            lost: std::sync::Mutex::new(None),
        }
    }

    #[test]
    fn a_missing_lease_is_taken() {
        let why = taken(None, "me").unwrap();
        assert!(why.contains("the Lease was deleted"), "{why}");
    }

    #[test]
    fn a_lease_held_by_us_is_not_taken() {
        assert_eq!(taken(Some(&lease("me", None, now(), 30)), "me"), None);
        // Whatever its record says: the holder is `holderIdentity`.
        assert_eq!(
            taken(Some(&lease("me", Some(&info()), now(), 30)), "me"),
            None
        );
    }

    #[test]
    fn a_lease_held_by_another_names_it() {
        let why = taken(Some(&lease("other", Some(&info()), now(), 30)), "me").unwrap();
        assert_eq!(
            why,
            "the Lease was taken by eve@host (pid 4242, apply) at 2026-01-02T03:04:05Z"
        );
        // Without a readable record, by its `holderIdentity`, escaped.
        let why = taken(Some(&lease("x\u{1b}y", None, now(), 30)), "me").unwrap();
        assert_eq!(why, "the Lease is now held by `x\\u{1b}y`");
        let mut unreadable = lease("other", None, now(), 30);
        unreadable.metadata.annotations =
            Some([(LOCK_INFO.to_string(), "{not json".to_string())].into());
        assert_eq!(holder(&unreadable), None);
        assert_eq!(
            taken(Some(&unreadable), "me").unwrap(),
            "the Lease is now held by `other`"
        );
    }

    #[test]
    fn a_lease_is_stale_by_its_timestamps_only_past_its_duration() {
        let old = json!("2000-01-01T00:00:00.000000Z");
        assert!(stale_by_its_timestamps(&lease(
            "other",
            None,
            old.clone(),
            30
        )));
        assert!(!stale_by_its_timestamps(&lease("other", None, now(), 3600)));
        assert!(!stale_by_its_timestamps(&lease(
            "other",
            None,
            old,
            i32::MAX
        )));
        let mut bare = lease("other", None, now(), 30);
        bare.spec = None;
        assert!(stale_by_its_timestamps(&bare), "no spec: no renewal");
        assert_eq!(lease_duration(&bare), Duration::ZERO);
        assert_eq!(
            lease_duration(&lease("other", None, now(), 30)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_fresh_hold_checks_and_a_lost_one_says_why() {
        let fresh = hold(Duration::from_secs(30));
        assert_eq!(fresh.check(), Ok(()));
        fresh.lose("the Lease was taken".into());
        assert_eq!(fresh.check(), Err("the Lease was taken".to_string()));
        // The first reason stays.
        fresh.lose("later".into());
        assert_eq!(fresh.check(), Err("the Lease was taken".to_string()));
        // Not renewed for most of its life: lost, and stays lost.
        let stale = hold(Duration::from_millis(60));
        std::thread::sleep(Duration::from_millis(60));
        let why = stale.check().unwrap_err();
        assert!(why.contains("its last renewal of the Lease was"), "{why}");
        assert_eq!(stale.check(), Err(why));
    }
}
