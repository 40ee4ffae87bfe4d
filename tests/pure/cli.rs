//! The `mesh` binary end to end, without clusters: validate, plan (from the
//! state alone), diff, graph, show, state, saved plans and their checks,
//! the policy; and two runs on `--sandbox` clusters, for what only an apply
//! shows (the question without a terminal; a saved plan's overrides, a
//! comment-only edit keeping it fresh).
//!
//! Golden files live in tests/golden/; `MESH_UPDATE_GOLDEN=1 cargo test
//! -p mesh --test pure cli::` rewrites them (review the diff before committing).

use crate::golden::golden;

use engine::planner;
use serde_json::json;
use state::{State, Status};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEED: &str = include_str!("../../examples/primary-remote.toml");

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

/// A state as mesh recorded it before each link had its own token: the
/// `attach` records hold the remote secret alone (the shared reader token).
fn as_before_link_tokens(dir: &Path) {
    let path = dir.join("mesh.state.json");
    let mut st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (id, rec) in st["steps"].as_object_mut().unwrap() {
        if !id.contains("/attach") {
            continue;
        }
        let input = rec["input"].as_str().unwrap();
        let old = input.split("---\n").next().unwrap().to_string();
        rec["input_fingerprint"] = json!(providers::sha256_hex(old.as_bytes()));
        rec["input"] = json!(old);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&st).unwrap()).unwrap();
}

#[test]
fn a_state_from_before_link_tokens_plans_each_link_its_own_token() {
    let mesh_toml = format!("{SEED}{THIRD}");
    let dir = workdir(&mesh_toml);
    write_applied_state(dir.path(), &mesh_toml);
    as_before_link_tokens(dir.path());
    let o = mesh_cmd_plan(dir.path());
    golden("migrate-link-tokens.txt", &o);
    assert!(
        o.contains("Plan: 0 to create, 2 to update, 0 to delete.")
            && o.contains("reason: input changed; its own token: Secret istio-system/istio-reader-token-cluster1 in cluster3"),
        "{o}"
    );
}

