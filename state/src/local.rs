//! The local file backend: one JSON file, replaced whole and atomically.
//!
//! A write never edits the state file in place. It
//!
//! 1. refuses if the file on disk is not one it may replace (corrupt, a
//!    newer format, another lineage, or a larger serial than the state
//!    being written was read with);
//! 2. writes the new JSON to `<state>.tmp-<random>` in the same folder
//!    (mode 0600) and fsyncs it;
//! 3. copies the current file to `<state>.backup`, itself through a
//!    temporary file and a rename, so the backup is never half written;
//! 4. renames the temporary file over the state (atomic within a folder);
//! 5. fsyncs the folder, which makes the rename durable.
//!
//! A crash at any point leaves the old state or the new one, never a mix;
//! at worst a temporary file stays behind, which reads ignore and the next
//! write removes. On an error the temporary files are removed and the
//! caller's serial is put back.
//!
//! [`LocalBackend`] and [`StateLock`] implement the [`Backend`] and
//! [`LockedState`] traits here, beside the types, so the traits' module
//! needs nothing of this one.

use crate::backend::{Backend, LockedState, push_serial};
use crate::error::StateError;
use crate::lock::{self, Held};
use crate::lock_info::{LockInfo, random_id};
use crate::model::{FORMAT_VERSION, State};
use crate::paths::{real_target, sibling};
use std::ffi::OsString;
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

    /// Takes the lock on `<state>.lock` for `operation` (`plan`, `apply`,
    /// `destroy`), retrying until `timeout` (zero: fail at once). A refusal
    /// is [`StateError::Locked`] with the holder's details.
    pub fn lock(&self, operation: &str, timeout: Duration) -> Result<StateLock, StateError> {
        // A path that holds something other than a mesh state (a typo'd
        // `--state /etc/passwd`) gets no `.lock` created beside it.
        read_unlocked(&self.path)?;
        let held = lock::acquire(&self.path, operation, timeout)?;
        Ok(StateLock {
            path: self.path.clone(),
            held,
            written: None,
        })
    }
}

/// The state, locked: reads and writes go through here. Dropping it
/// releases the lock.
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    held: Held,
    /// The file this lock last wrote, as the file system describes it: a
    /// state file still so was not changed since, so the next write need
    /// not read and parse it again (a fleet's state is megabytes, written
    /// several times a second during an apply).
    written: Option<Written>,
}

/// A state file this lock wrote: what the file system says of it, and the
/// lineage and serial in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    file: FileId,
    lineage: String,
    serial: u64,
}

impl StateLock {
    /// This lock's record (its ID, operation, pid…).
    pub fn info(&self) -> &LockInfo {
        &self.held.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state, or None when there is no file yet.
    pub fn read(&self) -> Result<Option<State>, StateError> {
        read_unlocked(&self.path)
    }

    /// Writes `state` atomically with its serial incremented (and its
    /// format version set to this mesh's), keeping the previous file as
    /// `<state>.backup`. On error nothing on disk has changed and `state`
    /// is as it was.
    pub fn write(&mut self, state: &mut State) -> Result<(), StateError> {
        // Fenced: only while this process still holds the lock.
        self.held.check().map_err(|why| StateError::LockLost {
            path: self.path.clone(),
            why,
        })?;
        let before = (state.serial, state.format_version);
        state.serial = state.next_serial().ok_or_else(|| StateError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(format!(
                "its serial {} is the largest a state may have (it was edited by hand?): {}",
                state.serial,
                crate::model::SERIAL_RECOVERY
            )),
        })?;
        state.format_version = FORMAT_VERSION;
        let result = write_atomic_as(&self.path, state, before.0, false, &mut self.written);
        if result.is_err() {
            (state.serial, state.format_version) = before;
        }
        result
    }
}

impl StateLock {
    /// `mesh state push`: replaces the state with `incoming` (a state read
    /// from a file), refusing one of another lineage or with a lower serial
    /// than the current state's unless `force`. The pushed state is written
    /// with a serial above both, so every saved plan made before is stale.
    pub fn push(&mut self, incoming: State, force: bool) -> Result<State, StateError> {
        let current = self.read()?;
        let read_serial = current.as_ref().map_or(0, |c| c.serial);
        let serial = push_serial(&self.path, current.as_ref(), &incoming, force)?;
        let mut next = incoming;
        next.serial = serial;
        next.format_version = FORMAT_VERSION;
        write_atomic_as(&self.path, &next, read_serial, force, &mut self.written)?;
        Ok(next)
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn lock(&self, operation: &str, timeout: Duration) -> Result<Box<dyn LockedState>, StateError> {
        LocalBackend::lock(self, operation, timeout).map(|l| Box::new(l) as Box<dyn LockedState>)
    }

    fn read_unlocked(&self) -> Result<Option<State>, StateError> {
        read_unlocked(self.path())
    }

    fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        lock::force_unlock(self.path(), id)
    }

