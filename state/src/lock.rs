//! The state lock: an exclusive OS lock (flock) on `<state>.lock`, as
//! Terraform's local backend does. The kernel releases it when its holder
//! exits, however it exits, so a crash never leaves the state locked. The
//! file also records who holds it, so a refused command can say who.

use crate::StateError;
use crate::model::random_id;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Who holds the lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    /// `user@host`.
    pub who: String,
    pub pid: u32,
    /// `plan`, `apply`, `destroy`.
    pub operation: String,
    /// RFC 3339.
    pub created: String,
    /// The state file it locks.
    pub path: String,
}

/// `<state>.lock`.
pub fn lock_path(state: &Path) -> PathBuf {
    let mut s = state.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A held lock; dropping it clears the record and releases the lock.
#[derive(Debug)]
pub(crate) struct Held {
    file: File,
    pub(crate) info: LockInfo,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Clear the record first, so nobody reads a stale holder.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn open(path: &Path) -> Result<File, StateError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        return Err(StateError::Lock {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("the folder {} does not exist", dir.display()),
            ),
        });
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| StateError::Lock {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the holder's record, if any.
pub(crate) fn read_info(path: &Path) -> Option<LockInfo> {
    let mut s = String::new();
    File::open(path).ok()?.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// Takes the lock for `state`, waiting up to `timeout` (zero: try once).
pub(crate) fn acquire(state: &Path, operation: &str, timeout: Duration) -> Result<Held, StateError> {
    let path = lock_path(state);
    let mut file = open(&path)?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return Err(StateError::Locked {
                        path: state.to_path_buf(),
                        info: read_info(&path),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(TryLockError::Error(source)) => return Err(StateError::Lock { path, source }),
        }
    }
    let info = LockInfo {
        id: random_id(),
        who: who(),
        pid: std::process::id(),
        operation: operation.to_string(),
        created: crate::now_rfc3339(),
        path: state.display().to_string(),
    };
    let record = serde_json::to_string_pretty(&info).expect("lock info serialises") + "\n";
    let written = file
        .set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(record.as_bytes()))
        .and_then(|_| file.sync_all());
    if let Err(source) = written {
        let _ = file.unlock();
        return Err(StateError::Lock { path, source });
    }
    Ok(Held { file, info })
}

/// Clears a lock record whose holder cannot clear it. With an OS lock a
/// dead holder never keeps the lock, so this refuses while a live process
/// holds it (stop that process instead) and otherwise removes a stale
/// record. The ID must match the recorded one.
pub fn force_unlock(state: &Path, id: &str) -> Result<(), StateError> {
    let path = lock_path(state);
    let Some(info) = read_info(&path) else {
        return Err(StateError::Unlock(format!(
            "there is no lock on {}: nothing to unlock",
            state.display()
        )));
    };
    if info.id != id {
        return Err(StateError::Unlock(format!(
            "the lock on {} has ID {}, not {id}: check the ID and try again",
            state.display(),
            info.id
        )));
    }
    let file = open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = file.unlock();
            Ok(())
        }
        Err(TryLockError::WouldBlock) => Err(StateError::Unlock(format!(
            "lock {id} is held by a running process: {} (pid {}) running `{}` since {}. \
             It will be released when that process ends; stop it if it is stuck",
            info.who, info.pid, info.operation, info.created
        ))),
        Err(TryLockError::Error(source)) => Err(StateError::Lock { path, source }),
    }
}
