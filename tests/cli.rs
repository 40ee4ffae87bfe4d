//! The `mesh` binary end to end, without clusters: validate, plan (from the
//! state alone), diff, graph, show, state, saved plans and their checks.
//!
//! Golden files live in tests/golden/; `MESH_UPDATE_GOLDEN=1 cargo test
//! --test cli` rewrites them (review the diff before committing).

use engine::planner;
use serde_json::json;
use state::{State, Status};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEED: &str = include_str!("../examples/primary-remote.toml");

const THIRD: &str = r#"
[[cluster]]
name = "cluster3"
context = "kind-cluster3"
network = "network1"
role = "remote"
primary = "cluster1"
"#;

fn mesh(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("run mesh")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("MESH_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no golden file {}: run with MESH_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {} (MESH_UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

fn workdir(mesh_toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.toml"), mesh_toml).unwrap();
    dir
}

/// Writes the state a successful apply of `mesh_toml` would leave, with the
/// east-west address 172.18.0.200.
fn write_applied_state(dir: &Path, mesh_toml: &str) {
    let file = engine::config::parse(mesh_toml, &dir.join("mesh.toml")).unwrap();
    let graph = engine::topology::compile(&file).unwrap();
    let mut st = State::new("mesh1");
    for step in graph.in_order() {
        let known = st.clone();
        let lookup =
            move |id: &str, key: &str| match known.steps.get(id).and_then(|r| r.outputs.get(key)) {
                Some(v) => providers::Known::Known(v.clone()),
                None => providers::Known::AfterApply,
            };
        let input = planner::render_step(step, &lookup);
        let mut outputs = BTreeMap::new();
        if step.id.ends_with("/eastwest-address") {
            outputs.insert("address".to_string(), json!("172.18.0.200"));
        }
        if step.id.ends_with("/attach") {
            outputs.insert("kubeconfig_sha256".to_string(), json!("0".repeat(64)));
        }
        let rec = planner::record(
            step,
            &graph,
            &input,
            outputs,
            Status::Applied,
            "2026-01-01T00:00:00Z".into(),
        );
        st.steps.insert(step.id.clone(), rec);
    }
    let backend = state::LocalBackend::new(dir.join("mesh.state.json"));
    let mut lock = backend.lock("test", std::time::Duration::ZERO).unwrap();
    lock.write(&mut st).unwrap();
}

#[test]
fn validate_prints_nothing_on_stdout_and_says_it_succeeded_on_stderr() {
    let dir = workdir(SEED);
    let o = mesh(dir.path(), &["validate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // stdout stays empty for scripts (the contract: nothing but errors);
    // a person sees that it worked.
    assert_eq!(stdout(&o), "");
    assert_eq!(
        stderr(&o),
        "mesh.toml is valid: mesh `mesh1`, 2 clusters, 7 steps.\n"
    );
}

#[test]
fn validate_reports_location_and_writes_nothing() {
    let dir = workdir(&SEED.replace("primary = \"cluster1\"", "primary = \"clusterl\""));
    let o = mesh(dir.path(), &["validate"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("mesh.toml:"), "{err}");
    assert!(
        err.contains("cluster1"),
        "a did-you-mean names the real primary: {err}"
    );
    let o = mesh(dir.path(), &["plan", "--no-refresh"]);
    assert_eq!(o.status.code(), Some(1));
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        files,
        ["mesh.toml"],
        "nothing written next to a bad mesh file"
    );
}

#[test]
fn a_missing_mesh_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = mesh(dir.path(), &["plan"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("mesh.toml"), "{}", stderr(&o));
}

#[test]
fn seed_plan_in_three_formats() {
    let dir = workdir(SEED);
    for (format, file) in [
        ("text", "seed.txt"),
        ("markdown", "seed.md"),
        ("json", "seed.json"),
    ] {
        let o = mesh(dir.path(), &["plan", "--no-refresh", "--format", format]);
        assert!(o.status.success(), "{}", stderr(&o));
        golden(file, &stdout(&o));
    }
    let o = mesh(dir.path(), &["plan", "--no-refresh"]);
    let text = stdout(&o);
    assert!(
        text.contains("Plan: 7 to create, 0 to update, 0 to delete."),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour off a terminal");
    let json: serde_json::Value = serde_json::from_str(&stdout(&mesh(
        dir.path(),
        &["plan", "--no-refresh", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(json["summary"]["create"], 7);
    assert_eq!(json["changes"][5]["step"], "cluster2/install-remote");
    // plan writes no state.
    assert!(!dir.path().join("mesh.state.json").exists());
}

#[test]
fn adding_a_third_cluster_to_an_applied_state() {
    let dir = workdir(&format!("{SEED}{THIRD}"));
    write_applied_state(dir.path(), SEED);
    for (format, file) in [
        ("text", "add-cluster3.txt"),
        ("markdown", "add-cluster3.md"),
        ("json", "add-cluster3.json"),
    ] {
        let o = mesh(dir.path(), &["plan", "--no-refresh", "--format", format]);
        assert!(o.status.success(), "{}", stderr(&o));
        golden(file, &stdout(&o));
    }
    let text = stdout(&mesh(dir.path(), &["plan", "--no-refresh"]));
    assert!(
        text.contains("Plan: 3 to create, 0 to update, 0 to delete."),
        "{text}"
    );
}

#[test]
fn removing_a_remote_from_an_applied_state() {
    let dir = workdir(SEED);
    write_applied_state(dir.path(), &format!("{SEED}{THIRD}"));
    for (format, file) in [
        ("text", "remove-cluster3.txt"),
        ("markdown", "remove-cluster3.md"),
        ("json", "remove-cluster3.json"),
    ] {
        let o = mesh(dir.path(), &["plan", "--no-refresh", "--format", format]);
        assert!(o.status.success(), "{}", stderr(&o));
        golden(file, &stdout(&o));
    }
    let text = stdout(&mesh(dir.path(), &["plan", "--no-refresh"]));
    assert!(
        text.contains("Plan: 0 to create, 0 to update, 3 to delete."),
        "{text}"
    );
}

#[test]
fn detailed_exitcode() {
    let dir = workdir(SEED);
    let o = mesh(dir.path(), &["plan", "--no-refresh", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));
    write_applied_state(dir.path(), SEED);
    let o = mesh(dir.path(), &["plan", "--no-refresh", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("No changes."));
    // Without the flag, changes still exit 0.
    let dir = workdir(SEED);
    assert_eq!(
        mesh(dir.path(), &["plan", "--no-refresh"]).status.code(),
        Some(0)
    );
}

#[test]
fn plan_destroy_deletes_everything() {
    let dir = workdir(SEED);
    write_applied_state(dir.path(), SEED);
    let o = mesh(dir.path(), &["plan", "--no-refresh", "--destroy"]);
    assert!(
        stdout(&o).contains("Plan: 0 to create, 0 to update, 7 to delete."),
        "{}",
        stdout(&o)
    );
}

#[test]
fn saved_plans_show_and_go_stale() {
    let dir = workdir(SEED);
    let o = mesh(dir.path(), &["plan", "--no-refresh", "--out", "seed.plan"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = mesh(dir.path(), &["show", "seed.plan"]);
    assert_eq!(
        stdout(&shown),
        stdout(&mesh(dir.path(), &["plan", "--no-refresh"]))
    );
    let json = stdout(&mesh(
        dir.path(),
        &["show", "seed.plan", "--format", "json"],
    ));
    assert!(json.contains("\"format_version\""));

    // The mesh file changes: the plan is stale.
    std::fs::write(dir.path().join("mesh.toml"), format!("{SEED}{THIRD}")).unwrap();
    let o = mesh(dir.path(), &["apply", "seed.plan", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("stale") || stderr(&o).contains("changed"),
        "{}",
        stderr(&o)
    );

    // The state changes: stale too.
    let dir = workdir(SEED);
    mesh(dir.path(), &["plan", "--no-refresh", "--out", "seed.plan"]);
    write_applied_state(dir.path(), SEED);
    let o = mesh(dir.path(), &["apply", "seed.plan", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("state"), "{}", stderr(&o));

    // Not a plan at all.
    std::fs::write(dir.path().join("junk.plan"), "{\"hello\": 1}").unwrap();
    let o = mesh(dir.path(), &["show", "junk.plan"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a saved plan"), "{}", stderr(&o));
}

#[test]
fn diff_between_two_versions_of_the_mesh_file() {
    let dir = workdir(&format!("{SEED}{THIRD}"));
    std::fs::write(dir.path().join("base.toml"), SEED).unwrap();
    let o = mesh(dir.path(), &["diff", "base.toml", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("Plan: 3 to create, 0 to update, 0 to delete."),
        "{text}"
    );
    golden(
        "diff-add-cluster3.md",
        &stdout(&mesh(
            dir.path(),
            &["diff", "base.toml", "--format", "markdown"],
        )),
    );
    let o = mesh(dir.path(), &["diff", "mesh.toml", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn graph_is_dot() {
    let dir = workdir(SEED);
    let o = mesh(dir.path(), &["graph"]);
    assert!(o.status.success());
    golden("seed.dot", &stdout(&o));
}

#[test]
fn state_list_and_show() {
    let dir = workdir(SEED);
    write_applied_state(dir.path(), SEED);
    let o = mesh(dir.path(), &["state", "list"]);
    assert_eq!(stdout(&o).lines().count(), 7);
    assert!(stdout(&o).contains("cluster2/attach"));
    let o = mesh(dir.path(), &["state", "show", "cluster1/eastwest-address"]);
    assert!(stdout(&o).contains("172.18.0.200"), "{}", stdout(&o));
    let o = mesh(dir.path(), &["state", "show", "nope/nothing"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("mesh state list"));
}

#[test]
fn a_corrupt_state_is_an_error_and_is_not_touched() {
    let dir = workdir(SEED);
    std::fs::write(dir.path().join("mesh.state.json"), "{ not json").unwrap();
    let o = mesh(dir.path(), &["plan", "--no-refresh"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("mesh.state.json"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mesh.state.json")).unwrap(),
        "{ not json"
    );
}

#[test]
fn a_state_of_another_mesh_is_refused() {
    let dir = workdir(SEED);
    write_applied_state(dir.path(), SEED);
    std::fs::write(
        dir.path().join("mesh.toml"),
        SEED.replace("id = \"mesh1\"", "id = \"other\""),
    )
    .unwrap();
    let o = mesh(dir.path(), &["plan", "--no-refresh"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("mesh1") && stderr(&o).contains("other"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let dir = workdir(SEED);
    // Simulated clusters (started by mesh itself), so that the preflight
    // before the question passes.
    let o = mesh(dir.path(), &["--sandbox", "sb", "apply", "--no-refresh"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--auto-approve"), "{}", stderr(&o));
}

/// A folder with one of the examples as mesh.toml and the test root of
/// trust as certs/ (key mode 0600).
fn topology(example: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(
        root.join("examples").join(example),
        dir.path().join("mesh.toml"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    for f in ["root-cert.pem", "root-key.pem"] {
        let to = dir.path().join("certs").join(f);
        std::fs::copy(root.join("tests/fixtures/trust").join(f), &to).unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    dir
}

/// Istio's four procedures and a mixed fleet: the plan of a first apply in
/// each format, and the mixed fleet's graph. A reviewer reads these.
#[test]
fn every_topology_plans_as_golden() {
    for (example, name) in [
        (
            "primary-remote-multi-network.toml",
            "primary-remote-multi-network",
        ),
        ("multi-primary.toml", "multi-primary"),
        (
            "multi-primary-multi-network.toml",
            "multi-primary-multi-network",
        ),
        ("mixed-fleet.toml", "mixed-fleet"),
    ] {
        let dir = topology(example);
        for (format, ext) in [("text", "txt"), ("markdown", "md")] {
            let o = mesh(dir.path(), &["plan", "--no-refresh", "--format", format]);
            assert!(o.status.success(), "{example}: {}", stderr(&o));
            assert_eq!(stderr(&o), "", "{example}: no warning");
            golden(&format!("{name}.{ext}"), &stdout(&o));
        }
    }
    let dir = topology("mixed-fleet.toml");
    let o = mesh(dir.path(), &["graph"]);
    assert!(o.status.success(), "{}", stderr(&o));
    golden("mixed-fleet.dot", &stdout(&o));
}

/// The plan never shows a key: only the root's fingerprint.
#[test]
fn a_plan_with_trust_shows_no_key() {
    let dir = topology("multi-primary.toml");
    let key = std::fs::read_to_string(dir.path().join("certs/root-key.pem")).unwrap();
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for format in ["text", "markdown", "json"] {
        let o = mesh(dir.path(), &["plan", "--no-refresh", "--format", format]);
        let out = stdout(&o);
        assert!(
            !out.contains(&body[..40]),
            "{format}: the root key is in the plan"
        );
        assert!(!out.contains("PRIVATE KEY"), "{format}");
        assert!(out.contains("mesh/root-sha256"), "{format}");
    }
}

/// `state pull` prints the state; `state push` moves it, refusing a file
/// that is not a state, another mesh, another lineage or an older serial
/// (unless --force), and writing nothing when it refuses.
#[test]
fn state_pull_and_push_move_a_state_and_refuse_what_would_lose_one() {
    let dir = workdir(SEED);
    write_applied_state(dir.path(), SEED);
    let o = mesh(dir.path(), &["state", "pull"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pulled: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("mesh.state.json")).unwrap())
            .unwrap();
    assert_eq!(pulled, on_disk);
    std::fs::write(dir.path().join("pulled.json"), stdout(&o)).unwrap();

    // Moved to a new place.
    let o = mesh(
        dir.path(),
        &[
            "--state",
            "moved/mesh.state.json",
            "state",
            "push",
            "pulled.json",
        ],
    );
    assert!(!o.status.success(), "no folder yet: {}", stderr(&o));
    std::fs::create_dir_all(dir.path().join("moved")).unwrap();
    let o = mesh(
        dir.path(),
        &[
            "--state",
            "moved/mesh.state.json",
            "state",
            "push",
            "pulled.json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let moved = state::read_unlocked(&dir.path().join("moved/mesh.state.json"))
        .unwrap()
        .unwrap();
    assert_eq!(moved.lineage, pulled["lineage"].as_str().unwrap());
    assert_eq!(moved.steps.len(), 7);
    assert!(
        moved.serial > pulled["serial"].as_u64().unwrap(),
        "old saved plans must go stale"
    );

    let before = std::fs::read(dir.path().join("mesh.state.json")).unwrap();
    let refused = |file: &str, text: &str, why: &str| {
        std::fs::write(dir.path().join(file), text).unwrap();
        let o = mesh(dir.path(), &["state", "push", file]);
        assert!(!o.status.success(), "{file} was pushed");
        assert!(stderr(&o).contains(why), "{file}: {}", stderr(&o));
        assert_eq!(
            std::fs::read(dir.path().join("mesh.state.json")).unwrap(),
            before,
            "{file}: written"
        );
    };
    refused(
        "passwd",
        "root:x:0:0:root:/root:/bin/bash\n",
        "is not a mesh state",
    );
    let mut other = pulled.clone();
    other["lineage"] = json!("f".repeat(32));
    refused(
        "other-lineage.json",
        &other.to_string(),
        "another state (lineage",
    );
    let mut older = pulled.clone();
    older["serial"] = json!(0);
    refused(
        "older.json",
        &older.to_string(),
        "is lower than the current state's",
    );
    let mut foreign = pulled.clone();
    foreign["mesh_id"] = json!("another-mesh");
    refused("foreign.json", &foreign.to_string(), "another-mesh");
    // --force replaces another lineage.
    let o = mesh(
        dir.path(),
        &["state", "push", "other-lineage.json", "--force"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let now = state::read_unlocked(&dir.path().join("mesh.state.json"))
        .unwrap()
        .unwrap();
    assert_eq!(now.lineage, "f".repeat(32));
}