    fn backup_location(&self) -> Option<String> {
        Some(sibling(self.path(), ".backup").display().to_string())
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

    fn push(&mut self, incoming: State, force: bool) -> Result<State, StateError> {
        StateLock::push(self, incoming, force)
    }
    fn may_start(&self) -> Result<(), StateError> {
        self.held.check().map_err(|why| StateError::LockLost {
            path: self.path.clone(),
            why,
        })
    }
}

/// The largest state file mesh reads: 256 MiB. A fleet of thousands of
/// clusters has a state of tens of MiB; a larger file is not a state (a
/// mistyped `--state`), and reading it whole could exhaust memory.
pub const STATE_FILE_LIMIT: u64 = 256 << 20;

/// Reads a file the user named (the state, the mesh file, a PEM file):
/// only a regular file, and at most `limit` bytes. `what` names the kind
/// of file in the message ("state file"). The errors say what the file is
/// instead; callers name the path and what to do.
///
/// A FIFO would block the open and then every read, and a device such as
/// /dev/zero never ends. The path is looked at first, so that no device is
/// even opened; the opened file is then checked again (fstat), since the
/// path may have been replaced in between, and opened with O_NONBLOCK so
/// that a FIFO put there meanwhile cannot block the open. A file that grows
/// past `limit` while it is read is refused as well.
pub fn read_regular_file(path: &Path, limit: u64, what: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    check_regular(&std::fs::metadata(path)?, limit, what)?;
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NONBLOCK | libc::O_NOCTTY,
    );
    let file = options.open(path)?;
    let meta = file.metadata()?;
    check_regular(&meta, limit, what)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit, what));
    }
    Ok(bytes)
}

fn check_regular(meta: &std::fs::Metadata, limit: u64, what: &str) -> std::io::Result<()> {
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "it is {}, not a regular file (mesh reads a {what} only from a regular file)",
                file_type(meta)
            ),
        ));
    }
    if meta.len() > limit {
        return Err(too_large(meta.len(), limit, what));
    }
    Ok(())
}

fn too_large(size: u64, limit: u64, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::FileTooLarge,
        format!(
            "it is {}, more than the {} mesh reads from a {what}",
            size_text(size),
            size_text(limit)
        ),
    )
}

/// What a file that is not a regular file is, for messages.
fn file_type(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "a special file"
}

/// `1 MiB`, `2.5 MiB`, `300 bytes`.
fn size_text(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if n >= unit {
            return if n.is_multiple_of(unit) {
                format!("{} {name}", n / unit)
            } else {
                format!("{:.1} {name}", n as f64 / unit as f64)
            };
        }
    }
    format!("{n} bytes")
}

