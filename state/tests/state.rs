//! The state file's guarantees: atomic replace, backup, mode, refusals, and
//! the lock across handles and processes.

use state::{LocalBackend, State, StateError, Status, StepRecord, force_unlock, read_unlocked};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn path_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("mesh.state.json")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn round_trip_serial_backup_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let backend = LocalBackend::new(path.clone());
    let mut lock = backend.lock("apply", Duration::ZERO).unwrap();
    assert_eq!(lock.read().unwrap(), None);

    let mut st = State::new("mesh1");
    st.record("cluster1/install-control-plane", record("v1"));
    lock.write(&mut st).unwrap();
    assert_eq!(st.serial, 1);
    assert_eq!(lock.read().unwrap().as_ref(), Some(&st));
    assert_eq!(mode(&path), 0o600);
    assert!(!Path::new(&format!("{}.backup", path.display())).exists());

    st.record("cluster1/install-control-plane", record("v2"));
    lock.write(&mut st).unwrap();
    assert_eq!(st.serial, 2);
    let backup = PathBuf::from(format!("{}.backup", path.display()));
    assert_eq!(mode(&backup), 0o600);
    let previous = read_unlocked(&backup).unwrap().unwrap();
    assert_eq!(previous.serial, 1);
    assert_eq!(previous.steps["cluster1/install-control-plane"].input, "v1");
    // Nothing else is left in the folder.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["mesh.state.json", "mesh.state.json.backup", "mesh.state.json.lock"]);
    // The file is pretty JSON with the contract's keys.
    let text = std::fs::read_to_string(&path).unwrap();
    for key in ["format_version", "lineage", "serial", "mesh_id", "steps", "input_fingerprint", "status"] {
        assert!(text.contains(&format!("\"{key}\"")), "{key} in {text}");
    }
    assert!(text.ends_with('\n'));
}

#[test]
fn corrupt_newer_and_other_mesh_files_are_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let backend = LocalBackend::new(path.clone());

    std::fs::write(&path, "{ not json").unwrap();
    let lock = backend.lock("plan", Duration::ZERO).unwrap();
    let e = lock.read().unwrap_err();
    assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("mesh.state.json") && msg.contains(".backup"), "{msg}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");

    std::fs::write(&path, r#"{"format_version": 99, "whatever": true}"#).unwrap();
    let e = lock.read().unwrap_err();
    assert!(matches!(e, StateError::NewerFormat { found: 99, .. }), "{e}");
    assert!(e.to_string().contains("upgrade mesh"));

    std::fs::write(&path, r#"{"hello": 1}"#).unwrap();
    assert!(matches!(lock.read().unwrap_err(), StateError::Corrupt { .. }));

    let st = State::new("mesh1");
    let e = st.check_mesh_id("mesh2").unwrap_err();
    assert!(e.to_string().contains("mesh1") && e.to_string().contains("--state"), "{e}");
    assert!(st.check_mesh_id("mesh1").is_ok());
}

#[test]
fn an_unreadable_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A folder where the file should be: reading it fails with an OS error.
    let path = path_in(&dir);
    std::fs::create_dir(&path).unwrap();
    let e = read_unlocked(&path).unwrap_err();
    assert!(matches!(e, StateError::Read { .. }), "{e}");
    assert!(e.to_string().contains("mesh.state.json"));
}

#[test]
fn a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let backend = LocalBackend::new(path.clone());
    let mut lock = backend.lock("apply", Duration::ZERO).unwrap();
    let mut st = State::new("mesh1");
    lock.write(&mut st).unwrap();
    // A folder where the backup goes: keeping the backup fails (even as
    // root), so the write must fail without touching the state.
    std::fs::create_dir(format!("{}.backup", path.display())).unwrap();
    st.record("x/y", record("v"));
    let result = lock.write(&mut st);
    assert!(matches!(result, Err(StateError::Write { .. })), "{result:?}");
    assert_eq!(st.serial, 1, "serial restored after a failed write");
    assert_eq!(read_unlocked(&path).unwrap().unwrap().steps.len(), 0);
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn two_handles_in_one_process_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let a = LocalBackend::new(path.clone()).lock("apply", Duration::ZERO).unwrap();
    let e = LocalBackend::new(path.clone()).lock("plan", Duration::ZERO).unwrap_err();
    match &e {
        StateError::Locked { info: Some(info), .. } => {
            assert_eq!(info.id, a.info().id);
            assert_eq!(info.operation, "apply");
            assert_eq!(info.pid, std::process::id());
        }
        other => panic!("expected Locked with info, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("apply") && msg.contains(&a.info().id) && msg.contains("--lock-timeout"), "{msg}");
    drop(a);
    LocalBackend::new(path).lock("plan", Duration::ZERO).expect("free after drop");
}

/// When run as a child (see below), holds the lock for the time given.
#[test]
fn child_lock_holder() {
    let Ok(path) = std::env::var("STATE_TEST_HOLD") else {
        return;
    };
    let ms: u64 = std::env::var("STATE_TEST_HOLD_MS").unwrap().parse().unwrap();
    let _lock = LocalBackend::new(PathBuf::from(path)).lock("apply", Duration::ZERO).unwrap();
    println!("LOCKED");
    std::thread::sleep(Duration::from_millis(ms));
}

fn spawn_holder(path: &Path, ms: u64) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_lock_holder", "--nocapture", "--test-threads=1"])
        .env("STATE_TEST_HOLD", path)
        .env("STATE_TEST_HOLD_MS", ms.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it says it holds the lock.
    let start = Instant::now();
    while lock_info_pid(path).is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "child never took the lock");
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(Some(status)) = child.try_wait() {
            panic!("child exited early: {status}");
        }
    }
    child
}

