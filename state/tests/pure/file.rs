//! The state file's guarantees: format, atomic replace, backup, mode 0600,
//! and refusals of files mesh cannot or must not overwrite.

use state::{Backend, LocalBackend, State, StateError, Status, StepRecord, read_unlocked};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn record(input: &str) -> StepRecord {
    StepRecord {
        kind: "install-control-plane".into(),
        cluster: "cluster1".into(),
        context: "kind-cluster1".into(),
        depends_on: vec![],
        input_fingerprint: "ab".repeat(32),
        input: input.into(),
        outputs: BTreeMap::from([("address".to_string(), serde_json::json!("172.18.0.200"))]),
        status: Status::Applied,
        updated_at: state::now_rfc3339(),
    }
}

fn state_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("mesh.state.json")
}

fn backup_of(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}.backup", p.display()))
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A state written at serial 1 with one step, and its lock.
fn written_once(path: &Path) -> (state::StateLock, State) {
    let mut lock = LocalBackend::new(path.to_path_buf())
        .lock("apply", Duration::ZERO)
        .unwrap();
    let mut st = State::new("mesh1");
    st.record("cluster1/install-control-plane", record("v1"));
    lock.write(&mut st).unwrap();
    (lock, st)
}

#[test]
fn round_trip_serial_backup_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut lock = LocalBackend::new(path.clone())
        .lock("apply", Duration::ZERO)
        .unwrap();
    assert_eq!(lock.read().unwrap(), None, "no file: no state");

    let mut st = State::new("mesh1");
    st.record("cluster1/install-control-plane", record("v1"));
    lock.write(&mut st).unwrap();
    assert_eq!(st.serial, 1);
    assert_eq!(lock.read().unwrap().as_ref(), Some(&st));
    assert_eq!(mode(&path), 0o600);
    assert!(
        !backup_of(&path).exists(),
        "nothing to back up on the first write"
    );

    st.record("cluster1/install-control-plane", record("v2"));
    lock.write(&mut st).unwrap();
    assert_eq!(st.serial, 2);
    assert_eq!(mode(&backup_of(&path)), 0o600);
    let previous = read_unlocked(&backup_of(&path)).unwrap().unwrap();
    assert_eq!(previous.serial, 1);
    assert_eq!(previous.lineage, st.lineage);
    assert_eq!(previous.steps["cluster1/install-control-plane"].input, "v1");

    lock.write(&mut st).unwrap();
    assert_eq!(st.serial, 3);
    assert_eq!(read_unlocked(&backup_of(&path)).unwrap().unwrap().serial, 2);

    assert_eq!(
        names_in(dir.path()),
        [
            "mesh.state.json",
            "mesh.state.json.backup",
            "mesh.state.json.lock"
        ],
        "no temporary file is left"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("{\n  \"format_version\": 3,\n  \"lineage\": "),
        "{text}"
    );
    assert!(text.ends_with("}\n"));
}

#[test]
fn a_state_that_was_0644_becomes_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut lock, mut st) = written_once(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    lock.write(&mut st).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        mode(&backup_of(&path)),
        0o600,
        "the backup is private even if the file was not"
    );
}

#[test]
fn a_corrupt_file_is_refused_named_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut lock, mut st) = written_once(&path);
    // A second write, so that a backup exists to be named.
    lock.write(&mut st).unwrap();
    std::fs::write(&path, "{\n  \"format_version\": 1,\n  oops").unwrap();

    let e = lock.read().unwrap_err();
    assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("line 3 column"), "{msg}");
    assert!(
        msg.contains(&format!(
            "The previous version is at {}",
            backup_of(&path).display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("restore it by hand") && msg.contains("will not overwrite"),
        "{msg}"
    );

    // Not even a caller that skipped `read` can overwrite it.
    let w = lock.write(&mut st).unwrap_err();
    assert!(matches!(w, StateError::Corrupt { .. }), "{w}");
    assert_eq!(st.serial, 2, "serial put back");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\n  \"format_version\": 1,\n  oops"
    );

    // Valid JSON of the wrong shape is corrupt too.
    for text in [
        r#"{"hello": 1}"#,
        r#"{"format_version": 1, "lineage": "x"}"#,
        "[]",
    ] {
        std::fs::write(&path, text).unwrap();
        assert!(
            matches!(lock.read().unwrap_err(), StateError::Corrupt { .. }),
            "{text}"
        );
    }
}

