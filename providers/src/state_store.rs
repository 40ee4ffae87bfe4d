//! The Kubernetes state backend: the state kept in a Secret of one cluster
//! (gzipped JSON, the same document as the local file), written with
//! resourceVersion checks and a backup Secret, and locked with a
//! `coordination.k8s.io/v1` Lease that carries the holder's details, is
//! renewed while the command runs, and expires on its own when the holder
//! dies.
//!
//! `state::Backend` is synchronous (the local file needs nothing else), so
//! this backend runs its own thread with its own runtime: calls are
//! messages to it, and the Lease is renewed there while a lock is held.
//!
//! The Lease is judged as Kubernetes' own leader election judges it: a
//! Lease is expired when this process has seen it unchanged (the same
//! resourceVersion) for its whole duration, by this machine's monotonic
//! clock, never by comparing the holder's timestamps with the local clock
//! (a clock that is wrong by more than the duration would otherwise take a
//! live holder's lock). Every state write is fenced: it is refused unless
//! this process still holds the Lease, as the Lease says and as its own
//! renewals say ([`Hold::check`]). An apply whose write is refused starts
//! no further step.
//!
//! The held Lease carries a finalizer ([`FINALIZER`]), so deleting it by
//! hand (`kubectl delete lease`) cannot free the lock while the holder's
//! steps still run: the delete only marks the Lease. The holder sees the
//! mark, starts no new step ([`state::LockedState::may_start`]), lets the
//! running ones finish and records them (the Lease still names it, so its
//! writes stay fenced and valid), then removes the finalizer and exits with
//! an error saying what happened; only then is the Lease gone and another
//! mesh can take it. A holder that dies with the Lease marked is treated as
//! any dead holder: once seen unchanged for its duration, a newcomer drops
//! the finalizer and takes a fresh Lease.
//!
//! mesh reads, writes and deletes only objects it owns: the state Secret,
//! its backup and the Lease carry `app.kubernetes.io/managed-by: mesh`, and
//! an object of the same name without it is an error naming the object.

use crate::cluster::{Clusters, Connection};
use crate::rendered::Target;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use state::{LockInfo, State, StateError};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Duration;

/// The Secret's data key.
const KEY: &str = "state.json.gz";
/// Kubernetes refuses objects above 1 MiB; keep room for metadata.
const MAX_BYTES: usize = 1024 * 1024 - 64 * 1024;
/// The Lease's annotation with the holder's [`LockInfo`].
const LOCK_INFO: &str = "mesh/lock-info";
/// The label that marks the objects mesh owns.
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The held Lease's finalizer: a hand delete only marks it (module docs).
pub const FINALIZER: &str = "mesh/lock-held";

/// How long a Lease lives without renewal: a killed holder's lock is free
/// after this (`MESH_STATE_LEASE_SECONDS` changes it, for tests).
pub fn lease_seconds() -> i32 {
    std::env::var("MESH_STATE_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(30)
}

/// Where the state lives.
#[derive(Debug, Clone)]
pub struct Location {
    pub context: String,
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub name: String,
}

impl Location {
    pub fn describe(&self) -> String {
        format!(
            "Secret {}/{} in context {}",
            self.namespace, self.name, self.context
        )
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(self.describe())
    }
}

type Reply<T> = mpsc::Sender<Result<T, StateError>>;

enum Request {
    Read(Reply<Option<State>>),
    Write(State, u64, bool, Reply<()>),
    Lock(String, Duration, Reply<LockInfo>),
    Unlock(Reply<()>),
    ForceUnlock(String, Reply<()>),
    MayStart(Reply<()>),
}

/// The backend: a handle on its thread.
pub struct KubernetesBackend {
    location: Location,
    tx: tokio::sync::mpsc::UnboundedSender<Request>,
}

impl KubernetesBackend {
    pub fn new(location: Location) -> KubernetesBackend {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let loc = location.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(Worker::new(loc).run(rx));
        });
        KubernetesBackend { location, tx }
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StateError> {
        ask(&self.tx, &self.location, make)
    }
}