fn lock_info_pid(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(format!("{}.lock", path.display())).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_u64().map(|p| p as u32)
}

#[test]
fn another_process_holding_the_lock_is_named_and_can_be_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let mut child = spawn_holder(&path, 1500);
    let child_pid = child.id();
    let e = LocalBackend::new(path.clone()).lock("plan", Duration::ZERO).unwrap_err();
    match &e {
        StateError::Locked { info: Some(info), .. } => {
            assert_eq!(info.pid, child_pid);
            assert_eq!(info.operation, "apply");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // force-unlock refuses while the holder lives.
    let id = match &e {
        StateError::Locked { info: Some(i), .. } => i.id.clone(),
        _ => unreachable!(),
    };
    let refused = force_unlock(&path, &id).unwrap_err();
    assert!(refused.to_string().contains(&child_pid.to_string()), "{refused}");
    // With a timeout, the lock is had once the holder exits.
    let t0 = Instant::now();
    let lock = LocalBackend::new(path.clone()).lock("plan", Duration::from_secs(20)).unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(200), "it waited");
    assert_eq!(lock.info().operation, "plan");
    child.wait().unwrap();
}

#[test]
fn a_killed_holder_leaves_no_lock_and_force_unlock_clears_a_stale_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let mut child = spawn_holder(&path, 60_000);
    child.kill().unwrap();
    child.wait().unwrap();
    // The OS released the lock; the record is stale but harmless.
    let stale_id = {
        let text = std::fs::read_to_string(format!("{}.lock", path.display())).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"].as_str().unwrap().to_string()
    };
    let wrong = force_unlock(&path, "not-the-id").unwrap_err();
    assert!(wrong.to_string().contains(&stale_id), "{wrong}");
    force_unlock(&path, &stale_id).unwrap();
    assert!(force_unlock(&path, &stale_id).is_err(), "nothing left to unlock");
    LocalBackend::new(path).lock("apply", Duration::ZERO).unwrap();
}

/// When run as a child: writes states in a loop until killed.
#[test]
fn child_writer() {
    let Ok(path) = std::env::var("STATE_TEST_WRITE") else {
        return;
    };
    let backend = LocalBackend::new(PathBuf::from(path));
    let mut lock = backend.lock("apply", Duration::from_secs(10)).unwrap();
    let mut st = lock.read().unwrap().unwrap_or_else(|| State::new("mesh1"));
    for i in 0.. {
        // Big enough that a write takes a moment.
        st.record(format!("c{}/attach", i % 50), record(&"x".repeat(2000 + i % 7)));
        lock.write(&mut st).unwrap();
    }
}

#[test]
fn a_crash_mid_write_leaves_a_readable_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = path_in(&dir);
    let mut last_serial = 0;
    for round in 0..6u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env("STATE_TEST_WRITE", &path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + round * 37));
        child.kill().unwrap(); // SIGKILL: no cleanup runs.
        child.wait().unwrap();
        let st = read_unlocked(&path)
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
            .expect("a state was written");
        assert!(st.serial >= last_serial, "serial never goes back");
        last_serial = st.serial;
        if let Some(b) = read_unlocked(&PathBuf::from(format!("{}.backup", path.display()))).unwrap() {
            assert!(b.serial < st.serial || st.serial == 1);
        }
    }
    assert!(last_serial > 1);
}
