//! The lock's holder record, on its own so that the errors that name a
//! holder (`error`) and the lock that writes the record (`lock`, which
//! returns those errors) both build on it without importing each other.

use serde::{Deserialize, Serialize};

/// Who holds the lock, as recorded in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random, 32 hex characters: what `mesh force-unlock` takes.
    pub id: String,
    /// `user@host`.
    pub who: String,
    pub pid: u32,
    /// `plan`, `apply`, `destroy`.
    pub operation: String,
    /// When the lock was taken, RFC 3339 UTC.
    pub created: String,
    /// The state file it locks.
    pub path: String,
}
