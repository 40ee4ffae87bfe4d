//! Everything that can go wrong with a state file or its lock, and with a
//! state kept in a cluster (the `Remote*` variants, whose messages name the
//! object, `Secret ns/name in context c`, where the others name a file).
//!
//! Each message names the file, says what is wrong and what to do next: the
//! CLI prints them as they are. Callers that need to react (the CLI's exit
//! code, a retry) match on the variant instead of the text. What a lock
//! record holds (a lock file, a Lease: anyone who can write there wrote it)
//! is escaped onto one line here, so no consumer of these messages prints a
//! terminal escape or a forged line from it.

use crate::lock_info::{LockInfo, shown};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but could not be read (permissions, a folder, IO).
    #[error(
        "cannot read the state file {path}: {source}. Check that it is a file you can read, \
         or pass --state to use another state file"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Not JSON, or not the shape of a state. `detail` carries serde's
    /// `line N column M` where there is one.
    /// `backup` is named only when that file exists.
    #[error(
        "the state file {path} is corrupt: {detail}. {}mesh will not overwrite a file it cannot read",
        backup_hint(.backup.as_deref())
    )]
    Corrupt {
        path: PathBuf,
        backup: Option<PathBuf>,
        detail: String,
    },

    /// `state push` of a state that would lose the current one.
    #[error(
        "refusing to push over the state {path}: {detail}. Nothing was written; \
         pass --force to replace it anyway"
    )]
    PushRefused { path: PathBuf, detail: String },

    /// The lock path is a symlink, a folder or another special file: mesh
    /// never follows a link there (it could truncate the link's target).
    #[error(
        "the lock file {path} is not a regular file ({what}): mesh will not open it. \
         Remove it (it holds nothing mesh needs) and run the command again"
    )]
    LockNotAFile { path: PathBuf, what: String },

    /// Written by a newer mesh whose format this one does not know.
    #[error(
        "the state file {path} has format version {found}: it was written by a newer mesh \
         (this one reads format {supported} and older). Upgrade mesh; \
         mesh will not overwrite a file it cannot read"
    )]
    NewerFormat {
        path: PathBuf,
        found: u64,
        supported: u32,
    },

    /// The state records another mesh ID than the mesh file declares.
    #[error(
        "this state belongs to mesh `{found}`, the mesh file says `{expected}`: \
         pass --state to use another state file"
    )]
    OtherMesh { found: String, expected: String },

    /// The file on disk is no longer the one this state was read from
    /// (another lineage, or a larger serial): writing would lose it.
    #[error(
        "the state file {path} changed since it was read ({detail}); mesh will not overwrite it. \
         Run the command again to start from the file as it is now"
    )]
    Changed { path: PathBuf, detail: String },

    /// Writing failed; the previous state file is unchanged.
    #[error("cannot write the state file {path}: {source}. The previous state is unchanged")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Another command holds the lock (`info` is None when its record could
    /// not be read, e.g. it is being written at this instant). Boxed, as is
    /// every large field, to keep `Result<_, StateError>` small.
    #[error("{}", locked_message(.path, .info.as_deref()))]
    Locked {
        path: PathBuf,
        info: Option<Box<LockInfo>>,
    },

    /// The lock file itself could not be opened, locked or written.
    #[error("cannot lock the state with {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `force-unlock` found no lock record.
    #[error("the state {path} is not locked: there is nothing to unlock")]
    NotLocked { path: PathBuf },

    /// `force-unlock` was given another ID than the recorded one. Both IDs
    /// are shown escaped: `actual` is whatever the record holds.
    #[error(
        "the lock on {path} has ID {}, not {}: check the ID \
         (a refused command prints it) and try again",
        shown(.actual), shown(.given)
    )]
    LockIdMismatch {
        path: PathBuf,
        given: String,
        actual: String,
    },

    /// `force-unlock` of a lock a live process holds.
    #[error(
        "lock {} on {path} is held by a running process: {} (pid {}) running `{}` since {}. \
         The lock is released when that process ends: let it finish, or stop it if it is stuck. \
         force-unlock only clears a lock whose holder is gone",
        shown(&.info.id), shown(&.info.who), .info.pid, shown(&.info.operation), shown(&.info.created)
    )]
    LockHeld { path: PathBuf, info: Box<LockInfo> },

    /// An object of one of the names a state backend uses that is not the
    /// backend's (no ownership label): never read, written or deleted.
    #[error(
        "{what} is not mesh's (it has no label app.kubernetes.io/managed-by=mesh): mesh never \
         writes or deletes an object it does not own. {rename}"
    )]
    NotOurs { what: String, rename: String },

    /// The lock was lost while the command held it: nothing more is read
    /// or written, and no further step starts.
    #[error(
        "this mesh no longer holds the lock of the state {path}: {why}. Nothing more is written \
         and no further step starts; steps that were running are recorded tainted, so the next \
         apply runs them again. Run the command again once the other holder is done"
    )]
    LockLost { path: PathBuf, why: String },

    /// The lock is still held but was asked away (its Lease deleted by
    /// hand): no further step starts, the running ones finish and are
    /// recorded, then it is released.
    #[error(
        "{why}. No further step starts; the steps already running finish and are recorded, \
         then the lock of the state {path} is released. Run the command again to do the rest"
    )]
    LockRevoked { path: PathBuf, why: String },

    /// A state kept in a cluster could not be read, written, locked or
    /// unlocked: the connection or the API server failed, a permission or
    /// the namespace is missing. `location` names the object
    /// (`Secret ns/name in context c`; the Lease, for the lock), `detail`
    /// what failed.
    #[error("{}", remote_message(.what, .location, .detail))]
    Remote {
        what: RemoteOp,
        location: String,
        detail: String,
    },

    /// A state kept in a cluster that is not a state mesh can read: never
    /// overwritten. (A state file's is [`StateError::Corrupt`].)
    #[error(
        "the state {location} is corrupt: {detail}. Restore it from your own copy, or pass \
         --state to use a local state file: mesh will not overwrite a state it cannot read"
    )]
    RemoteCorrupt { location: String, detail: String },

    /// A state kept in a cluster, written by a newer mesh. (A state file's
    /// is [`StateError::NewerFormat`].)
    #[error(
        "the state {location} has format version {found}: it was written by a newer mesh \
         (this one reads format {supported} and older). Upgrade mesh; \
         mesh will not overwrite a state it cannot read"
    )]
    RemoteNewerFormat {
        location: String,
        found: u64,
        supported: u32,
    },

    /// A state kept in a cluster changed since it was read (another
    /// lineage, a larger serial, another resourceVersion): writing would
    /// lose it. (A state file's is [`StateError::Changed`].)
    #[error(
        "the state {location} changed since it was read ({detail}); mesh will not overwrite it. \
         Run the command again to start from the state as it is now"
    )]
    RemoteChanged { location: String, detail: String },
}

