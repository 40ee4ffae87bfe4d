//! `kubesim serve` keeps tokens and CA keys in its folder: the folders it
//! creates are 0700 whatever the umask.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn mode_of(p: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777
}

#[test]
fn serve_creates_private_folders_under_umask_000() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/sim");
    // The shell text is a constant; kubesim and its arguments are argv.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_kubesim"))
        .args(["serve", "--dir"])
        .arg(&dir)
        .args(["--clusters", "a"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let serving = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("serving"));
    let modes: Vec<(String, u32)> = ["new", "new/sim", "new/sim/clusters", "new/sim/kubeconfig.d"]
        .iter()
        .map(|f| (f.to_string(), mode_of(&tmp.path().join(f))))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(serving, "kubesim serve did not start");
    for (f, mode) in modes {
        assert_eq!(mode, 0o700, "{f} is {mode:o}");
    }
}