#[test]
fn a_newer_format_is_refused_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut lock, mut st) = written_once(&path);
    let newer = r#"{"format_version": 4, "lineage": "x", "serial": 9, "a_new_field": true}"#;
    std::fs::write(&path, newer).unwrap();
    let e = read_unlocked(&path).unwrap_err();
    assert!(
        matches!(
            e,
            StateError::NewerFormat {
                found: 4,
                supported: 3,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("written by a newer mesh") && e.to_string().contains("Upgrade mesh"),
        "{e}"
    );
    assert!(matches!(
        lock.write(&mut st).unwrap_err(),
        StateError::NewerFormat { .. }
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
}

#[test]
fn another_mesh_id_is_the_callers_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    written_once(&path);
    let st = read_unlocked(&path).unwrap().unwrap();
    let e = st.check_mesh_id("mesh2").unwrap_err();
    assert!(
        matches!(&e, StateError::OtherMesh { found, expected } if found == "mesh1" && expected == "mesh2")
    );
    assert_eq!(
        e.to_string(),
        "this state belongs to mesh `mesh1`, the mesh file says `mesh2`: pass --state to use another state file"
    );
}

#[test]
fn another_lineage_or_a_newer_serial_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut lock, st) = written_once(&path);
    let on_disk = std::fs::read(&path).unwrap();

    let mut other = State::new("mesh1");
    let e = lock.write(&mut other).unwrap_err();
    assert!(matches!(e, StateError::Changed { .. }), "{e}");
    assert!(e.to_string().contains("another state"), "{e}");
    assert_eq!(other.serial, 0);

    let mut stale = st.clone();
    stale.serial = 0;
    assert!(matches!(
        lock.write(&mut stale).unwrap_err(),
        StateError::Changed { .. }
    ));
    assert_eq!(std::fs::read(&path).unwrap(), on_disk);
}

#[test]
fn an_unreadable_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    // A folder where the file should be fails for everyone, root included.
    std::fs::create_dir(&path).unwrap();
    let e = read_unlocked(&path).unwrap_err();
    assert!(matches!(e, StateError::Read { .. }), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    std::fs::remove_dir(&path).unwrap();

    // Permissions (meaningless as root, who reads anything).
    std::fs::write(&path, "{}").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&path).is_err() {
        let e = read_unlocked(&path).unwrap_err();
        assert!(matches!(e, StateError::Read { .. }), "{e}");
        assert!(e.to_string().contains("ermission denied"), "{e}");
    }
}

#[test]
fn a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut lock, mut st) = written_once(&path);
    let on_disk = std::fs::read(&path).unwrap();
    // A folder where the backup goes: keeping the backup fails (root
    // included), so the write must fail before the state is replaced.
    std::fs::create_dir(backup_of(&path)).unwrap();
    st.record("cluster2/attach", record("v"));
    let e = lock.write(&mut st).unwrap_err();
    assert!(matches!(e, StateError::Write { .. }), "{e}");
    assert!(e.to_string().contains("previous state is unchanged"), "{e}");
    assert_eq!(st.serial, 1, "serial put back after a failed write");
    assert_eq!(std::fs::read(&path).unwrap(), on_disk);
    assert!(
        names_in(dir.path()).iter().all(|n| !n.contains("tmp")),
        "{:?}",
        names_in(dir.path())
    );

    // Once the obstacle is gone the same state writes fine.
    std::fs::remove_dir(backup_of(&path)).unwrap();
    lock.write(&mut st).unwrap();
    assert_eq!(read_unlocked(&path).unwrap().unwrap().steps.len(), 2);
}

/// What a crash between writing the temporary file and renaming it leaves
/// behind (see also the unit test in local.rs, which stops a real write
/// there): the old state reads as it was, the leftover is ignored, and the
/// next write removes it.
#[test]
fn a_leftover_temporary_file_is_ignored_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut lock, mut st) = written_once(&path);
    let leftovers = [
        "mesh.state.json.tmp-0123456789ab",
        "mesh.state.json.backup.tmp-0123456789ab",
    ];
    for name in leftovers {
        std::fs::write(dir.path().join(name), "{ half a sta").unwrap();
    }
    assert_eq!(read_unlocked(&path).unwrap().unwrap(), st);
    lock.write(&mut st).unwrap();
    for name in leftovers {
        assert!(!dir.path().join(name).exists(), "{name} removed");
    }
}