/// Sends a request to the backend's thread and waits for its answer.
fn ask<T>(
    tx: &tokio::sync::mpsc::UnboundedSender<Request>,
    location: &Location,
    make: impl FnOnce(Reply<T>) -> Request,
) -> Result<T, StateError> {
    let (reply, answer) = mpsc::channel();
    let gone = || StateError::Lock {
        path: location.path(),
        source: std::io::Error::other("the state backend's thread stopped"),
    };
    tx.send(make(reply)).map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

impl state::Backend for KubernetesBackend {
    fn location(&self) -> String {
        self.location.describe()
    }

    fn lock(
        &self,
        operation: &str,
        timeout: Duration,
    ) -> Result<Box<dyn state::LockedState>, StateError> {
        let info = self.ask(|r| Request::Lock(operation.to_string(), timeout, r))?;
        Ok(Box::new(KubernetesLock {
            tx: self.tx.clone(),
            location: self.location.clone(),
            info,
            read_serial: std::sync::Mutex::new(0),
        }))
    }

    fn read_unlocked(&self) -> Result<Option<State>, StateError> {
        self.ask(Request::Read)
    }

    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        self.ask(|r| Request::ForceUnlock(id.to_string(), r))
    }
}

/// A held Lease. Dropping it releases the lock.
pub struct KubernetesLock {
    tx: tokio::sync::mpsc::UnboundedSender<Request>,
    location: Location,
    info: LockInfo,
    /// The serial the state was read at: a write refuses a newer one.
    read_serial: std::sync::Mutex<u64>,
}

impl KubernetesLock {
    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StateError> {
        ask(&self.tx, &self.location, make)
    }
}

impl state::LockedState for KubernetesLock {
    fn info(&self) -> &LockInfo {
        &self.info
    }

    fn read(&self) -> Result<Option<State>, StateError> {
        let st = self.ask(Request::Read)?;
        *self.read_serial.lock().unwrap_or_else(|p| p.into_inner()) =
            st.as_ref().map_or(0, |s| s.serial);
        Ok(st)
    }

    fn write(&mut self, st: &mut State) -> Result<(), StateError> {
        let read_serial = *self.read_serial.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = st.clone();
        next.serial = st.next_serial().ok_or_else(|| StateError::Write {
            path: self.location.path(),
            source: std::io::Error::other(format!(
                "its serial {} is the largest a state may have (it was edited by hand?): {}",
                st.serial,
                state::SERIAL_RECOVERY
            )),
        })?;
        next.format_version = state::FORMAT_VERSION;
        let serial = next.serial;
        self.ask(|r| Request::Write(next, read_serial, false, r))?;
        st.serial = serial;
        st.format_version = state::FORMAT_VERSION;
        *self.read_serial.lock().unwrap_or_else(|p| p.into_inner()) = serial;
        Ok(())
    }

    fn may_start(&self) -> Result<(), StateError> {
        self.ask(Request::MayStart)
    }

    fn push(&mut self, incoming: State, force: bool) -> Result<State, StateError> {
        let current = self.read()?;
        let serial = state::push_serial(&self.location.path(), current.as_ref(), &incoming, force)?;
        let mut next = incoming;
        next.serial = serial;
        next.format_version = state::FORMAT_VERSION;
        let read_serial = current.as_ref().map_or(0, |c| c.serial);
        self.ask(|r| Request::Write(next.clone(), read_serial, force, r))?;
        Ok(next)
    }
}

impl Drop for KubernetesLock {
    fn drop(&mut self) {
        let _ = self.ask(Request::Unlock);
    }
}

/// The backend's thread: one connection, the lock it holds, its renewal.
struct Worker {
    location: Location,
    clusters: Clusters,
    /// The Secret's resourceVersion when last read or written.
    version: Option<String>,
    /// The held lock, and the task that renews it.
    held: Option<(Arc<Hold>, tokio::task::JoinHandle<()>)>,
}

