//! The state lock across handles and processes, and force-unlock.
//!
//! The cross-process tests re-run this test executable as the holder
//! (`child_lock_holder`, selected by an environment variable), because an
//! OS lock is only really tested against another process.

use state::{LocalBackend, LockInfo, StateError, force_unlock, lock_path};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn state_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("mesh.state.json")
}

fn recorded(path: &Path) -> Option<LockInfo> {
    serde_json::from_str(&std::fs::read_to_string(lock_path(path)).ok()?).ok()
}

fn locked_info(e: &StateError) -> &LockInfo {
    match e {
        StateError::Locked {
            info: Some(info), ..
        } => info,
        other => panic!("expected Locked with the holder's details, got {other:?}"),
    }
}

#[test]
fn two_handles_in_one_process_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let a = LocalBackend::new(path.clone())
        .lock("apply", Duration::ZERO)
        .unwrap();
    let e = LocalBackend::new(path.clone())
        .lock("plan", Duration::ZERO)
        .unwrap_err();
    let info = locked_info(&e);
    assert_eq!(info, a.info());
    assert_eq!(info.operation, "apply");
    assert_eq!(info.pid, std::process::id());
    assert_eq!(info.path, path.display().to_string());
    let msg = e.to_string();
    for part in [
        a.info().id.as_str(),
        "`apply`",
        &format!("pid {}", std::process::id()),
        &a.info().who,
        "--lock-timeout 60s",
        &format!("`mesh force-unlock {}`", a.info().id),
    ] {
        assert!(msg.contains(part), "{part:?} in {msg}");
    }

    // A timeout waits, then fails the same way.
    let t0 = Instant::now();
    let e = LocalBackend::new(path.clone())
        .lock("plan", Duration::from_millis(300))
        .unwrap_err();
    assert!(t0.elapsed() >= Duration::from_millis(300), "it waited");
    assert!(matches!(e, StateError::Locked { .. }));

    drop(a);
    assert!(recorded(&path).is_none(), "release empties the record");
    let b = LocalBackend::new(path)
        .lock("plan", Duration::ZERO)
        .expect("free after drop");
    assert_eq!(b.info().operation, "plan");
}

#[test]
fn a_waiter_in_another_thread_gets_the_lock_when_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let a = LocalBackend::new(path.clone())
        .lock("apply", Duration::ZERO)
        .unwrap();
    let waiter = {
        let path = path.clone();
        std::thread::spawn(move || {
            LocalBackend::new(path)
                .lock("destroy", Duration::from_secs(20))
                .map(|l| l.info().clone())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    drop(a);
    let info = waiter.join().unwrap().unwrap();
    assert_eq!(info.operation, "destroy");
}

/// When run as a child (see `spawn_holder`): takes the lock, says so on
/// stdout, and holds it for STATE_TEST_HOLD_MS.
#[test]
fn child_lock_holder() {
    let Ok(path) = std::env::var("STATE_TEST_HOLD") else {
        return;
    };
    let ms: u64 = std::env::var("STATE_TEST_HOLD_MS")
        .unwrap()
        .parse()
        .unwrap();
    let lock = LocalBackend::new(PathBuf::from(path))
        .lock("apply", Duration::ZERO)
        .unwrap();
    println!("LOCKED {}", lock.info().id);
    std::thread::sleep(Duration::from_millis(ms));
}

/// Starts a holder process and returns once it holds the lock, with its
/// lock ID.
fn spawn_holder(path: &Path, ms: u64) -> (Child, String) {
    // The test's name in this binary: its module, then its function.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock::child_lock_holder",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("STATE_TEST_HOLD", path)
        .env("STATE_TEST_HOLD_MS", ms.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next() {
        // libtest may have printed "test lock::child_lock_holder ... " first.
        if let Some((_, id)) = line.unwrap().split_once("LOCKED ") {
            // Keep reading, so the child's last words do not hit a closed pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (child, id.trim().to_string());
        }
    }
    panic!(
        "the holder exited without taking the lock: {:?}",
        child.wait()
    );
}

#[test]
fn another_process_is_named_and_can_be_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut child, id) = spawn_holder(&path, 1500);

    let e = LocalBackend::new(path.clone())
        .lock("plan", Duration::ZERO)
        .unwrap_err();
    let info = locked_info(&e);
    assert_eq!(info.pid, child.id());
    assert_eq!(info.operation, "apply");
    assert_eq!(info.id, id);
    assert!(
        e.to_string().contains(&format!("pid {}", child.id())),
        "{e}"
    );

    // With a timeout, the lock is had once the holder exits.
    let t0 = Instant::now();
    let lock = LocalBackend::new(path.clone())
        .lock("plan", Duration::from_secs(20))
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(200), "it waited");
    assert_eq!(lock.info().operation, "plan");
    assert_eq!(lock.info().pid, std::process::id());
    assert!(child.wait().unwrap().success());
}

