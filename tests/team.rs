//! The Kubernetes state backend on kubesim (the project's simulator): the
//! state in a Secret, the lock a Lease, with two processes at once, a killed
//! holder, a conflicting write, and states it must never overwrite.

mod support;

use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{World, succeeded, text};

const SEED: &str = include_str!("../examples/primary-remote.toml");
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];

/// The seed with its state in cluster1's `default` namespace.
fn team_mesh() -> String {
    SEED.replacen(
        "[[cluster]]",
        "[state]\nbackend = \"kubernetes\"\nnamespace = \"default\"\n\n[[cluster]]",
        1,
    )
}

fn state_secret(w: &World) -> Option<Value> {
    w.get("kind-cluster1", "", "secrets", "default", "mesh1")
}

fn lease(w: &World) -> Option<Value> {
    w.get(
        "kind-cluster1",
        "coordination.k8s.io",
        "leases",
        "default",
        "mesh1-lock",
    )
}

#[test]
fn the_state_lives_in_a_secret_and_every_command_uses_it() {
    let w = World::new(&team_mesh(), CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let secret = state_secret(&w).expect("the state Secret");
    assert_eq!(
        secret.pointer("/metadata/labels/app.kubernetes.io~1managed-by"),
        Some(&Value::from("mesh"))
    );
    assert!(secret.pointer("/data/state.json.gz").is_some());
    assert!(
        !w.path("sandbox/mesh.state.json").exists(),
        "a local state was written too"
    );
    assert!(lease(&w).is_none(), "the lock was not released");
    w.assert_clean();
    let pulled: Value = serde_json::from_str(&w.ok(&["state", "pull"])).unwrap();
    assert_eq!(pulled["steps"].as_object().unwrap().len(), 7);
    assert!(w.ok(&["state", "list"]).contains("cluster2/attach"));
    assert!(w.ok(&["show"]).contains("7 steps"));
    // A second write kept the first as the backup.
    w.ok(&["destroy", "--auto-approve"]);
    assert!(
        w.get("kind-cluster1", "", "secrets", "default", "mesh1-backup")
            .is_some()
    );
    let pulled: Value = serde_json::from_str(&w.ok(&["state", "pull"])).unwrap();
    assert!(pulled["steps"].as_object().unwrap().is_empty());
}

#[test]
fn two_applies_at_once_one_runs_the_other_waits_or_names_the_holder() {
    let w = World::new(&team_mesh(), CONTEXTS);
    let mut first = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "800")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while lease(&w).is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no Lease taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("locked") && t.contains(&format!("pid {}", first.id())) && t.contains("apply"),
        "{t}"
    );
    // Waiting for it works, and no step runs twice.
    let o = w.mesh(&["apply", "--auto-approve", "--lock-timeout", "60s"]);
    succeeded(&o);
    assert!(first.wait().unwrap().success());
    let installs = w
        .istioctl_log()
        .into_iter()
        .filter(|i| i["argv"][0] == "install")
        .count();
    assert_eq!(installs, 3, "a step ran twice");
    w.assert_clean();
}

#[test]
fn a_killed_holders_lease_expires_and_the_next_apply_resumes() {
    let w = World::new(&team_mesh(), CONTEXTS);
    let mut first = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "2000")
        .env("MESH_STATE_LEASE_SECONDS", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while lease(&w).is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no Lease taken");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        lease(&w).is_some(),
        "a killed holder cannot release its Lease"
    );
    // At once: refused. Within the lease's life: taken over, resumed.
    let o = w
        .command(&["apply", "--auto-approve"])
        .env("MESH_STATE_LEASE_SECONDS", "3")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t0 = Instant::now();
    let o = w
        .command(&["apply", "--auto-approve", "--lock-timeout", "30s"])
        .env("MESH_STATE_LEASE_SECONDS", "3")
        .output()
        .unwrap();
    succeeded(&o);
    assert!(t0.elapsed() < Duration::from_secs(25));
    w.assert_clean();
}

#[test]
fn force_unlock_clears_a_dead_holders_lease() {
    let w = World::new(&team_mesh(), CONTEXTS);
    let mut first = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "2000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let id = loop {
        if let Some(l) = lease(&w) {
            break l
                .pointer("/spec/holderIdentity")
                .and_then(Value::as_str)
                .unwrap()
                .to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    };
    first.kill().unwrap();
    first.wait().unwrap();
    let o = w.mesh(&["force-unlock", "not-the-id"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains(&id), "{}", text(&o));
    w.ok(&["force-unlock", &id]);
    assert!(lease(&w).is_none());
    w.ok(&["apply", "--auto-approve"]);
}

#[test]
fn a_state_secret_it_cannot_read_is_never_overwritten() {
    let w = World::new(&team_mesh(), CONTEXTS);
    let c1 = w.cluster("kind-cluster1");
    {
        let mut store = c1.store();
        let rt = store.find_type("", "v1", "secrets").unwrap();
        let corrupt = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "mesh1", "namespace": "default"},
            "data": {"state.json.gz": "bm90IGd6aXA="}});
        store.create(&rt, "default", corrupt, "someone").unwrap();
    }
    let before = state_secret(&w).unwrap();
    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let o = w.mesh(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("is corrupt") && text(&o).contains("not gzip"),
            "{}",
            text(&o)
        );
    }
    assert_eq!(state_secret(&w).unwrap()["data"], before["data"]);
}

#[test]
fn a_missing_namespace_says_how_to_make_it() {
    let w = World::new(
        &team_mesh().replace("namespace = \"default\"", "namespace = \"mesh-state\""),
        CONTEXTS,
    );
    let o = w.mesh(&["plan"]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("the namespace mesh-state does not exist")
            && t.contains("kubectl --context kind-cluster1 create namespace mesh-state"),
        "{t}"
    );
}