/// Reads a state file without the lock, for read-only commands (`mesh
/// state list`, `mesh show`). None when there is no file.
pub fn read_unlocked(path: &Path) -> Result<Option<State>, StateError> {
    let bytes = match read_regular_file(path, STATE_FILE_LIMIT, "state file") {
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

/// Parses a state read from anywhere (`location` names it in errors): a
/// remote backend's bytes get the same checks as a file's.
pub fn parse_state(location: &Path, bytes: &[u8]) -> Result<State, StateError> {
    parse(location, bytes)
}

/// Parses a state file. The format version is looked at before the shape,
/// so a newer file is reported as newer rather than as corrupt.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
    let backup = sibling(path, ".backup");
    let corrupt = |detail: String| StateError::Corrupt {
        path: path.to_path_buf(),
        backup: backup.is_file().then(|| backup.clone()),
        detail,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    match value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
    {
        None => {
            return Err(corrupt(
                "no numeric `format_version` field: is this a mesh state file?".into(),
            ));
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
    // From the bytes again (not the Value) so the error has line and column.
    serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
}

/// A complete new file beside its target, fsynced, not yet renamed into
/// place. Deliberately not removed on drop: if the process dies here, this
/// is exactly what is left, and the target is untouched.
struct Staged {
    tmp: PathBuf,
}

impl Staged {
    /// Writes `bytes` to `<target><infix>.tmp-<random>`, new, mode 0600.
    fn new(target: &Path, infix: &str, bytes: &[u8]) -> std::io::Result<Staged> {
        let tmp = sibling(target, &format!("{infix}.tmp-{}", &random_id()[..12]));
        let mut options = OpenOptions::new();
        // create_new is O_EXCL: a link planted at this name is never followed.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&tmp).and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
        match written {
            Ok(()) => Ok(Staged { tmp }),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Renames it over `target` (atomic: readers see old or new).
    fn commit(self, target: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.tmp, target).inspect_err(|_| {
            let _ = std::fs::remove_file(&self.tmp);
        })
    }

    fn discard(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Makes the state file about to be replaced the `.backup`: a second link
/// to it (no copy of a large state; it was synced when it was written), or
/// a copy where the file system has no hard links.
fn keep_as_backup(target: &Path) -> std::io::Result<()> {
    let backup = sibling(target, ".backup");
    let tmp = sibling(target, &format!(".backup.tmp-{}", &random_id()[..12]));
    match std::fs::hard_link(target, &tmp) {
        // Private, as every file mesh writes, whatever the state's mode was
        // (this is the replaced file itself, so it changes that one too).
        Ok(()) => {
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .and_then(|()| std::fs::rename(&tmp, &backup))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })
        }
        Err(_) => {
            let previous = std::fs::read(target)?;
            Staged::new(target, ".backup", &previous)?.commit(&backup)
        }
    }
}

/// Removes temporary files earlier writes left behind (a crash between
/// writing and renaming). Only called under the lock, so none of them
/// belongs to a write in progress.
pub(crate) fn remove_leftovers(target: &Path) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefixes: [OsString; 2] = [".tmp-", ".backup.tmp-"].map(|s| {
        let mut p = name.to_owned();
        p.push(s);
        p
    });
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let bytes = file_name.as_encoded_bytes();
        if prefixes
            .iter()
            .any(|p| bytes.starts_with(p.as_encoded_bytes()))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Refuses to replace a file this state was not read from: the guarantee
/// that a corrupt, newer or foreign state is never overwritten holds even
/// for a caller that skipped `read`.
/// `replace_lineage`: a forced push may replace a state of another lineage
/// (a corrupt or newer file is still refused).
fn check_replaceable(
    path: &Path,
    current: &[u8],
    state: &State,
    read_serial: u64,
    replace_lineage: bool,
) -> Result<(), StateError> {
    let on_disk = parse(path, current)?;
    check_replaceable_by(
        path,
        (&on_disk.lineage, on_disk.serial),
        state,
        read_serial,
        replace_lineage,
    )
}

/// [`check_replaceable`] for a file known to hold `(lineage, serial)`.
fn check_replaceable_by(
    path: &Path,
    (lineage, serial): (&str, u64),
    state: &State,
    read_serial: u64,
    replace_lineage: bool,
) -> Result<(), StateError> {
    let changed = |detail: String| StateError::Changed {
        path: path.to_path_buf(),
        detail,
    };
    if lineage != state.lineage && !replace_lineage {
        return Err(changed(format!(
            "it is another state: lineage {lineage} on disk, {} in memory",
            state.lineage
        )));
    }
    if serial > read_serial {
        return Err(changed(format!(
            "serial {serial} on disk is newer than serial {read_serial} it was read at"
        )));
    }
    Ok(())
}

/// A file's identity and version as `stat` reports them: device, inode,
/// size and modification time. A write renames a new file into place, so a
/// file written by anyone else differs in one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64, u64, i64, i64);

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        use std::os::unix::fs::MetadataExt;
        FileId(m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
    }
}

/// Writes `state` over the state file, keeping the file it replaces as the
/// `.backup`. Refuses to replace a file that changed since it was read at
/// `read_serial` (unless it is the file this lock wrote last, `written`);
/// `replace_lineage` lets a forced push replace a state of another lineage
/// (a corrupt or newer file is still never replaced).
fn write_atomic_as(
    path: &Path,
    state: &State,
    read_serial: u64,
    replace_lineage: bool,
    written: &mut Option<Written>,
) -> Result<(), StateError> {
    let write_err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let read_err = |source| StateError::Read {
        path: path.to_path_buf(),
        source,
    };
    let target = real_target(path);
    let exists = match std::fs::metadata(&target) {
        Ok(m) => {
            match written.as_ref().filter(|w| w.file == FileId::of(&m)) {
                Some(w) => check_replaceable_by(
                    path,
                    (&w.lineage, w.serial),
                    state,
                    read_serial,
                    replace_lineage,
                )?,
                None => {
                    let current = read_regular_file(&target, STATE_FILE_LIMIT, "state file")
                        .map_err(read_err)?;
                    check_replaceable(path, &current, state, read_serial, replace_lineage)?;
                }
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(read_err(e)),
    };
    *written = None;
    remove_leftovers(&target);

    let json = serde_json::to_string_pretty(state)
        .map_err(|e| write_err(std::io::Error::other(e)))?
        + "\n";
    let staged = Staged::new(&target, "", json.as_bytes()).map_err(write_err)?;
    if exists && let Err(e) = keep_as_backup(&target) {
        staged.discard();
        return Err(write_err(e));
    }
    staged.commit(&target).map_err(write_err)?;
    *written = std::fs::metadata(&target).ok().map(|m| Written {
        file: FileId::of(&m),
        lineage: state.lineage.clone(),
        serial: state.serial,
    });
    // The renames are durable only once the folder's entry is synced. Some
    // filesystems cannot fsync a folder; the write itself has succeeded.
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crash after the new file is written and fsynced but before the
    /// rename: the state reads as before, and the next write tidies up.
    #[test]
    fn a_crash_between_write_and_rename_leaves_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.state.json");
        let mut lock = LocalBackend::new(path.clone())
            .lock("apply", Duration::ZERO)
            .unwrap();
        let mut st = State::new("mesh1");
        lock.write(&mut st).unwrap();
        let old = std::fs::read(&path).unwrap();

        // What write_atomic does up to the rename, then the "crash".
        let mut next = st.clone();
        next.serial += 1;
        next.mesh_id = "changed".into();
        let staged =
            Staged::new(&path, "", serde_json::to_string(&next).unwrap().as_bytes()).unwrap();
        let tmp = staged.tmp.clone();
        drop(staged);
        assert!(tmp.exists(), "a crash leaves the temporary file");
        assert_eq!(std::fs::read(&path).unwrap(), old);
        assert_eq!(read_unlocked(&path).unwrap().unwrap(), st);

        lock.write(&mut st).unwrap();
        assert!(!tmp.exists(), "the next write removes it");
        assert_eq!(read_unlocked(&path).unwrap().unwrap().serial, 2);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(1 << 20), "1 MiB");
        assert_eq!(size_text(STATE_FILE_LIMIT), "256 MiB");
        assert_eq!(size_text(5 << 19), "2.5 MiB");
        assert_eq!(size_text(300), "300 bytes");
        assert_eq!(size_text(6_300_000_000), "5.9 GiB");
    }

    #[test]
    fn corrupt_errors_carry_line_and_column() {
        let path = Path::new("/x/mesh.state.json");
        let e = parse(path, b"{\n  \"format_version\": 1,\n  \"lineage\": 5\n}").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 3 column"), "{msg}");
        // No backup exists there, so none is named.
        assert!(!msg.contains(".backup"), "{msg}");
        let e = parse(path, b"{\n  oops").unwrap_err().to_string();
        assert!(e.contains("line 2 column"), "{e}");
    }

    #[test]
    fn leftovers_of_other_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.json");
        for name in [
            "a.json.tmp-1",
            "a.json.backup.tmp-2",
            "b.json.tmp-3",
            "a.json.backup",
            "a.jsonx.tmp-4",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        remove_leftovers(&target);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.json.backup", "a.jsonx.tmp-4", "b.json.tmp-3"]);
    }

    // Hardening II, 6: only a regular file is read as a state, and only up
    // to STATE_FILE_LIMIT: a FIFO would block forever, /dev/zero never ends.

    /// `f` on its own thread, which must finish within ten seconds.
    fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the read did not finish: it blocked or never ended")
    }

    #[test]
    fn a_fifo_state_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("mesh.state.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let f = fifo.clone();
        let e = within(move || read_unlocked(&f)).unwrap_err().to_string();
        assert!(
            e.contains("FIFO") && e.contains("not a regular file"),
            "{e}"
        );
        // Nor is a lock taken beside it.
        let f = fifo.clone();
        let e = within(move || LocalBackend::new(f).lock("plan", Duration::ZERO).map(drop))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(!crate::lock::lock_path(&fifo).exists());
    }

    #[test]
    fn dev_zero_as_the_state_is_refused_unread() {
        let e = within(|| read_unlocked(Path::new("/dev/zero")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/zero") && e.contains("character device"),
            "{e}"
        );
    }

    #[test]
    fn a_state_past_the_limit_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.state.json");
        // Sparse: no disk is used, and nothing is read.
        File::create(&path)
            .unwrap()
            .set_len(STATE_FILE_LIMIT + 1)
            .unwrap();
        let e = read_unlocked(&path).unwrap_err().to_string();
        assert!(
            e.contains("256 MiB") && e.contains("mesh.state.json"),
            "{e}"
        );
    }
}