#[test]
fn force_unlock_refuses_a_live_holder_and_a_wrong_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut child, id) = spawn_holder(&path, 60_000);

    let e = force_unlock(&path, "not-the-id").unwrap_err();
    assert!(
        matches!(&e, StateError::LockIdMismatch { actual, .. } if *actual == id),
        "{e}"
    );
    assert!(e.to_string().contains(&id), "names the actual ID: {e}");

    let e = force_unlock(&path, &id).unwrap_err();
    assert!(
        matches!(&e, StateError::LockHeld { info, .. } if info.pid == child.id()),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("pid {}", child.id())) && msg.contains("running process"),
        "{msg}"
    );
    assert_eq!(recorded(&path).unwrap().id, id, "the record is untouched");

    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_killed_holder_leaves_no_lock_and_force_unlock_clears_its_stale_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let (mut child, id) = spawn_holder(&path, 60_000);
    child.kill().unwrap(); // SIGKILL: its Drop never runs.
    child.wait().unwrap();

    // The kernel released the lock; the record stays, stale and harmless.
    assert_eq!(recorded(&path).unwrap().id, id);
    let e = force_unlock(&path, "not-the-id").unwrap_err();
    assert!(e.to_string().contains(&id), "{e}");
    force_unlock(&path, &id).unwrap();
    assert!(recorded(&path).is_none());
    let again = force_unlock(&path, &id).unwrap_err();
    assert!(matches!(again, StateError::NotLocked { .. }), "{again}");

    // And without force-unlock, the next command simply takes the lock.
    let (mut child, _) = spawn_holder(&path, 60_000);
    child.kill().unwrap();
    child.wait().unwrap();
    let lock = LocalBackend::new(path)
        .lock("apply", Duration::ZERO)
        .unwrap();
    assert_eq!(lock.info().pid, std::process::id());
}

#[test]
fn force_unlock_clears_a_stale_record_written_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let stale = LockInfo {
        id: "0123456789abcdef0123456789abcdef".into(),
        who: "someone@elsewhere".into(),
        pid: 999_999,
        operation: "apply".into(),
        created: "2026-01-01T00:00:00Z".into(),
        path: path.display().to_string(),
    };
    std::fs::write(lock_path(&path), serde_json::to_string(&stale).unwrap()).unwrap();
    assert!(matches!(
        force_unlock(&path, "nope").unwrap_err(),
        StateError::LockIdMismatch { .. }
    ));
    force_unlock(&path, &stale.id).unwrap();
    assert_eq!(std::fs::read_to_string(lock_path(&path)).unwrap(), "");
}

/// Two names of one state file (a symlink and its target) are one state:
/// they must share one lock, or two applies run at once.
#[test]
fn a_symlinked_state_path_shares_the_lock_of_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let real = state_path(&dir);
    let link = dir.path().join("alias.state.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let held = LocalBackend::new(real.clone())
        .lock("apply", Duration::ZERO)
        .unwrap();
    let e = LocalBackend::new(link.clone())
        .lock("apply", Duration::ZERO)
        .unwrap_err();
    assert!(matches!(e, StateError::Locked { .. }), "{e}");
    drop(held);
    // And the other way round, through a link in another folder.
    let other = tempfile::tempdir().unwrap();
    let far_link = other.path().join("s.json");
    std::os::unix::fs::symlink(&real, &far_link).unwrap();
    let _held = LocalBackend::new(far_link)
        .lock("apply", Duration::ZERO)
        .unwrap();
    let e = LocalBackend::new(real)
        .lock("apply", Duration::ZERO)
        .unwrap_err();
    assert!(matches!(e, StateError::Locked { .. }), "{e}");
}