fn mesh_cmd_plan(dir: &Path) -> String {
    let o = mesh(dir, &["plan", "--no-refresh"]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
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

// ---- [trust] files and `mesh ca init` (Hardening II, items 5 and 10) ----

/// `mesh ARGS` through `sh -c 'SETUP; exec "$0" "$@"'`: the shell text is a
/// constant, the binary and its arguments travel as argv.
fn mesh_after(dir: &Path, setup: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .env("NO_COLOR", "1")
        .arg("-c")
        .arg(format!("{setup}; exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_mesh"))
        .args(args)
        .output()
        .expect("run mesh through sh")
}

fn mode_of(p: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777
}

/// A mesh file with two primaries and `[trust]` at lines 4 to 6:
/// `root_cert`'s value at 5:13, `root_key`'s at 6:12.
fn trust_workdir(cert: &str, key: &str, extra_trust: &str) -> tempfile::TempDir {
    let dir = workdir(&format!(
        "[mesh]\nid = \"mesh1\"\n\n[trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n{extra_trust}\n\
         [[cluster]]\nname = \"a\"\ncontext = \"a\"\nnetwork = \"n\"\nrole = \"primary\"\n\n\
         [[cluster]]\nname = \"b\"\ncontext = \"b\"\nnetwork = \"n\"\nrole = \"primary\"\n"
    ));
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    for (name, text) in [("root-cert.pem", cert), ("root-key.pem", key)] {
        let p = dir.path().join("certs").join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    dir
}

/// A self-signed root made with rcgen, `edit`ed: `(cert PEM, key PEM)`.
fn rcgen_root(edit: impl FnOnce(&mut rcgen::CertificateParams)) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "test root");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::Duration::from_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    p.not_before = now - std::time::Duration::from_secs(3600);
    p.not_after = now + std::time::Duration::from_secs(10 * 365 * 86400);
    edit(&mut p);
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Keys as openssl writes them (PKCS#1 from `genrsa -traditional`, SEC1
/// from `ecparam -genkey`, with or without its EC PARAMETERS block) are
/// roots like PKCS#8 ones.
#[test]
fn trust_keys_in_pkcs1_and_sec1_validate() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trust-encodings");
    for name in ["rsa-pkcs1", "ec-sec1", "ec384-sec1"] {
        let read =
            |f: &str| std::fs::read_to_string(fixtures.join(format!("{name}-{f}.pem"))).unwrap();
        let dir = trust_workdir(&read("cert"), &read("key"), "");
        let o = mesh(dir.path(), &["validate"]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains("is valid"), "{name}: {}", stderr(&o));
    }
}

/// A root that cannot sign the intermediates (or whose intermediates could
/// not sign workload certificates) is refused by `mesh validate`, at the
/// `[trust]` key that names it, with the reason and what to do.
#[test]
fn unusable_roots_are_refused_where_they_are_named() {
    use rcgen::{BasicConstraints, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
    let day = std::time::Duration::from_secs(86400);
    type Edit = Box<dyn FnOnce(&mut rcgen::CertificateParams)>;
    let cases: Vec<(&str, Edit, &str, &str, &str)> = vec![
        (
            "not yet valid",
            Box::new(move |p| p.not_before += 4 * 365 * day),
            "",
            "the root certificate is not valid before",
            "clock",
        ),
        (
            "pathlen:0",
            Box::new(|p| p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))),
            "",
            "pathlen:0",
            "pathlen",
        ),
        (
            "no keyCertSign",
            Box::new(|p| {
                p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign]
            }),
            "",
            "keyCertSign",
            "keyUsage",
        ),
        (
            "serverAuth only",
            Box::new(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]),
            "",
            "extendedKeyUsage",
            "clientAuth",
        ),
        (
            "10 days, intermediates of 365 (the default)",
            Box::new(move |p| p.not_after = p.not_before + 10 * day),
            "",
            "before the intermediates it signs would",
            "intermediate_days to at most 9",
        ),
        (
            "10 days, intermediates of 30",
            Box::new(move |p| p.not_after = p.not_before + 10 * day),
            "intermediate_days = 30\n",
            "intermediate_days = 30",
            "intermediate_days to at most 9",
        ),
    ];
    for (what, edit, extra, message, help) in cases {
        let (cert, key) = rcgen_root(edit);
        let dir = trust_workdir(&cert, &key, extra);
        let o = mesh(dir.path(), &["validate"]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{what}: accepted\n{err}");
        assert!(err.contains("--> mesh.toml:5:13"), "{what}: {err}");
        assert!(err.contains(message), "{what}: {err}");
        assert!(
            err.contains("help: ") && err.contains(help),
            "{what}: {err}"
        );
        assert!(!err.contains("PRIVATE KEY"), "{what}: {err}");
    }
}