#[test]
fn a_symlinked_state_stays_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.json");
    let link = state_path(&dir);
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (mut lock, mut st) = written_once(&link);
    lock.write(&mut st).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(read_unlocked(&real).unwrap().unwrap().serial, 2);
    assert_eq!(read_unlocked(&link).unwrap().unwrap().serial, 2);
}

#[test]
fn the_backend_trait_works_as_an_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let backend: Box<dyn Backend> = Box::new(LocalBackend::new(path.clone()));
    assert_eq!(backend.location(), path.display().to_string());
    let mut lock = backend.lock("apply", Duration::ZERO).unwrap();
    let mut st = State::new("mesh1");
    lock.write(&mut st).unwrap();
    assert_eq!(lock.read().unwrap().unwrap().serial, 1);
    let id = lock.info().id.clone();
    assert!(matches!(
        backend.force_unlock(&id).unwrap_err(),
        StateError::LockHeld { .. }
    ));
    drop(lock);
    assert_eq!(backend.read_unlocked().unwrap().unwrap(), st);
}

/// When run as a child (below): writes states in a loop until killed.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var("STATE_TEST_WRITE") else {
        return;
    };
    let backend = LocalBackend::new(PathBuf::from(path));
    let mut lock = backend.lock("apply", Duration::from_secs(10)).unwrap();
    let mut st = lock.read().unwrap().unwrap_or_else(|| State::new("mesh1"));
    for i in 0.. {
        // Big enough that each write takes a moment.
        st.record(
            format!("c{}/attach", i % 50),
            record(&"x".repeat(2000 + i % 7)),
        );
        lock.write(&mut st).unwrap();
    }
}

/// A real process SIGKILLed at arbitrary points of its writes: every time,
/// the state and its backup read cleanly and the serial never goes back.
#[test]
fn a_process_killed_mid_write_leaves_a_readable_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut last_serial = 0;
    for round in 0..6u64 {
        // The test's name in this binary: its module, then its function.
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "file::child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("STATE_TEST_WRITE", &path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + round * 37));
        child.kill().unwrap(); // SIGKILL: no destructor, no cleanup.
        child.wait().unwrap();
        let st = read_unlocked(&path)
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
            .expect("a state was written");
        assert!(st.serial >= last_serial, "serial never goes back");
        last_serial = st.serial;
        if let Some(b) = read_unlocked(&backup_of(&path)).unwrap() {
            assert!(b.serial <= st.serial, "the backup is never newer");
            assert_eq!(b.lineage, st.lineage);
        }
    }
    assert!(last_serial > 1);
}

/// A serial edited to the largest number cannot wrap to 0 (which would make
/// every saved plan look fresh again): the write is refused, nothing changes.
#[test]
fn a_serial_that_cannot_grow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut lock, mut st) = written_once(&path);
    st.serial = u64::MAX;
    let before = std::fs::read(&path).unwrap();
    let e = lock.write(&mut st).unwrap_err();
    assert!(
        e.to_string().contains("the largest a state may have"),
        "{e}"
    );
    assert!(e.to_string().contains("mesh state push --force"), "{e}");
    assert_eq!(st.serial, u64::MAX);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// The lock skips re-reading a file it wrote itself, but a file replaced
/// since (a hand edit, another tool) is read and checked as before, and
/// the backup still holds the replaced file.
#[test]
fn a_file_replaced_after_our_write_is_checked_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut lock, mut st) = written_once(&path);
    lock.write(&mut st).unwrap();
    assert_eq!(read_unlocked(&path).unwrap().unwrap().serial, 2);
    let backup = std::fs::read_to_string(path.with_extension("json.backup")).unwrap();
    assert!(backup.contains("\"serial\": 1"), "{backup}");

    // Someone else writes serial 7 of the same state.
    let mut newer = st.clone();
    newer.serial = 7;
    std::fs::write(&path, serde_json::to_string_pretty(&newer).unwrap()).unwrap();
    let e = lock.write(&mut st).unwrap_err();
    assert!(matches!(e, StateError::Changed { .. }), "{e}");
    assert_eq!(read_unlocked(&path).unwrap().unwrap().serial, 7);
}

/// Fencing: a lock file deleted (or replaced) while held means another
/// process can lock the new one; the holder then writes nothing more.
#[test]
fn a_lock_file_deleted_while_held_fences_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut lock, mut st) = written_once(&path);
    std::fs::remove_file(state::lock_path(&path)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let e = lock.write(&mut st).unwrap_err().to_string();
    assert!(
        e.contains("no longer holds the lock of the state") && e.contains("was deleted"),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