/// A symlink planted at `<state>.lock` is never followed: its target keeps
/// its contents, a dangling link's target is never created.
#[test]
fn a_symlink_at_the_lock_path_is_refused_and_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_path(&dir);
    let victim = dir.path().join("precious.txt");
    std::fs::write(&victim, "keep me\n").unwrap();
    let lock = dir.path().join("mesh.state.json.lock");
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let e = LocalBackend::new(state.clone())
        .lock("apply", Duration::ZERO)
        .unwrap_err();
    assert!(matches!(e, StateError::LockNotAFile { .. }), "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");

    std::fs::remove_file(&lock).unwrap();
    let nowhere = dir.path().join("created-by-a-dangling-link");
    std::os::unix::fs::symlink(&nowhere, &lock).unwrap();
    let e = LocalBackend::new(state)
        .lock("apply", Duration::ZERO)
        .unwrap_err();
    assert!(matches!(e, StateError::LockNotAFile { .. }), "{e}");
    assert!(!nowhere.exists(), "a dangling link's target was created");
}

#[test]
fn a_folder_at_the_lock_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mesh.state.json.lock")).unwrap();
    let e = LocalBackend::new(state_path(&dir))
        .lock("plan", Duration::ZERO)
        .unwrap_err();
    assert!(e.to_string().contains("a folder"), "{e}");
}

/// `--state /etc/passwd` by mistake: refused as not a mesh state, with no
/// `.lock` created beside it and no backup named that does not exist.
#[test]
fn a_file_that_is_not_a_state_gets_no_lock_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let e = LocalBackend::new(passwd.clone())
        .lock("apply", Duration::ZERO)
        .unwrap_err();
    assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        !msg.contains(".backup"),
        "names a backup that does not exist: {msg}"
    );
    assert!(!dir.path().join("passwd.lock").exists());
    assert_eq!(
        std::fs::read_to_string(&passwd).unwrap(),
        "root:x:0:0:root:/root:/bin/bash\n"
    );
}

/// Hardening II, 7: a lock record is the lock file's content, and anyone
/// who can write the file can put terminal escapes and newlines in it. The
/// errors that name the holder show them escaped, on one line.
#[test]
fn a_hostile_lock_record_is_named_escaped_on_one_line() {
    use std::io::Write as _;
    const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let record = LockInfo {
        id: format!("0123{HOSTILE}"),
        who: format!("eve{HOSTILE}\nerror: forged line"),
        pid: 4242,
        operation: format!("apply{HOSTILE}"),
        created: format!("2026-01-01T00:00:00Z{HOSTILE}"),
        path: format!("{}{HOSTILE}", path.display()),
    };
    // Held through a handle of its own, as a live holder would hold it.
    let mut held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(lock_path(&path))
        .unwrap();
    held.try_lock().unwrap();
    held.write_all(serde_json::to_string(&record).unwrap().as_bytes())
        .unwrap();
    let errors = [
        LocalBackend::new(path.clone())
            .lock("plan", Duration::ZERO)
            .unwrap_err(),
        force_unlock(&path, "nope").unwrap_err(),
        force_unlock(&path, &record.id).unwrap_err(),
    ];
    for e in &errors {
        let msg = e.to_string();
        assert!(
            !msg.chars().any(char::is_control),
            "a raw control character in: {msg:?}"
        );
        assert!(msg.contains("0123\\u{1b}]0;pwned\\u{7}"), "{msg}");
    }
    assert!(
        errors[0]
            .to_string()
            .contains("locked by eve\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\nerror: forged line"),
        "{}",
        errors[0]
    );
    // The record itself is kept as written: only its display is escaped.
    assert_eq!(locked_info(&errors[0]), &record);
}