/// What failed with a state kept in a cluster ([`StateError::Remote`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteOp {
    /// Reading the state.
    Read,
    /// Writing it (the state, or its backup): the previous one is unchanged.
    Write,
    /// Taking, checking or renewing the lock.
    Lock,
    /// Releasing the lock, or `force-unlock`.
    Unlock,
}

fn remote_message(what: &RemoteOp, location: &str, detail: &str) -> String {
    match what {
        RemoteOp::Read => format!("cannot read the state from {location}: {detail}"),
        RemoteOp::Write => format!(
            "cannot write the state to {location}: {detail}. The previous state is unchanged"
        ),
        RemoteOp::Lock => format!("cannot lock the state with {location}: {detail}"),
        RemoteOp::Unlock => format!("cannot unlock the state with {location}: {detail}"),
    }
}

fn backup_hint(backup: Option<&std::path::Path>) -> String {
    match backup {
        Some(b) => format!(
            "The previous version is at {}; inspect it and restore it by hand: ",
            b.display()
        ),
        None => "Restore it from your own copy, or pass --state to use another state file: ".into(),
    }
}

fn locked_message(path: &std::path::Path, info: Option<&LockInfo>) -> String {
    match info {
        // The record's fields are escaped by `describe`: a lock file or a
        // Lease can hold anything.
        Some(i) => format!(
            "the state {} is locked by {}. \
             Wait for it to finish, pass --lock-timeout 60s to wait for it, \
             or if the holder is gone and the lock is stuck, `mesh force-unlock {}`",
            path.display(),
            i.describe(),
            shown(&i.id)
        ),
        None => format!(
            "the state {} is locked by another mesh command (its lock record is not readable yet). \
             Wait for it to finish, or pass --lock-timeout 60s to wait for it",
            path.display()
        ),
    }
}
