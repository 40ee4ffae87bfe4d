//! The files beside a state: `<state>.backup`, `<state>.lock`, temporary
//! files.
//!
//! The local backend (which writes the backup and the temporary files) and
//! the lock (which writes `<state>.lock`) must agree on where these go, so
//! both take them from here rather than one from the other.

use std::path::{Path, PathBuf};

/// `path` with `suffix` appended to its file name: `<state>.backup`.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The file a write replaces: a symlinked state is replaced at its
/// destination (which need not exist yet), so the link survives.
pub(crate) fn real_target(path: &Path) -> PathBuf {
    let mut target = path.to_path_buf();
    // A bounded number of hops: a symlink loop then fails on open, clearly.
    for _ in 0..16 {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&target) {
                // Relative links are relative to the link's folder.
                Ok(dest) => target = target.parent().map_or(dest.clone(), |dir| dir.join(&dest)),
                Err(_) => break,
            },
            _ => break,
        }
    }
    target
}