/// This process's hold on the Lease, shared with the task that renews it.
struct Hold {
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
    fn check(&self) -> Result<(), String> {
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
    fn new(location: Location) -> Worker {
        Worker {
            clusters: Clusters::new(location.kubeconfig.clone()),
            location,
            version: None,
            held: None,
        }
    }

    async fn run(mut self, mut rx: tokio::sync::mpsc::UnboundedReceiver<Request>) {
        while let Some(req) = rx.recv().await {
            match req {
                Request::Read(r) => {
                    let _ = r.send(self.read().await);
                }
                Request::Write(st, read_serial, force, r) => {
                    let _ = r.send(self.write(&st, read_serial, force).await);
                }
                Request::Lock(op, timeout, r) => {
                    let _ = r.send(self.lock(&op, timeout).await);
                }
                Request::Unlock(r) => {
                    let _ = r.send(self.unlock().await);
                }
                Request::ForceUnlock(id, r) => {
                    let _ = r.send(self.force_unlock(&id).await);
                }
                Request::MayStart(r) => {
                    let _ = r.send(self.may_start().await);
                }
            }
        }
        let _ = self.unlock().await;
    }

    fn err(&self, what: &str, e: impl std::fmt::Display) -> StateError {
        StateError::Lock {
            path: self.location.path(),
            source: std::io::Error::other(format!("{what}: {e}")),
        }
    }

    async fn connect(&self) -> Result<Connection, StateError> {
        let target = Target {
            cluster: format!("the state's cluster ({})", self.location.context),
            context: self.location.context.clone(),
            kubeconfig: self.location.kubeconfig.clone(),
        };
        self.clusters
            .connect(&target)
            .await
            .map_err(|e| self.err("connecting", e))
    }

    /// A kube error worded for the user: a missing namespace, a missing
    /// permission (naming the verb and resource), or the error itself.
    async fn explain(
        &self,
        conn: &Connection,
        verb: &str,
        resource: &str,
        e: kube::Error,
    ) -> StateError {
        let ns = &self.location.namespace;
        let ctx = &self.location.context;
        let message = match &e {
            kube::Error::Api(s) if s.code == 403 => format!(
                "no permission to {verb} {resource} in namespace {ns} (context {ctx}): \
                 grant the kubeconfig's user `{verb}` on `{resource}` there"
            ),
            kube::Error::Api(s) if s.code == 404 => {
                let nss: Api<Namespace> = Api::all(conn.client.clone());
                match nss.get_opt(ns).await {
                    Ok(None) => return self.namespace_missing(),
                    _ => format!("{verb} {resource}: {e}"),
                }
            }
            _ => format!("{verb} {resource}: {e}"),
        };
        StateError::Lock {
            path: self.location.path(),
            source: std::io::Error::other(message),
        }
    }

    fn namespace_missing(&self) -> StateError {
        let ns = &self.location.namespace;
        let ctx = &self.location.context;
        StateError::Lock {
            path: self.location.path(),
            source: std::io::Error::other(format!(
                "the namespace {ns} does not exist in context {ctx}: create it with \
                 `kubectl --context {ctx} create namespace {ns}`, or set [state] namespace"
            )),
        }
    }

    async fn read(&mut self) -> Result<Option<State>, StateError> {
        let conn = self.connect().await?;
        // Under the lock, a read is fenced like a write: a plan made from
        // a state another holder is changing would be wrong.
        if self.held.is_some() {
            self.fence(&conn).await?;
        }
        let secrets: Api<Secret> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        let got = match secrets.get_opt(&self.location.name).await {
            Ok(s) => s,
            Err(e) => return Err(self.explain(&conn, "get", "secrets", e).await),
        };
        let Some(secret) = got else {
            // A namespace that does not exist is said now, not at the first write.
            let nss: Api<Namespace> = Api::all(conn.client.clone());
            if let Ok(None) = nss.get_opt(&self.location.namespace).await {
                return Err(self.namespace_missing());
            }
            self.version = None;
            return Ok(None);
        };
        self.foreign(&secret.metadata, "Secret", &self.location.name)?;
        // And after: a holder stopped between the check and the read may
        // have read what another holder wrote meanwhile.
        if self.held.is_some() {
            self.fence(&conn).await?;
        }
        self.version = secret.metadata.resource_version.clone();
        self.decode(&secret).map(Some)
    }

    /// An object mesh must not touch: one of the names it uses, without
    /// its label. Named, with what to rename.
    fn foreign(
        &self,
        meta: &kube::api::ObjectMeta,
        kind: &str,
        name: &str,
    ) -> Result<(), StateError> {
        let ours = meta
            .labels
            .as_ref()
            .and_then(|l| l.get(MANAGED_BY))
            .is_some_and(|v| v == "mesh");
        if ours {
            return Ok(());
        }
        Err(StateError::NotOurs {
            what: format!(
                "{kind} {}/{} in context {}",
                self.location.namespace,
                crate::rendered::shown(name),
                self.location.context
            ),
            rename: "Set `[state] name` in the mesh file to a name of your own (mesh uses the \
                     Secrets NAME and NAME-backup and the Lease NAME-lock)"
                .into(),
        })
    }

    /// Refuses a write unless this process still holds the Lease (see the
    /// module docs): by its own renewals, and by the Lease as it is now,
    /// which it returns.
    async fn fence(&self, conn: &Connection) -> Result<Lease, StateError> {
        let lost = |why: String| StateError::LockLost {
            path: self.location.path(),
            why,
        };
        let Some((hold, _)) = &self.held else {
            return Err(lost("it never took it".into()));
        };
        hold.check().map_err(lost)?;
        let leases: Api<Lease> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        let lease = match leases.get_opt(&self.lease_name()).await {
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
    async fn may_start(&self) -> Result<(), StateError> {
        let conn = self.connect().await?;
        // The Lease as the fence read it: marked for deletion, or not.
        match self.fence(&conn).await? {
            l if l.metadata.deletion_timestamp.is_some() => Err(StateError::LockRevoked {
                path: self.location.path(),
                why: format!(
                    "The Lease {}/{} that locks the state was deleted (by `kubectl delete lease` \
                     or another tool) while this mesh held it",
                    self.location.namespace,
                    self.lease_name()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The state a Secret holds; a Secret it cannot read is an error that
    /// says why (and is then never overwritten).
    fn decode(&self, secret: &Secret) -> Result<State, StateError> {
        let corrupt = |detail: String| StateError::Corrupt {
            path: self.location.path(),
            backup: None,
            detail,
        };
        let is_mesh = secret.metadata.labels.as_ref().is_some_and(|l| {
            l.get("app.kubernetes.io/managed-by").map(String::as_str) == Some("mesh")
        });
        let Some(gz) = secret.data.as_ref().and_then(|d| d.get(KEY)) else {
            return Err(corrupt(format!(
                "it has no `{KEY}`{}",
                if is_mesh { "" } else { ": is it a mesh state?" }
            )));
        };
        // Bounded as a local state file is: a small Secret must not
        // unpack into gigabytes.
        let limit = state::local::STATE_FILE_LIMIT;
        let mut json = Vec::new();
        GzDecoder::new(&gz.0[..])
            .take(limit + 1)
            .read_to_end(&mut json)
            .map_err(|e| corrupt(format!("`{KEY}` is not gzip ({e})")))?;
        if json.len() as u64 > limit {
            return Err(corrupt(format!(
                "`{KEY}` unpacks to more than {} MiB, more than a state may be",
                limit >> 20
            )));
        }
        state::parse_state(&self.location.path(), &json)
    }

    async fn write(&mut self, st: &State, read_serial: u64, force: bool) -> Result<(), StateError> {
        let conn = self.connect().await?;
        let secrets: Api<Secret> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        let path = self.location.path();
        let write_err = |source: std::io::Error| StateError::Write {
            path: path.clone(),
            source,
        };
        self.fence(&conn).await?;
        // Never replace what could not be read, or a newer state.
        let current = match secrets.get_opt(&self.location.name).await {
            Ok(s) => s,
            Err(e) => return Err(self.explain(&conn, "get", "secrets", e).await),
        };
        if let Some(cur) = &current {
            self.foreign(&cur.metadata, "Secret", &self.location.name)?;
            // The Secret just fetched: read once, checked, then replaced
            // with this very resourceVersion.
            let old = self.decode(cur)?;
            self.version = cur.metadata.resource_version.clone();
            if old.lineage != st.lineage && !force {
                return Err(StateError::Changed {
                    path: self.location.path(),
                    detail: format!(
                        "it is another state: lineage {} there, {} here",
                        old.lineage, st.lineage
                    ),
                });
            }
            if old.serial > read_serial {
                return Err(StateError::Changed {
                    path: self.location.path(),
                    detail: format!(
                        "serial {} there is newer than serial {read_serial} it was read at",
                        old.serial
                    ),
                });
            }
            // The previous version, kept as `<name>-backup`.
            let mut backup = cur.clone();
            backup.metadata = kube::api::ObjectMeta {
                name: Some(format!("{}-backup", self.location.name)),
                namespace: Some(self.location.namespace.clone()),
                labels: cur.metadata.labels.clone(),
                ..Default::default()
            };
            let bname = format!("{}-backup", self.location.name);
            let existing = match secrets.get_opt(&bname).await {
                Ok(b) => b,
                Err(e) => return Err(self.explain(&conn, "get", "secrets", e).await),
            };
            if let Some(b) = &existing {
                self.foreign(&b.metadata, "Secret", &bname)?;
            }
            backup.metadata.labels = Some(BTreeMap::from([
                (MANAGED_BY.to_string(), "mesh".to_string()),
                ("mesh/state".to_string(), st.mesh_id.clone()),
            ]));
            backup.metadata.resource_version = existing.and_then(|b| b.metadata.resource_version);
            let r = if backup.metadata.resource_version.is_some() {
                secrets
                    .replace(&bname, &PostParams::default(), &backup)
                    .await
            } else {
                secrets.create(&PostParams::default(), &backup).await
            };
            if let Err(e) = r {
                return Err(self.explain(&conn, "create or update", "secrets", e).await);
            }
        }
        let json =
            serde_json::to_vec_pretty(st).map_err(|e| write_err(std::io::Error::other(e)))?;
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&json).map_err(write_err)?;
        let gz = enc.finish().map_err(write_err)?;
        if gz.len() > MAX_BYTES {
            return Err(write_err(std::io::Error::other(format!(
                "the state is {} bytes gzipped, more than a Secret holds ({MAX_BYTES}): \
                 use the local backend for a mesh this large",
                gz.len()
            ))));
        }
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(self.location.name.clone()),
                namespace: Some(self.location.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY.to_string(), "mesh".to_string()),
                    ("mesh/state".to_string(), st.mesh_id.clone()),
                ])),
                resource_version: current.as_ref().and(self.version.clone()),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(KEY.to_string(), ByteString(gz))])),
            ..Default::default()
        };
        let written = if current.is_some() {
            secrets
                .replace(&self.location.name, &PostParams::default(), &secret)
                .await
        } else {
            secrets.create(&PostParams::default(), &secret).await
        };
        match written {
            Ok(s) => {
                self.version = s.metadata.resource_version;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Err(StateError::Changed {
                path: self.location.path(),
                detail: "someone else wrote it meanwhile (its resourceVersion changed)".into(),
            }),
            Err(e) => Err(self.explain(&conn, "update", "secrets", e).await),
        }
    }

    fn lease_name(&self) -> String {
        format!("{}-lock", self.location.name)
    }

    /// Takes the Lease: creates it, or replaces one this process has seen
    /// unchanged for its whole duration (an expired holder). Waits up to
    /// `timeout` for a live holder; a Lease whose own timestamps say it is
    /// stale (a holder that died) is watched for its duration even past
    /// `timeout`, so a crashed apply's lock frees itself without
    /// `--lock-timeout`.
    async fn lock(&mut self, operation: &str, timeout: Duration) -> Result<LockInfo, StateError> {
        let conn = self.connect().await?;
        let leases: Api<Lease> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        let info = LockInfo {
            id: random_id(),
            who: who(),
            pid: std::process::id(),
            operation: operation.into(),
            created: state::now_rfc3339(),
            path: self.location.describe(),
        };
        let started = tokio::time::Instant::now();
        // The Lease as last seen: its resourceVersion, and since when.
        let mut seen: Option<(String, tokio::time::Instant)> = None;
        loop {
            let existing = match leases.get_opt(&self.lease_name()).await {
                Ok(l) => l,
                Err(e) => {
                    return Err(self
                        .explain(&conn, "get", "leases.coordination.k8s.io", e)
                        .await);
                }
            };
            let mut lease = self.lease(&info);
            let taken = match &existing {
                None => leases.create(&PostParams::default(), &lease).await,
                Some(l) => {
                    self.foreign(&l.metadata, "Lease", &self.lease_name())?;
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
                        leases
                            .replace(&self.lease_name(), &PostParams::default(), &lease)
                            .await
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
                        .explain(&conn, "create or update", "leases.coordination.k8s.io", e)
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
        let renew = tokio::spawn(renew(leases, self.lease_name(), hold.clone()));
        self.held = Some((hold, renew));
        Ok(info)
    }

    fn lease(&self, info: &LockInfo) -> Lease {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": self.lease_name(),
                "namespace": self.location.namespace,
                "labels": {MANAGED_BY: "mesh", "mesh/state": self.location.name},
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

    async fn unlock(&mut self) -> Result<(), StateError> {
        let Some((hold, renew)) = self.held.take() else {
            return Ok(());
        };
        renew.abort();
        let conn = self.connect().await?;
        let leases: Api<Lease> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        if let Ok(Some(l)) = leases.get_opt(&self.lease_name()).await
            && taken(Some(&l), &hold.id).is_none()
        {
            let _ = release(&leases, l).await;
        }
        Ok(())
    }

    async fn force_unlock(&mut self, id: &str) -> Result<(), StateError> {
        let conn = self.connect().await?;
        let leases: Api<Lease> = Api::namespaced(conn.client.clone(), &self.location.namespace);
        let lease = match leases.get_opt(&self.lease_name()).await {
            Ok(l) => l,
            Err(e) => {
                return Err(self
                    .explain(&conn, "get", "leases.coordination.k8s.io", e)
                    .await);
            }
        };
        let Some(lease) = lease else {
            return Err(StateError::NotLocked {
                path: self.location.path(),
            });
        };
        self.foreign(&lease.metadata, "Lease", &self.lease_name())?;
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
            if let Ok(Some(now)) = leases.get_opt(&self.lease_name()).await
                && now.metadata.resource_version != lease.metadata.resource_version
            {
                return Err(StateError::LockHeld {
                    path: self.location.path(),
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
                .explain(&conn, "delete", "leases.coordination.k8s.io", e)
                .await),
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

fn random_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}
