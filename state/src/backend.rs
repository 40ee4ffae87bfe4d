//! The seam for other state backends.
//!
//! mesh keeps its state in a local file today (`LocalBackend`, which
//! implements these traits in its own module: this one knows no backend);
//! a team will want it in a bucket or a Kubernetes Secret later. Both need
//! the same three things: take a lock (and say who holds it when refused),
//! read and write the state under it, and clear a lock whose holder
//! vanished.
//! The traits are object-safe so the CLI can pick a backend at run time
//! (`Box<dyn Backend>`).
//!
//! The contract every backend keeps: a write is all or nothing, increments
//! the serial, and never replaces a state it could not read; a refused lock
//! is [`StateError::Locked`] with the holder's [`LockInfo`].

use crate::error::StateError;
use crate::lock_info::LockInfo;
use crate::model::State;
use std::time::Duration;

/// Where a state lives.
pub trait Backend: Send + Sync {
    /// For messages: a path, a URL.
    fn location(&self) -> String;

    /// Takes the lock for `operation`, waiting up to `timeout` (zero: fail
    /// at once). Dropping the returned guard releases it.
    fn lock(&self, operation: &str, timeout: Duration) -> Result<Box<dyn LockedState>, StateError>;

    /// The state without taking the lock, for read-only commands.
    fn read_unlocked(&self) -> Result<Option<State>, StateError>;

    /// Clears the lock `id` whose holder cannot release it.
    fn force_unlock(&self, id: &str) -> Result<(), StateError>;
}

/// A held lock: the only way to write the state.
pub trait LockedState: Send {
    fn info(&self) -> &LockInfo;
    fn read(&self) -> Result<Option<State>, StateError>;
    /// Increments `state.serial` and stores it atomically; on error,
    /// nothing changed (and the serial is put back).
    fn write(&mut self, state: &mut State) -> Result<(), StateError>;
    /// `mesh state push`: replaces the state with `incoming`, refusing one
    /// of another lineage or a lower serial unless `force`; returns what
    /// was written.
    fn push(&mut self, incoming: State, force: bool) -> Result<State, StateError>;
}

/// The checks of a push against the current state (shared by backends):
/// the serial the pushed state is written with.
pub fn push_serial(
    location: &std::path::Path,
    current: Option<&State>,
    incoming: &State,
    force: bool,
) -> Result<u64, StateError> {
    let refuse = |detail: String| StateError::PushRefused {
        path: location.to_path_buf(),
        detail,
    };
    let read_serial = current.map_or(0, |c| c.serial);
    if let Some(cur) = current {
        if cur.lineage != incoming.lineage && !force {
            return Err(refuse(format!(
                "it is another state (lineage {}, the current state is lineage {})",
                incoming.lineage, cur.lineage
            )));
        }
        if incoming.serial < cur.serial && !force {
            return Err(refuse(format!(
                "its serial {} is lower than the current state's {}: it is older",
                incoming.serial, cur.serial
            )));
        }
    }
    incoming
        .serial
        .max(read_serial)
        .checked_add(1)
        .ok_or_else(|| refuse("its serial is at the largest number a state can count to".into()))
}
