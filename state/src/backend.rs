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

    /// Where the previous version of the state is kept, for messages that
    /// say how to undo a write (`mesh state rm`); `None` when the backend
    /// does not name it.
    fn backup_location(&self) -> Option<String> {
        None
    }
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
    /// Whether new steps may start under this lock (checked before each
    /// batch of steps): an error when the lock is lost, or asked away while
    /// still held, in which case the running steps may still be recorded.
    fn may_start(&self) -> Result<(), StateError>;
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
    let limit = crate::model::MAX_SERIAL - crate::model::SERIAL_HEADROOM;
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
    match incoming.serial.max(read_serial).checked_add(1) {
        Some(next) if next <= limit => Ok(next),
        // `--force` renumbers a state whose serial ran out: the way back
        // from a serial set near the limit by hand.
        _ if force => Ok(read_serial.min(incoming.serial).min(limit) + 1),
        _ => Err(refuse(format!(
            "its serial {} is too near the largest a state may have ({}): it was edited by hand? \
             `mesh state push --force` renumbers it",
            incoming.serial.max(read_serial),
            crate::model::MAX_SERIAL
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::push_serial;
    use crate::model::{MAX_SERIAL, SERIAL_HEADROOM, State};
    use std::path::Path;

    fn at(serial: u64) -> State {
        let mut s = State::new("m");
        s.serial = serial;
        s
    }

    /// A serial pushed near the limit would stop every apply soon after:
    /// refused, and `--force` renumbers it (the documented recovery).
    #[test]
    fn a_push_near_the_largest_serial_is_refused_and_forced_renumbers() {
        let p = Path::new("s");
        let near = at(MAX_SERIAL - SERIAL_HEADROOM);
        let e = push_serial(p, None, &near, false).unwrap_err().to_string();
        assert!(
            e.contains("too near the largest") && e.contains("--force"),
            "{e}"
        );
        let mut cur = at(7);
        cur.lineage = near.lineage.clone();
        assert!(push_serial(p, Some(&cur), &near, false).is_err());
        assert_eq!(push_serial(p, Some(&cur), &near, true).unwrap(), 8);
        // A current state already at the limit (a hand edit): forced back.
        let mut stuck = at(u64::MAX);
        stuck.lineage = near.lineage.clone();
        let back = push_serial(p, Some(&stuck), &at(u64::MAX), true).unwrap();
        assert!(back <= MAX_SERIAL - SERIAL_HEADROOM + 1, "{back}");
        // An ordinary push is unchanged.
        assert_eq!(push_serial(p, Some(&cur), &at(9), true).unwrap(), 10);
    }
}
