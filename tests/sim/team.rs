//! The Kubernetes state backend (`[state] backend = "kubernetes"`) on
//! kubesim, the project's simulator: the state in a Secret that every
//! command uses, the lock a Lease; two applies at once (one runs, the other
//! waits or names the holder), a killed holder's Lease expiring and
//! `force-unlock`, a long apply renewing its Lease, a conflicting write
//! refused with nothing lost, a state Secret it cannot read or that is newer
//! or foreign never overwritten, a missing namespace, a hostile Lease
//! printed escaped, and the pull-request workflow (a saved plan raced by
//! another apply is stale, a fresh one applies; docs/pull-requests.md).

use crate::support::{World, succeeded, text};
use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};

const SEED: &str = include_str!("../../examples/primary-remote.toml");
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

/// Starts `mesh apply` with simulated installs of `delay_ms` (and a Lease
/// of `lease_secs`, if given), and waits until it holds the Lease; returns
/// the running apply and the Lease's holder ID.
// The returned child is the caller's to wait for.
#[allow(clippy::zombie_processes)]
fn holding_apply(
    w: &World,
    delay_ms: &str,
    lease_secs: Option<&str>,
) -> (std::process::Child, String) {
    let mut c = w.command(&["apply", "--auto-approve"]);
    c.env("KUBESIM_ISTIOCTL_DELAY_MS", delay_ms)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(secs) = lease_secs {
        c.env("MESH_STATE_LEASE_SECONDS", secs);
    }
    let mut child = c.spawn().unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(id) = lease(w).and_then(|l| {
            l.pointer("/spec/holderIdentity")
                .and_then(Value::as_str)
                .map(String::from)
        }) {
            return (child, id);
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no Lease taken");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
    let (mut first, _) = holding_apply(&w, "800", None);
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
    let (mut first, _) = holding_apply(&w, "2000", Some("3"));
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
    let (mut first, id) = holding_apply(&w, "2000", None);
    first.kill().unwrap();
    first.wait().unwrap();
    let o = w.mesh(&["force-unlock", "--force", "not-the-id"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains(&id), "{}", text(&o));
    // Without a terminal to confirm on, nothing is cleared without --force.
    let o = w.mesh(&["force-unlock", &id]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("pass --force"), "{}", text(&o));
    assert!(lease(&w).is_some(), "cleared without confirmation");
    let o = w.ok(&["force-unlock", "--force", &id]);
    assert!(o.contains("Checking that the holder of lock"), "{o}");
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
            "metadata": {"name": "mesh1", "namespace": "default",
                "labels": {"app.kubernetes.io/managed-by": "mesh"}},
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

/// Writes `state` (JSON) gzipped into the state Secret, as another writer would.
fn put_state(w: &World, state: &Value) {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(state.to_string().as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(gz);
    let c1 = w.cluster("kind-cluster1");
    let mut store = c1.store();
    let rt = store.find_type("", "v1", "secrets").unwrap();
    let patch = serde_json::json!({"data": {"state.json.gz": b64}});
    if store.get_raw("", "secrets", "default", "mesh1").is_some() {
        store
            .patch(
                &rt,
                "default",
                "mesh1",
                kubesim::store::PatchType::Merge,
                patch.to_string().as_bytes(),
                "someone",
                false,
                false,
            )
            .unwrap();
    } else {
        let s = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "mesh1", "namespace": "default"}, "data": patch["data"]});
        store.create(&rt, "default", s, "someone").unwrap();
    }
}

/// Someone else writes the state while an apply runs: the apply's next
/// write is refused with a clear error, and the other write is kept.
#[test]
fn a_conflicting_write_is_refused_and_loses_nothing() {
    let w = World::new(&team_mesh(), CONTEXTS);
    let first = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while state_secret(&w).is_none() {
        assert!(t0.elapsed() < Duration::from_secs(20), "no state written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut theirs: Value = serde_json::from_str(&w.ok(&["state", "pull"])).unwrap();
    theirs["serial"] = Value::from(theirs["serial"].as_u64().unwrap() + 100);
    put_state(&w, &theirs);
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("changed since it was read"),
        "{}",
        text(&o)
    );
    let now: Value = serde_json::from_str(&w.ok(&["state", "pull"])).unwrap();
    assert_eq!(now["serial"], theirs["serial"], "the other write was lost");
}

#[test]
fn a_newer_or_foreign_state_secret_is_refused_and_kept() {
    let w = World::new(&team_mesh(), CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let mine: Value = serde_json::from_str(&w.ok(&["state", "pull"])).unwrap();
    let mut newer = mine.clone();
    newer["format_version"] = Value::from(99);
    put_state(&w, &newer);
    let o = w.mesh(&["plan"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("format version 99") && text(&o).contains("newer mesh"),
        "{}",
        text(&o)
    );
    let mut foreign = mine.clone();
    foreign["mesh_id"] = Value::from("another-mesh");
    put_state(&w, &foreign);
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("another-mesh"), "{}", text(&o));
    let kept: Value = serde_json::from_str(&w.ok(&["state", "pull"])).unwrap();
    assert_eq!(kept["mesh_id"], "another-mesh", "overwritten");
}

/// The pull-request workflow of docs/pull-requests.md on the Kubernetes
/// backend: a plan saved on a branch, an apply racing it on main, the saved
/// plan refused as stale after the merge, a fresh plan applied.
#[test]
fn a_saved_plan_raced_by_another_apply_is_stale_and_a_fresh_one_applies() {
    let w = World::new(&team_mesh(), CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let main = w.mesh_toml();
    let branch = main.replacen(
        "role = \"primary\"\n",
        "role = \"primary\"\n[cluster.values.global.logging]\nlevel = \"default:debug\"\n",
        1,
    );
    // The pull request's plan job: the branch's file, a saved plan.
    w.write_mesh(&branch);
    let out = w.ok(&["plan", "--out", "pr.plan", "--format", "markdown"]);
    assert!(out.contains("cluster1/install-control-plane"), "{out}");
    // Meanwhile on main: drift repaired by an apply of main's file.
    w.write_mesh(&main);
    let c1 = w.cluster("kind-cluster1");
    {
        let mut store = c1.store();
        let rt = store.find_type("", "v1", "secrets").unwrap();
        store
            .delete(&rt, "istio-system", "istio-remote-secret-cluster2")
            .unwrap();
    }
    w.ok(&["apply", "--auto-approve"]);
    // The merge, then the apply job: exactly the saved plan, refused.
    w.write_mesh(&branch);
    let o = w.mesh(&["apply", "pr.plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("stale plan") && text(&o).contains("state changed"),
        "{}",
        text(&o)
    );
    // A fresh plan of the merged file applies.
    w.ok(&["plan", "--out", "fresh.plan"]);
    let out = w.ok(&["apply", "fresh.plan"]);
    assert!(
        out.contains("cluster1/install-control-plane: updated"),
        "{out}"
    );
    w.assert_clean();
}

/// A command that runs longer than the Lease's life keeps it: the holder
/// renews it, so nobody takes it over while it works.
#[test]
fn a_long_apply_renews_its_lease() {
    let w = World::new(&team_mesh(), CONTEXTS);
    let (first, _) = holding_apply(&w, "2500", Some("3"));
    // Well past the Lease's 3 s: still held, so refused.
    std::thread::sleep(Duration::from_secs(5));
    let o = w
        .command(&["plan"])
        .env("MESH_STATE_LEASE_SECONDS", "3")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "the Lease was taken over: {}",
        text(&o)
    );
    assert!(text(&o).contains("locked"), "{}", text(&o));
    assert!(first.wait_with_output().unwrap().status.success());
}

/// Hardening II, 7: a Lease whose holder record (`mesh/lock-info`) and
/// `holderIdentity` carry terminal escapes (OSC, BEL, CSI) is named with
/// them escaped, never raw.
#[test]
fn a_hostile_lease_is_printed_escaped() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J";
    let w = World::new(&team_mesh(), CONTEXTS);
    let info = serde_json::json!({
        "id": format!("0123{HOSTILE}"),
        "who": format!("eve{HOSTILE}\nerror: forged line"),
        "pid": 4242,
        "operation": format!("apply{HOSTILE}"),
        "created": format!("2026-01-01T00:00:00Z{HOSTILE}"),
        "path": format!("Secret default/mesh1{HOSTILE}"),
    });
    let now = serde_json::to_value(MicroTime(k8s_openapi::jiff::Timestamp::now())).unwrap();
    {
        let c1 = w.cluster("kind-cluster1");
        let mut store = c1.store();
        let rt = store
            .find_type("coordination.k8s.io", "v1", "leases")
            .unwrap();
        let lease = serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "mesh1-lock", "namespace": "default",
                "labels": {"app.kubernetes.io/managed-by": "mesh"},
                "annotations": {"mesh/lock-info": info.to_string()}},
            "spec": {"holderIdentity": format!("0123{HOSTILE}"), "leaseDurationSeconds": 3600,
                "acquireTime": now, "renewTime": now}});
        store.create(&rt, "default", lease, "someone").unwrap();
    }
    for args in [&["plan"][..], &["force-unlock", "--force", "nope"][..]] {
        let o = w.mesh(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        for byte in [0x1b, 0x07] {
            assert!(
                !o.stderr.contains(&byte),
                "{args:?}: a raw {byte:#04x} reached the terminal: {:?}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("0123\\u{1b}]0;pwned"), "{args:?}: {err}");
        assert!(!err.contains("\nerror: forged"), "{args:?}: {err}");
    }
    assert!(
        String::from_utf8_lossy(&w.mesh(&["plan"]).stderr).contains("locked by eve\\u{1b}"),
        "the holder is named"
    );
}

/// A state the credentials may not read says what failed and where: a
/// read of the Secret, named by namespace, name and context; never a
/// made-up file path or a lock error.
#[test]
fn a_state_it_may_not_read_names_the_read_and_the_secret() {
    let w = World::new(&team_mesh(), CONTEXTS);
    succeeded(&w.mesh(&["apply", "--auto-approve"]));
    w.cluster("kind-cluster1").set_faults(kubesim::Faults {
        denied: vec![("get".into(), "secrets".into())],
        ..Default::default()
    });
    let o = w.mesh(&["state", "pull"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("cannot read the state from Secret default/mesh1 in context kind-cluster1")
            && t.contains("no permission to get secrets in namespace default"),
        "{t}"
    );
    assert!(!t.contains("cannot lock the state"), "{t}");
}

/// A state past one Secret (a fleet's: the Kubernetes limit is 1 MiB)
/// goes in parts, written before the state Secret that names them, read
/// back whole; the parts of a state no longer named by the state or its
/// backup are deleted, and a part changed by hand is refused, not half read.
#[test]
fn a_state_past_one_secret_is_kept_in_parts_and_read_back_whole() {
    let w = World::new(&team_mesh(), CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let small: Value = serde_json::from_str(&w.ok(&["state", "pull"])).unwrap();
    // The same state with a record that hardly compresses: about 1.6 MiB
    // gzipped.
    let mut big = small.clone();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..(2 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let mut record = big["steps"]["cluster2/attach"].clone();
    record["input"] = Value::from(format!("# {noise}\n"));
    big["steps"]["cluster9/attach"] = record;
    let push = |doc: &Value| {
        let path = w.path("pushed.json");
        std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        w.ok(&["state", "push", path.to_str().unwrap()]);
    };
    push(&big);
    let secret = state_secret(&w).expect("the state Secret");
    assert!(
        secret.pointer("/data/state.json.gz").is_none(),
        "{secret:#}"
    );
    let manifest = |s: &Value| -> Vec<String> {
        use base64::Engine as _;
        let raw = s
            .pointer("/data/parts.json")
            .and_then(Value::as_str)
            .map(|b| base64::engine::general_purpose::STANDARD.decode(b).unwrap());
        raw.map(|r| {
            let m: Value = serde_json::from_slice(&r).unwrap();
            m["parts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
    };
    let parts = manifest(&secret);
    assert_eq!(parts.len(), 2, "{secret:#}");
    for p in &parts {
        let part = w
            .get("kind-cluster1", "", "secrets", "default", p)
            .expect(p);
        assert_eq!(
            part.pointer("/metadata/labels/app.kubernetes.io~1managed-by"),
            Some(&Value::from("mesh"))
        );
    }
    let pulled: Value = serde_json::from_str(&w.ok(&["state", "pull"])).unwrap();
    assert_eq!(pulled["steps"], big["steps"]);
    assert!(w.ok(&["state", "list"]).contains("cluster9/attach"));

    // Back to one Secret: the parts stay while the backup names them…
    let mut smaller = pulled.clone();
    smaller["steps"]
        .as_object_mut()
        .unwrap()
        .remove("cluster9/attach");
    push(&smaller);
    assert!(
        state_secret(&w)
            .unwrap()
            .pointer("/data/state.json.gz")
            .is_some()
    );
    for p in &parts {
        assert!(
            w.get("kind-cluster1", "", "secrets", "default", p)
                .is_some(),
            "{p} went early"
        );
    }
    // …and go once nothing names them.
    push(&serde_json::from_str(&w.ok(&["state", "pull"])).unwrap());
    for p in &parts {
        assert!(
            w.get("kind-cluster1", "", "secrets", "default", p)
                .is_none(),
            "{p} left"
        );
    }

    // A part changed by hand: the state is refused, whole or not at all.
    let mut again: Value = serde_json::from_str(&w.ok(&["state", "pull"])).unwrap();
    again["steps"]["cluster9/attach"] = big["steps"]["cluster9/attach"].clone();
    push(&again);
    let parts = manifest(&state_secret(&w).unwrap());
    {
        let c1 = w.cluster("kind-cluster1");
        let mut store = c1.store();
        let rt = store.find_type("", "v1", "secrets").unwrap();
        let mut part = store.get(&rt, "default", &parts[1]).unwrap();
        part["data"]["chunk"] = Value::from("AAAA");
        store.delete(&rt, "default", &parts[1]).unwrap();
        part["metadata"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k == "name" || k == "namespace" || k == "labels");
        store.create(&rt, "default", part, "kubectl").unwrap();
    }
    let o = w.mesh(&["state", "pull"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("a part was changed or replaced"),
        "{}",
        text(&o)
    );
}
