//! The local file backend: one JSON file, replaced whole and atomically.
//!
//! A write goes to a temporary file in the same folder (mode 0600), is
//! fsynced, the current file is kept as `<state>.backup`, and the temporary
//! file is renamed over the state, then the folder is fsynced. A crash at
//! any point leaves either the old or the new state, never a mix.

use crate::lock::{self, Held, LockInfo};
use crate::model::{FORMAT_VERSION, State, random_id};
use crate::StateError;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A state file on the local disk.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    path: PathBuf,
}

impl LocalBackend {
    pub fn new(path: PathBuf) -> LocalBackend {
        LocalBackend { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the lock for `operation`, waiting up to `timeout`.
    pub fn lock(&self, operation: &str, timeout: Duration) -> Result<StateLock, StateError> {
        let held = lock::acquire(&self.path, operation, timeout)?;
        Ok(StateLock {
            path: self.path.clone(),
            held,
        })
    }
}

/// The state, locked: reads and writes go through here.
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    held: Held,
}

impl StateLock {
    pub fn info(&self) -> &LockInfo {
        &self.held.info
    }

    /// The state, or None when there is no file yet.
    pub fn read(&self) -> Result<Option<State>, StateError> {
        read_unlocked(&self.path)
    }

    /// Writes `state` (its serial incremented first) atomically, keeping the
    /// previous file as `<state>.backup`. On error nothing has changed.
    pub fn write(&mut self, state: &mut State) -> Result<(), StateError> {
        state.serial += 1;
        let result = write_atomic(&self.path, state);
        if result.is_err() {
            state.serial -= 1;
        }
        result
    }
}

/// Reads a state file without the lock (for read-only commands).
pub fn read_unlocked(path: &Path) -> Result<Option<State>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse(path, &bytes).map(Some)
}

/// Checks the format version before the shape, so a newer file is reported
/// as newer rather than as corrupt.
fn parse(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("not JSON: {e}"),
    })?;
    let version = value.get("format_version").and_then(serde_json::Value::as_u64);
    match version {
        None => {
            return Err(StateError::Corrupt {
                path: path.to_path_buf(),
                detail: "no format_version: is this a mesh state file?".into(),
            });
        }
        Some(v) if v > u64::from(FORMAT_VERSION) => {
            return Err(StateError::NewerFormat {
                path: path.to_path_buf(),
                found: v,
                supported: FORMAT_VERSION,
            });
        }
        Some(_) => {}
    }
    serde_json::from_value(value).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Creates `path` new with mode 0600, writes `bytes`, fsyncs.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn write_atomic(path: &Path, state: &State) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let json = serde_json::to_string_pretty(state).expect("state serialises") + "\n";
    let tag = &random_id()[..8];
    let tmp = sibling(path, &format!(".tmp-{tag}"));
    if let Err(e) = write_new(&tmp, json.as_bytes()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    // The current file becomes the backup, itself replaced atomically.
    match std::fs::read(path) {
        Ok(previous) => {
            let backup_tmp = sibling(path, &format!(".backup.tmp-{tag}"));
            let kept = write_new(&backup_tmp, &previous)
                .and_then(|_| std::fs::rename(&backup_tmp, sibling(path, ".backup")));
            if let Err(e) = kept {
                let _ = std::fs::remove_file(&backup_tmp);
                let _ = std::fs::remove_file(&tmp);
                return Err(err(e));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    // The rename is durable only once the folder is synced.
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
