//! The Kubernetes state backend: the state kept in a Secret of one cluster
//! (gzipped JSON, the same document as the local file; in parts, named
//! by that Secret, when it is past Kubernetes' 1 MiB), written with
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
//! renewals say ([`lease::Hold::check`]). An apply whose write is refused
//! starts no further step.
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
//! its backup and the Lease carry `app.kubernetes.io/managed-by: mesh`
//! ([`crate::k8s::MANAGED_BY`]), and an object of the same name without it
//! is an error naming the object.
//!
//! A failure says what failed and on which object: reading or writing the
//! state (the Secret), or taking or releasing the lock (the Lease), as
//! [`StateError::Remote`] and the other `Remote*` variants.
//!
//! Where things are:
//!
//! - this file: [`Location`], the public [`KubernetesBackend`] (which
//!   starts the thread) and [`KubernetesLock`], [`lease_seconds`] and
//!   [`FINALIZER`];
//! - `facade.rs`: the thread facade, the requests the two public types
//!   send to the thread for each `state::Backend` and `state::LockedState`
//!   call;
//! - `worker.rs`: the thread's `Worker`, which owns the connection, serves
//!   the requests, and reads and writes the state Secret and its backup;
//! - `codec.rs`: the state in a Secret (gzipped JSON under one data key,
//!   or cut into parts a manifest names, bounded both ways), pure;
//! - `lease.rs`: the Lease protocol: taking, renewing, fencing, releasing
//!   and force-unlocking the lock, and judging a Lease.

mod codec;
mod facade;
mod lease;
mod worker;

use facade::Request;
use state::{LockInfo, RemoteOp, StateError};
use std::path::PathBuf;
use worker::Worker;

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

    /// [`Location::describe`] as the `path` of the [`StateError`] variants
    /// shared with the local file whose messages read right with it (`the
    /// state {path} is locked by…`, `the lock of the state {path}`): never
    /// opened as a file.
    fn path(&self) -> PathBuf {
        PathBuf::from(self.describe())
    }

    /// The name of the Lease that locks the state.
    fn lease_name(&self) -> String {
        format!("{}-lock", self.name)
    }

    /// The Lease, for messages: `Lease ns/name-lock in context c`.
    fn describe_lease(&self) -> String {
        format!(
            "Lease {}/{} in context {}",
            self.namespace,
            self.lease_name(),
            self.context
        )
    }

    /// A failure of `what` (a connection, the API server, a permission):
    /// said of the Secret for a read or a write, of the Lease for the lock.
    fn remote(&self, what: RemoteOp, detail: impl Into<String>) -> StateError {
        let location = match what {
            RemoteOp::Read | RemoteOp::Write => self.describe(),
            RemoteOp::Lock | RemoteOp::Unlock => self.describe_lease(),
        };
        StateError::Remote {
            what,
            location,
            detail: detail.into(),
        }
    }
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
}

/// A held Lease. Dropping it releases the lock.
pub struct KubernetesLock {
    tx: tokio::sync::mpsc::UnboundedSender<Request>,
    location: Location,
    info: LockInfo,
    /// The serial the state was read at: a write refuses a newer one.
    read_serial: std::sync::Mutex<u64>,
}
