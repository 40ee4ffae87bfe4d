//! The state lock: an exclusive OS file lock on `<state>.lock`.
//!
//! Why an OS lock (flock on Unix, LockFileEx on Windows, through std's
//! `File::try_lock`) rather than "create a lock file if absent": the kernel
//! releases it when its holder exits, however it exits, so a crashed or
//! killed mesh never leaves the state locked. Terraform's local backend does
//! the same.
//!
//! The lock file also holds a JSON [`LockInfo`] (who, pid, operation, since
//! when, a lock ID) so a refused command can name the holder. The file is
//! never deleted, only emptied on release: deleting a lock file races with a
//! process that has just opened it and would lock a file nobody else sees.
//!
//! flock belongs to an open file description, so two `LocalBackend`s in one
//! process exclude each other just as two processes do.

use crate::error::StateError;
use crate::paths::{real_target, sibling};
// Re-exported: the record belongs to the lock (`state::lock::LockInfo`),
// it is defined apart only so that the errors can name it.
pub use crate::lock_info::LockInfo;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting command retries the lock.
const POLL: Duration = Duration::from_millis(50);

/// `<state>.lock`, beside the file the state path resolves to: two names
/// of one state (a symlink and its target) share one lock.
pub fn lock_path(state: &Path) -> PathBuf {
    sibling(&real_target(state), ".lock")
}

/// A held lock. Dropping it empties the record and releases the lock (and
/// if the process dies instead, the kernel releases it; the record then
/// stays behind, stale and harmless).
#[derive(Debug)]
pub(crate) struct Held {
    file: File,
    pub(crate) info: LockInfo,
    /// The lock file's path: it must still name the file locked.
    pub(crate) path: std::path::PathBuf,
}

impl Held {
    /// Fences a write: the lock file at the lock's path must still be the
    /// file this process locked. Deleted or replaced (by hand), another
    /// process could lock the new one and run beside this one.
    pub(crate) fn check(&self) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let ours = self.file.metadata().map_err(|e| e.to_string())?;
        match std::fs::symlink_metadata(&self.path) {
            Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => Ok(()),
            Ok(_) => Err(format!(
                "the lock file {} was replaced while this mesh held it",
                self.path.display()
            )),
            Err(_) => Err(format!(
                "the lock file {} was deleted while this mesh held it",
                self.path.display()
            )),
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Empty the record while still holding the lock, so nobody reads a
        // holder that has gone.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Opens (or creates) the lock file without following a symlink at its
/// name, and refuses anything but a regular file: a link planted there must
/// never make mesh truncate or create the link's target.
fn open(path: &Path) -> Result<File, StateError> {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && !meta.file_type().is_file()
    {
        return Err(not_a_file(path, &meta));
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path).map_err(|source| {
        #[cfg(unix)]
        if source.raw_os_error() == Some(libc::ELOOP) {
            return StateError::LockNotAFile {
                path: path.to_path_buf(),
                what: "a symbolic link".into(),
            };
        }
        // "No such file or directory" alone would not say which folder.
        let source = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if source.kind() == std::io::ErrorKind::NotFound && !dir.exists() => {
                std::io::Error::new(
                    source.kind(),
                    format!("the folder {} does not exist", dir.display()),
                )
            }
            _ => source,
        };
        StateError::Lock {
            path: path.to_path_buf(),
            source,
        }
    })?;
    // Between the check above and the open a special file (a FIFO, a
    // device) could have appeared; the open file itself says what it is.
    match file.metadata() {
        Ok(meta) if !meta.file_type().is_file() => Err(not_a_file(path, &meta)),
        _ => Ok(file),
    }
}

fn not_a_file(path: &Path, meta: &std::fs::Metadata) -> StateError {
    let t = meta.file_type();
    let what = if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a folder"
    } else {
        "a special file"
    };
    StateError::LockNotAFile {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Reads the holder's record from an open lock file (None: empty or not
/// readable).
fn read_record(file: &mut File) -> Option<LockInfo> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

/// The holder's record, retried briefly: a holder that has just taken the
/// lock may not have written it yet.
fn holder(file: &mut File) -> Option<LockInfo> {
    for _ in 0..4 {
        if let Some(info) = read_record(file) {
            return Some(info);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

/// Takes the lock for `state`, retrying every 50 ms up to `timeout` (zero:
/// one try), then records who holds it.
pub(crate) fn acquire(
    state: &Path,
    operation: &str,
    timeout: Duration,
) -> Result<Held, StateError> {
    let path = lock_path(state);
    let mut file = open(&path)?;
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(StateError::Locked {
                        path: state.to_path_buf(),
                        info: holder(&mut file).map(Box::new),
                    });
                }
                std::thread::sleep(POLL.min(deadline - now));
            }
            Err(TryLockError::Error(source)) => return Err(StateError::Lock { path, source }),
        }
    }
    let info = LockInfo::new(operation, &state.display().to_string());
    let written = serde_json::to_string_pretty(&info)
        .map_err(std::io::Error::other)
        .and_then(|json| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(format!("{json}\n").as_bytes())?;
            file.sync_all()
        });
    if let Err(source) = written {
        let _ = file.set_len(0);
        let _ = file.unlock();
        return Err(StateError::Lock { path, source });
    }
    Ok(Held { file, info, path })
}

