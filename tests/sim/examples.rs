//! Every shipped example on mesh's own `--sandbox` (simulated clusters that
//! run only while a command does, as a new user first meets them): apply,
//! a plan that finds nothing, and a `mesh check` that passes right after,
//! since apply waits for the east-west gateways' addresses it made (the
//! Services' load-balancer addresses, the ambient Gateways programmed).

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn mesh(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "20")
        .args(["--sandbox", "sb"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every example (the ambient one's east-west Gateway is programmed by
/// istiod after it is applied: apply waits for that too).
const EXAMPLES: &[&str] = &[
    "ambient-multi-network.toml",
    "primary-remote.toml",
    "primary-remote-multi-network.toml",
    "multi-primary.toml",
    "multi-primary-multi-network.toml",
    "mixed-fleet.toml",
];

#[test]
fn every_example_applies_plans_clean_and_checks_right_after() {
    for example in EXAMPLES {
        let dir = tempfile::tempdir().unwrap();
        let toml =
            std::fs::read_to_string(crate::support::repo().join("examples").join(example)).unwrap();
        std::fs::write(dir.path().join("mesh.toml"), &toml).unwrap();
        if toml.contains("[trust]") {
            let o = mesh(dir.path(), &["ca", "init", "certs"]);
            assert!(o.status.success(), "{example}: {}", text(&o));
        }
        let o = mesh(dir.path(), &["apply", "--auto-approve"]);
        assert!(o.status.success(), "{example}: apply: {}", text(&o));
        let o = mesh(dir.path(), &["plan", "--detailed-exitcode"]);
        assert_eq!(o.status.code(), Some(0), "{example}: plan: {}", text(&o));
        let o = mesh(dir.path(), &["check"]);
        assert_eq!(o.status.code(), Some(0), "{example}: check: {}", text(&o));
        assert!(text(&o).contains(" 0 failed."), "{example}: {}", text(&o));
    }
}