/// `mesh ca init` under umask 000 makes its folders 0700, not 0777.
#[test]
fn ca_init_folders_are_private_under_umask_000() {
    let dir = tempfile::tempdir().unwrap();
    let o = mesh_after(dir.path(), "umask 000", &["ca", "init", "new/certs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mode_of(&dir.path().join("new")), 0o700);
    assert_eq!(mode_of(&dir.path().join("new/certs")), 0o700);
    assert_eq!(mode_of(&dir.path().join("new/certs/root-key.pem")), 0o600);
}

/// `mesh ca init` leaves a `.gitignore` beside the key, so `git add -A`
/// of the repository that holds the mesh file does not commit it; a
/// `.gitignore` of the folder's own is kept as it is.
#[test]
fn ca_init_keeps_the_key_out_of_git() {
    let dir = tempfile::tempdir().unwrap();
    let o = mesh(dir.path(), &["ca", "init", "certs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ignore = std::fs::read_to_string(dir.path().join("certs/.gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "root-key.pem"), "{ignore}");
    assert!(
        stdout(&o).contains(".gitignore lists it for git"),
        "{}",
        stdout(&o)
    );
    let own = dir.path().join("own");
    std::fs::create_dir(&own).unwrap();
    std::fs::write(own.join(".gitignore"), "*.pem\n").unwrap();
    let o = mesh(dir.path(), &["ca", "init", "own"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(own.join(".gitignore")).unwrap(),
        "*.pem\n"
    );
}

/// A full disk (here the file-size limit: the key fits in 512 bytes, the
/// certificate does not) leaves neither file, so the rerun succeeds.
#[test]
fn ca_init_on_a_full_disk_writes_nothing_and_a_rerun_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    // Ignoring SIGXFSZ makes the write fail with EFBIG, as ENOSPC would.
    let o = mesh_after(
        dir.path(),
        "trap '' XFSZ; ulimit -f 1",
        &["ca", "init", "certs"],
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    let left: Vec<String> = std::fs::read_dir(dir.path().join("certs"))
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}\n{}", stderr(&o));
    let o = mesh(dir.path(), &["ca", "init", "certs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cert = std::fs::read_to_string(dir.path().join("certs/root-cert.pem")).unwrap();
    assert!(cert.contains("BEGIN CERTIFICATE"));
}

/// `SEED` with `cluster3` on another network.
fn third_on(network: &str) -> String {
    THIRD.replace(
        "network = \"network1\"",
        &format!("network = \"{network}\""),
    )
}

const DENY_NAMESPACES: &str = r#"
[policy]
deny_delete = ["*/install-control-plane", "*/prepare-namespace"]
max_clusters_changed = 10
"#;

/// A remote moved to another network: the plan says so in plain words, and
/// the diff of the two files says the same.
#[test]
fn a_network_change_is_said_in_plain_words() {
    let base = format!("{SEED}{THIRD}");
    let head = format!("{SEED}{}", third_on("network2"));
    let dir = workdir(&head);
    write_applied_state(dir.path(), &base);
    let o = mesh(
        dir.path(),
        &["plan", "--no-refresh", "--format", "markdown"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(
        md.contains("- cluster3 moves to network2 (from network1)\n"),
        "{md}"
    );
    golden("network-change.md", &md);
    std::fs::write(dir.path().join("base.toml"), &base).unwrap();
    let o = mesh(dir.path(), &["diff", "base.toml", "--format", "markdown"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("### mesh diff: `mesh1`\n"),
        "{}",
        stdout(&o)
    );
    assert!(
        stdout(&o).contains("- cluster3 moves to network2 (from network1)\n"),
        "{}",
        stdout(&o)
    );
}

/// A remote removed, as the pull request's diff shows it: what goes,
/// including the remote's istio-system.
#[test]
fn a_removed_remote_in_a_diff_warns_of_what_goes() {
    let dir = workdir(SEED);
    std::fs::write(dir.path().join("base.toml"), format!("{SEED}{THIRD}")).unwrap();
    let o = mesh(dir.path(), &["diff", "base.toml", "--format", "markdown"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(
        md.contains("> [!WARNING]\n> **This change removes 3 steps:**\n"),
        "{md}"
    );
    assert!(
        md.contains("> - `cluster3/prepare-namespace`: namespace istio-system in cluster3, with everything still in it"),
        "{md}"
    );
    golden("diff-remove-cluster3.md", &md);
}

/// A plan that breaks the policy is an error naming each rule and step,
/// shown in every format, and not saved; `--allow` overrides it and the
/// plan records that.
#[test]
fn a_policy_violation_refuses_the_plan_until_allowed() {
    let dir = workdir(&format!("{SEED}{DENY_NAMESPACES}"));
    write_applied_state(dir.path(), &format!("{SEED}{THIRD}"));
    let o = mesh(
        dir.path(),
        &[
            "plan",
            "--no-refresh",
            "--format",
            "markdown",
            "--out",
            "p.plan",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: the plan breaks the mesh file's [policy]:\n  \
         deny_delete: cluster3/prepare-namespace: the plan deletes it, and deny_delete has `*/prepare-namespace`\n\
         Nothing was applied or saved. Change the mesh file, or, once the change has been reviewed, \
         plan again with --allow deny_delete (the plan records it)\n"
    );
    assert!(
        !dir.path().join("p.plan").exists(),
        "a refused plan is not saved"
    );
    golden("policy-violation.md", &stdout(&o));
    for format in ["text", "json"] {
        let o = mesh(dir.path(), &["plan", "--no-refresh", "--format", format]);
        assert_eq!(o.status.code(), Some(1), "{format}");
        let out = stdout(&o);
        assert!(
            out.contains("cluster3/prepare-namespace"),
            "{format}: {out}"
        );
        assert!(out.contains("violated"), "{format}: {out}");
    }
    let o = mesh(dir.path(), &["plan", "--no-refresh", "--detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a violation is an error, not a change"
    );

    // Overridden: the plan records it, a saved plan carries it.
    let o = mesh(
        dir.path(),
        &[
            "plan",
            "--no-refresh",
            "--allow",
            "deny_delete",
            "--out",
            "p.plan",
            "--format",
            "markdown",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("> [!IMPORTANT]\n> **Policy overridden by `--allow deny_delete`.**\n"),
        "{}",
        stdout(&o)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&mesh(
        dir.path(),
        &["show", "p.plan", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(json["policy"]["result"], "overridden");
    assert_eq!(json["policy"]["allowed"], json!(["deny_delete"]));
    assert_eq!(
        json["policy"]["violations"][0]["step"],
        "cluster3/prepare-namespace"
    );
    assert_eq!(json["policy"]["violations"][0]["allowed"], true);
    // An unknown rule is refused by name.
    let o = mesh(
        dir.path(),
        &["plan", "--no-refresh", "--allow", "deny_everything"],
    );
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
    assert!(
        stderr(&o).contains("deny_delete, max_clusters_changed, require_canary"),
        "{}",
        stderr(&o)
    );
}

/// An Istio version change on the same revision upgrades in place:
/// `require_canary` refuses it; with a new revision it passes.
#[test]
fn require_canary_wants_a_new_revision_with_a_new_version() {
    let pinned = |v: &str, extra: &str| {
        SEED.replace(
            "id = \"mesh1\"",
            &format!("id = \"mesh1\"\nistio_version = \"{v}\"{extra}"),
        )
    };
    let policy = "\n[policy]\nrequire_canary = true\n";
    let dir = workdir(&format!("{}{policy}", pinned("1.28.0", "")));
    write_applied_state(dir.path(), &pinned("1.27.0", ""));
    let o = mesh(dir.path(), &["plan", "--no-refresh", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let steps: Vec<&str> = json["policy"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "cluster1/install-control-plane",
            "cluster1/install-eastwest-gateway",
            "cluster2/install-remote"
        ]
    );
    assert!(
        stderr(&o).contains("require_canary: cluster1/install-control-plane: upgrades Istio from 1.27.0 to 1.28.0 in place"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        dir.path().join("mesh.toml"),
        format!("{}{policy}", pinned("1.28.0", "\nrevision = \"canary\"")),
    )
    .unwrap();
    let o = mesh(
        dir.path(),
        &["plan", "--no-refresh", "--format", "markdown"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(md.contains("**Policy:** passed (`require_canary`)"), "{md}");
    assert!(md.contains("- revision `canary` is added"), "{md}");
}

/// The blast radius: an attach counts its cluster and the primary that
/// holds its Secret.
#[test]
fn max_clusters_changed_limits_the_blast_radius() {
    let dir = workdir(&format!(
        "{SEED}{THIRD}\n[policy]\nmax_clusters_changed = 2\n"
    ));
    let o = mesh(dir.path(), &["plan", "--no-refresh"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("max_clusters_changed: the plan changes 3 clusters (cluster1, cluster2, cluster3), more than max_clusters_changed = 2"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("Policy: violated"), "{}", stdout(&o));
}

/// `mesh diff` shows what `mesh plan` will refuse: a mesh ID change, and
/// the policy; the diff itself still succeeds.
#[test]
fn a_diff_says_what_plan_will_refuse() {
    let dir = workdir(&format!(
        "{}{DENY_NAMESPACES}",
        SEED.replace("id = \"mesh1\"", "id = \"mesh2\"")
    ));
    std::fs::write(dir.path().join("base.toml"), format!("{SEED}{THIRD}")).unwrap();
    let o = mesh(
        dir.path(),
        &[
            "diff",
            "base.toml",
            "--format",
            "markdown",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(
        md.contains("> [!CAUTION]\n> **`mesh plan` refuses this change.**\n> - the mesh ID changes from `mesh1` to `mesh2`. A mesh ID change means a new mesh"),
        "{md}"
    );
    assert!(md.contains("**Policy violated"), "{md}");
    assert!(md.contains("`cluster3/prepare-namespace`"), "{md}");
    assert_eq!(stderr(&o), "");
    let text = stdout(&mesh(dir.path(), &["diff", "base.toml"]));
    assert!(
        text.contains("Refused: `mesh plan` will not make this change:"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&mesh(
        dir.path(),
        &["diff", "base.toml", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(json["command"], "diff");
    assert!(
        json["refused"][0]
            .as_str()
            .unwrap()
            .contains("mesh ID changes")
    );
}

/// The first pull request adds the mesh file: its base is empty or absent,
/// and every step is a create. A mesh file emptied deletes every step.
#[test]
fn a_diff_against_no_mesh_creates_everything() {
    let dir = workdir(SEED);
    std::fs::write(dir.path().join("empty.toml"), "# nothing yet\n").unwrap();
    for base in ["/dev/null", "empty.toml", "missing.toml"] {
        let o = mesh(dir.path(), &["diff", base, "--detailed-exitcode"]);
        assert_eq!(o.status.code(), Some(2), "{base}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("Plan: 7 to create, 0 to update, 0 to delete."),
            "{base}: {out}"
        );
        assert!(
            out.contains("  - a new mesh: 2 clusters join\n"),
            "{base}: {out}"
        );
        assert!(
            stderr(&o).contains("comparing with no mesh at all"),
            "{base}: {}",
            stderr(&o)
        );
    }
    // The mesh file emptied: everything goes.
    let o = mesh(
        dir.path(),
        &[
            "-f",
            "empty.toml",
            "diff",
            "mesh.toml",
            "--format",
            "markdown",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("`+0` `~0` `-7`"), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("> **This change removes 7 steps:**"),
        "{}",
        stdout(&o)
    );
    // A mesh file that is missing is still an error, and so is a base that
    // is not a mesh file.
    let o = mesh(dir.path(), &["-f", "missing.toml", "diff", "mesh.toml"]);
    assert_eq!(o.status.code(), Some(1));
    std::fs::write(dir.path().join("bad.toml"), "[mesh\n").unwrap();
    let o = mesh(dir.path(), &["diff", "bad.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.toml:1:"), "{}", stderr(&o));
    let o = mesh(dir.path(), &["-f", "empty.toml", "diff", "/dev/null"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nothing to compare"), "{}", stderr(&o));
}

/// On sandbox clusters: `apply PLANFILE` applies with the overrides the
/// saved plan recorded and no others; a comment-only edit of the mesh file
/// does not make the saved plan stale; `apply` without `--allow` refuses.
#[test]
fn a_saved_plan_carries_its_overrides_and_survives_a_comment_edit() {
    let dir = workdir(&format!("{SEED}{THIRD}"));
    let sandboxed = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_mesh"))
            .current_dir(dir.path())
            .env_remove("KUBECONFIG")
            .env("NO_COLOR", "1")
            .env("KUBESIM_ISTIOCTL_DELAY_MS", "0")
            .args(["--sandbox", "sandbox"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run mesh")
    };
    let o = sandboxed(&["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    let head = format!("{SEED}{DENY_NAMESPACES}");
    std::fs::write(dir.path().join("mesh.toml"), &head).unwrap();
    let o = sandboxed(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("deny_delete: cluster3/prepare-namespace"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("Policy: violated"), "{}", stdout(&o));

    let o = sandboxed(&["plan", "--allow", "deny_delete", "--out", "p.plan"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Only comments and formatting change: the plan stays fresh.
    let edited = format!(
        "# Reviewed in the pull request.\n{}",
        head.replace("id = \"mesh1\"", "id    =   'mesh1'   # the meshID")
    );
    std::fs::write(dir.path().join("mesh.toml"), edited).unwrap();
    let o = sandboxed(&["apply", "p.plan", "--allow", "require_canary"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the saved plan was made without --allow require_canary"),
        "{}",
        stderr(&o)
    );
    let o = sandboxed(&["apply", "p.plan"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("0 created, 0 updated, 3 destroyed"),
        "{}",
        stderr(&o)
    );
    let o = sandboxed(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}