/// Clears the lock record with ID `id` whose holder cannot clear it.
///
/// With an OS lock a dead holder never keeps the lock: the kernel released
/// it when the process ended, and only its record stays behind. So this
///
/// - refuses with [`StateError::LockHeld`] (naming the pid) while a live
///   process holds the lock: that process must finish or be stopped;
///   clearing its record would not free the lock anyway;
/// - refuses with [`StateError::LockIdMismatch`] (naming the recorded ID)
///   when `id` is not the recorded one, so a typo never clears another lock;
/// - refuses with [`StateError::NotLocked`] when there is no record;
/// - otherwise empties the stale record.
///
/// Remote backends, whose locks are records only, will need this for real;
/// locally it is mostly a tidy-up with a clear answer.
pub fn force_unlock(state: &Path, id: &str) -> Result<(), StateError> {
    let path = lock_path(state);
    if !path.exists() {
        return Err(StateError::NotLocked {
            path: state.to_path_buf(),
        });
    }
    let mut file = open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            // Holding the lock ourselves, the record cannot change under us.
            let result = match read_record(&mut file) {
                None => Err(StateError::NotLocked {
                    path: state.to_path_buf(),
                }),
                Some(info) if info.id != id => Err(StateError::LockIdMismatch {
                    path: state.to_path_buf(),
                    given: id.to_string(),
                    actual: info.id,
                }),
                Some(_) => file
                    .set_len(0)
                    .and_then(|_| file.sync_all())
                    .map_err(|source| StateError::Lock {
                        path: path.clone(),
                        source,
                    }),
            };
            let _ = file.unlock();
            result
        }
        Err(TryLockError::WouldBlock) => match holder(&mut file) {
            Some(info) if info.id != id => Err(StateError::LockIdMismatch {
                path: state.to_path_buf(),
                given: id.to_string(),
                actual: info.id,
            }),
            Some(info) => Err(StateError::LockHeld {
                path: state.to_path_buf(),
                info: Box::new(info),
            }),
            None => Err(StateError::Locked {
                path: state.to_path_buf(),
                info: None,
            }),
        },
        Err(TryLockError::Error(source)) => Err(StateError::Lock { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_is_private_and_emptied_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.json");
        let held = acquire(&state, "plan", Duration::ZERO).unwrap();
        let text = std::fs::read_to_string(lock_path(&state)).unwrap();
        let info: LockInfo = serde_json::from_str(&text).unwrap();
        assert_eq!(info, held.info);
        assert_eq!(info.id.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(lock_path(&state))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        drop(held);
        assert_eq!(std::fs::read_to_string(lock_path(&state)).unwrap(), "");
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("nowhere").join("s.json");
        let e = acquire(&state, "plan", Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere") && e.contains("does not exist"), "{e}");
    }

    #[test]
    fn force_unlock_without_a_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = force_unlock(&dir.path().join("s.json"), "x").unwrap_err();
        assert!(matches!(e, StateError::NotLocked { .. }), "{e}");
    }
}
