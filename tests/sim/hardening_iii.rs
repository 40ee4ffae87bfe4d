//! Regression tests for issue "Hardening III", each failing without its
//! fix, on kubesim, the project's simulator: a kubeconfig with a YAML
//! mistake is named by file, line and column, never quoted (its tokens and
//! keys went to CI logs); a state whose `plug-ca` record says it trusts no
//! root (`trusted_roots: []`, `[5]`) is a clear error naming the state, the
//! step and the key, and the state is left as it is. (Finding 2, a cluster
//! that cannot be checked for a revision's namespaces, is in upgrades.rs;
//! finding 3, a `deny_delete` glob that matches no step, in
//! engine/tests/pure/config.rs.)

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::{World, repo, succeeded as ok, text};

const SEED: &str = include_str!("../../examples/primary-remote.toml");

/// `mesh ARGS…` in `dir`, without a sandbox and with `$KUBECONFIG` unset.
fn mesh_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "0")
        .env_remove("KUBECONFIG")
        .env_remove("MESH_FILE")
        .env_remove("MESH_STATE")
        .env_remove("MESH_SANDBOX")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

const TOKEN: &str = "s3cret-bearer-token-7f3a9c1e5b";
const KEY: &str = "c2VjcmV0LWNsaWVudC1rZXktN2YzYTljMWU1Yg==";

/// A kubeconfig whose YAML breaks on the line right after its bearer
/// token and client key (`a: b` is no value in block YAML), so the YAML
/// library's message would quote both.
fn broken_kubeconfig() -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c1\n  cluster:\n    \
         server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  \
         user:\n    token: {TOKEN}\n    client-key-data: {KEY}\n    oops: a: b\ncontexts:\n\
         - name: kind-cluster1\n  context: {{cluster: c1, user: u}}\n- name: kind-cluster2\n  \
         context: {{cluster: c1, user: u}}\ncurrent-context: kind-cluster1\n"
    )
}

// Hardening III, 1. A kubeconfig's YAML mistake printed the lines around
// it, its token and client key among them, in `plan`, `check` and `init`.
#[test]
fn a_broken_kubeconfig_is_named_by_file_and_place_and_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.toml"), SEED).unwrap();
    std::fs::write(dir.path().join("kubeconfig.yaml"), broken_kubeconfig()).unwrap();
    let runs: [(&[&str], i32); 3] = [
        (&["--kubeconfig", "kubeconfig.yaml", "plan"], 1),
        // A cluster `check` cannot reach is a failed check: exit 2.
        (
            &[
                "--kubeconfig",
                "kubeconfig.yaml",
                "check",
                "--format",
                "json",
            ],
            2,
        ),
        (
            &[
                "-f",
                "new.toml",
                "--kubeconfig",
                "kubeconfig.yaml",
                "init",
                "--context",
                "kind-cluster1",
            ],
            1,
        ),
    ];
    for (args, code) in runs {
        let o = mesh_in(dir.path(), args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}:\n{t}");
        for secret in [TOKEN, KEY] {
            assert!(!t.contains(secret), "{args:?} prints a secret:\n{t}");
        }
        assert!(
            t.contains("kubeconfig.yaml:"),
            "{args:?}: no file and line:\n{t}"
        );
        assert!(
            t.contains("is not valid YAML for a kubeconfig"),
            "{args:?}:\n{t}"
        );
        assert!(t.contains("content is not shown"), "{args:?}:\n{t}");
    }
    assert!(
        !dir.path().join("new.toml").exists(),
        "init wrote a mesh file"
    );
}

/// The multi-primary example with the test root: each primary has a
/// `plug-ca`.
fn trusted_mesh() -> World {
    let mesh = std::fs::read_to_string(repo().join("examples/multi-primary.toml")).unwrap();
    World::new(&mesh, &["kind-cluster1", "kind-cluster2"]).with_test_root()
}

// Hardening III, 4. `trusted_roots: []` or `[5]` in a plug-ca record gave
// "No changes", then "(it trusts )". Now the state is refused as damaged
// when it is read, naming the file, the step and the key, and left as is.
#[test]
fn a_plug_ca_record_that_trusts_no_root_is_refused_and_the_state_left_as_is() {
    let w = trusted_mesh();
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let applied = w.state_json();
    let recorded = &applied["steps"]["cluster1/plug-ca"]["outputs"]["trusted_roots"];
    assert!(
        recorded.as_array().is_some_and(|l| l.len() == 1),
        "{recorded}"
    );
    for (bad, says) in [
        (json!([]), "is an empty list"),
        (json!([5]), "is a list whose item 1 is a number"),
        (json!("not a list"), "is a string"),
    ] {
        let mut st = w.state_json();
        st["steps"]["cluster1/plug-ca"]["outputs"]["trusted_roots"] = bad.clone();
        let written = serde_json::to_string_pretty(&st).unwrap();
        std::fs::write(w.state_path(), &written).unwrap();
        for args in [
            &["plan"][..],
            &["plan", "--no-refresh"][..],
            &["apply", "--auto-approve"][..],
            &["destroy", "--auto-approve"][..],
        ] {
            let o = w.mesh(args);
            let t = text(&o);
            assert_eq!(o.status.code(), Some(1), "{bad} {args:?}:\n{t}");
            for want in [
                "mesh.state.json is damaged, so nothing was planned or changed",
                "step `cluster1/plug-ca`, key `outputs.trusted_roots`: `trusted_roots` ",
                says,
                "not a non-empty list of sha256 fingerprints",
                "mesh state push --force",
                "mesh.state.json.backup",
                "`mesh state rm STEP`",
                "`mesh import --force`",
            ] {
                assert!(t.contains(want), "{bad} {args:?} lacks `{want}`:\n{t}");
            }
            assert!(!t.contains("No changes"), "{t}");
            assert!(!t.contains("(it trusts )"), "{t}");
            assert_eq!(
                std::fs::read_to_string(w.state_path()).unwrap(),
                written,
                "{bad} {args:?}: the state file changed"
            );
        }
        // `mesh check` needs no state: it says the state is damaged and
        // checks without it.
        let check = text(&w.mesh(&["check", "--format", "json"]));
        assert!(check.contains("the state is damaged"), "{check}");
        assert!(check.contains("cluster1/plug-ca"), "{check}");
        assert_eq!(std::fs::read_to_string(w.state_path()).unwrap(), written);
    }
    // The way out the message names: forget the step, adopt it again.
    ok(&w.mesh(&["state", "rm", "cluster1/plug-ca"]));
    ok(&w.mesh(&["import", "--force"]));
    let st: Value = w.state_json();
    assert!(
        st["steps"].get("cluster1/plug-ca").is_some(),
        "import did not record cluster1/plug-ca again"
    );
}
