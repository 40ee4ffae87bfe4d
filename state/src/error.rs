//! Everything that can go wrong with a state file, each saying what to do.

use crate::lock::LockInfo;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file {path}: {source}. Check its permissions, or pass --state to use another file")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the state file {path} is not valid ({detail}). mesh will not overwrite a file it cannot read; \
         the previous version is at {path}.backup: inspect it and restore it by hand"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the state file {path} has format version {found}, written by a newer mesh (this one reads up to {supported}): upgrade mesh"
    )]
    NewerFormat {
        path: PathBuf,
        found: u64,
        supported: u32,
    },
    #[error(
        "this state belongs to mesh `{found}`, but the mesh file says `{expected}`: pass --state to use the state of mesh `{expected}`"
    )]
    OtherMesh { found: String, expected: String },
    #[error("cannot write the state file {path}: {source}. The previous state is unchanged")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", locked_message(.path, .info.as_ref()))]
    Locked { path: PathBuf, info: Option<LockInfo> },
    #[error("cannot lock the state: {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Unlock(String),
}

fn locked_message(path: &std::path::Path, info: Option<&LockInfo>) -> String {
    match info {
        Some(i) => format!(
            "the state is locked by another mesh command: {} (pid {}) is running `{}` since {} (lock ID {}, {}). \
             Wait for it to finish, or pass --lock-timeout 5m to wait for it; \
             if its process is gone and the lock is stuck, `mesh force-unlock {}`",
            i.who,
            i.pid,
            i.operation,
            i.created,
            i.id,
            path.display(),
            i.id
        ),
        None => format!(
            "the state is locked by another mesh command ({}). Wait for it to finish, or pass --lock-timeout 5m to wait for it",
            path.display()
        ),
    }
}
