//! The README's quick start, run as written: the lines that call
//! `target/release/mesh` (with this build's mesh in their place), from a
//! copy of the repository's examples, on the sandbox (the simulated
//! clusters mesh serves itself with `--sandbox`). A README whose commands
//! do not work on a fresh clone fails here. And `cargo build --release`
//! builds the `kubesim` the README serves the sandbox with.

use std::path::Path;
use std::process::Command;

fn quick_start() -> Vec<Vec<String>> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## Quick start")
        .expect("a Quick start section");
    let block = &readme[start..];
    let block = &block[block.find("```sh").unwrap() + 5..];
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(|l| {
            l.trim()
                .trim_end_matches('\\')
                .trim()
                .trim_end_matches("&&")
                .trim()
        })
        .filter(|l| l.starts_with("target/release/mesh "))
        .map(|l| l.split_whitespace().skip(1).map(String::from).collect())
        .collect()
}

#[test]
fn the_quick_start_works_as_written() {
    let lines = quick_start();
    assert_eq!(
        lines.len(),
        3,
        "the quick start runs apply, plan, then check: {lines:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("examples")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/primary-remote.toml"),
        dir.path().join("examples/primary-remote.toml"),
    )
    .unwrap();
    let mut outputs = Vec::new();
    for args in &lines {
        let o = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("KUBESIM_ISTIOCTL_DELAY_MS", "0")
            .env_remove("KUBECONFIG")
            .env_remove("MESH_STATE")
            .env_remove("MESH_FILE")
            .env_remove("MESH_SANDBOX")
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "mesh {args:?} failed:\n{text}");
        outputs.push(text);
    }
    assert!(
        outputs[0].contains("Apply complete: 7 created"),
        "{}",
        outputs[0]
    );
    assert!(outputs[1].contains("No changes."), "{}", outputs[1]);
    // `mesh check` exited 0 (asserted above): nothing failed, nothing warned.
    assert!(
        outputs[2].contains("0 warnings, 0 failed") && !outputs[2].contains("FAIL"),
        "{}",
        outputs[2]
    );
    // The state is in the sandbox, and nothing was written beside the example.
    assert!(dir.path().join("sandbox/mesh.state.json").exists());
    assert!(!dir.path().join("examples/mesh.state.json").exists());
}

/// `cargo build --release` builds the `kubesim` the README serves the
/// sandbox with (the workspace's default members include it).
#[test]
fn cargo_build_builds_the_kubesim_the_readme_names() {
    let manifest = include_str!("../../Cargo.toml");
    let readme = include_str!("../../README.md");
    assert!(readme.contains("target/release/kubesim serve --dir sandbox"));
    let toml: toml::Table = manifest.parse().unwrap();
    let members = toml["workspace"]["default-members"].as_array().unwrap();
    assert!(
        members.iter().any(|m| m.as_str() == Some("tests/kubesim")),
        "{members:?}"
    );
    let kubesim: toml::Table = include_str!("../kubesim/Cargo.toml").parse().unwrap();
    assert_eq!(kubesim["bin"][0]["name"].as_str(), Some("kubesim"));
}
