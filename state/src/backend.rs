//! The seam for other state backends.
//!
//! mesh keeps its state in a local file today ([`LocalBackend`]); a team
//! will want it in a bucket or a Kubernetes Secret later. Both need the
//! same three things: take a lock (and say who holds it when refused), read
//! and write the state under it, and clear a lock whose holder vanished.
//! The traits are object-safe so the CLI can pick a backend at run time
//! (`Box<dyn Backend>`).
//!
//! The contract every backend keeps: a write is all or nothing, increments
//! the serial, and never replaces a state it could not read; a refused lock
//! is [`StateError::Locked`] with the holder's [`LockInfo`].

use crate::local::{LocalBackend, StateLock};
use crate::{LockInfo, State, StateError};
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
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn lock(&self, operation: &str, timeout: Duration) -> Result<Box<dyn LockedState>, StateError> {
        LocalBackend::lock(self, operation, timeout).map(|l| Box::new(l) as Box<dyn LockedState>)
    }

    fn read_unlocked(&self) -> Result<Option<State>, StateError> {
        crate::local::read_unlocked(self.path())
    }

    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        crate::lock::force_unlock(self.path(), id)
    }
}

impl LockedState for StateLock {
    fn info(&self) -> &LockInfo {
        StateLock::info(self)
    }

    fn read(&self) -> Result<Option<State>, StateError> {
        StateLock::read(self)
    }

    fn write(&mut self, state: &mut State) -> Result<(), StateError> {
        StateLock::write(self, state)
    }
}
