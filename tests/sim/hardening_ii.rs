//! Regression tests for issue "Hardening II", each failing without its fix
//! (docs/reliability.md), on kubesim, the project's simulator: a saved plan
//! runs only if it is the plan mesh computes (an edited one is refused and
//! nothing runs; an unedited destroy plan applies); a state that cannot be
//! written runs no step, and `state push --force` recovers; an
//! application's Secret or Lease of a state's name is never touched; and
//! the fencing of the Kubernetes state backend's Lease: a renewing holder
//! keeps it whatever its timestamps say, a holder stopped (SIGSTOP) past
//! its lease starts nothing when continued, `force-unlock` refuses a live
//! holder, a Lease deleted by hand frees the lock only after the running
//! steps, a killed holder's marked Lease frees itself, and a soak of
//! stopped and continued holders never runs a step twice at once
//! (`MESH_SOAK_ROUNDS`).

use serde_json::Value;

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];

use crate::support::{World, succeeded as ok, text};

/// The seed with `extra` appended to cluster1's table.
fn seed_with_primary(extra: &str) -> String {
    SEED.replacen(
        "role = \"primary\"\n",
        &format!("role = \"primary\"\n{extra}"),
        1,
    )
}

/// One edit of a saved plan's JSON.
type Edit = Box<dyn Fn(&mut Value)>;

/// Rewrites the saved plan at `file` with `edit`.
fn edit_plan(w: &World, file: &str, edit: impl FnOnce(&mut Value)) {
    let path = w.path(file);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// The saved plan's change for `step`.
fn change<'a>(v: &'a mut Value, step: &str) -> &'a mut Value {
    v["plan"]["changes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["step"] == step)
        .unwrap_or_else(|| panic!("no change for {step}"))
}

fn uninstalls(w: &World) -> usize {
    w.istioctl_log()
        .iter()
        .filter(|r| r["argv"].to_string().contains("uninstall"))
        .count()
}

// 3. A saved plan is executed only if it is the plan mesh computes.
#[test]
fn an_edited_saved_plan_is_refused_and_nothing_runs() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    // A real change: the control plane is updated.
    w.write_mesh(&seed_with_primary(
        "[cluster.values]\npilot = { env = { PILOT_TRACE_SAMPLING = \"1\" } }\n",
    ));
    let edits: Vec<(&str, Edit, &str)> = vec![
        (
            "update → delete",
            Box::new(|v| change(v, "cluster1/install-control-plane")["action"] = "delete".into()),
            "cluster1/install-control-plane: action \"delete\" against \"update\"",
        ),
        (
            "no-op → delete",
            Box::new(|v| change(v, "cluster2/prepare-namespace")["action"] = "delete".into()),
            "cluster2/prepare-namespace: action \"delete\" against \"no-op\"",
        ),
        (
            "summary zeroed",
            Box::new(|v| {
                v["plan"]["summary"] =
                    serde_json::json!({"create": 0, "update": 0, "delete": 0, "unchanged": 7});
            }),
            "summary",
        ),
        (
            "input edited",
            Box::new(|v| {
                let c = change(v, "cluster1/install-control-plane");
                let after = c["after"].as_str().unwrap().replace("mesh1", "other");
                c["after"] = after.into();
            }),
            "cluster1/install-control-plane: input",
        ),
        (
            "a step dropped",
            Box::new(|v| {
                v["plan"]["changes"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|c| c["step"] != "cluster2/attach");
            }),
            "cluster2/attach",
        ),
    ];
    let state_before = std::fs::read(w.state_path()).unwrap();
    let runs_before = w.istioctl_log().len();
    for (what, edit, named) in edits {
        ok(&w.mesh(&["plan", "--out", "pr.plan"]));
        edit_plan(&w, "pr.plan", edit);
        let o = w.mesh(&["apply", "pr.plan"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: applied\n{out}");
        assert!(
            out.contains("does not match the plan mesh computes") && out.contains(named),
            "{what}: the message names the difference ({named})\n{out}"
        );
        assert_eq!(
            w.istioctl_log().len(),
            runs_before,
            "{what}: istioctl ran\n{out}"
        );
        assert_eq!(
            std::fs::read(w.state_path()).unwrap(),
            state_before,
            "{what}: the state changed"
        );
    }
    assert_eq!(uninstalls(&w), 0);
    // The same plan, unedited, applies exactly its one update.
    ok(&w.mesh(&["plan", "--out", "pr.plan"]));
    let out = ok(&w.mesh(&["apply", "pr.plan"]));
    assert!(
        out.contains("Apply complete: 0 created, 1 updated"),
        "{out}"
    );
    w.assert_clean();
}

// 3. A saved destroy plan is recomputed as a destroy.
#[test]
fn a_saved_destroy_plan_applies_when_unedited() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    ok(&w.mesh(&["plan", "--destroy", "--out", "down.plan"]));
    let out = ok(&w.mesh(&["apply", "down.plan"]));
    assert!(out.contains("7 destroyed"), "{out}");
}

// 2. A step starts only after its record is written: a state that cannot
// be written stops the run before any step, and the documented recovery
// (pull, push --force) works.
#[test]
fn a_state_that_cannot_be_written_runs_no_step_and_recovers_with_push_force() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let mut st = w.state_json();
    st["serial"] = Value::from(u64::MAX);
    std::fs::write(w.state_path(), serde_json::to_string_pretty(&st).unwrap()).unwrap();
    let runs = w.istioctl_log().len();
    let o = w.mesh(&["destroy", "--auto-approve"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("the largest a state may have") && out.contains("mesh state push --force"),
        "{out}"
    );
    assert!(!out.contains("destroyed:"), "a step ran: {out}");
    assert_eq!(w.istioctl_log().len(), runs, "istioctl ran: {out}");
    assert!(
        w.exists(
            "kind-cluster1",
            "",
            "secrets",
            "istio-system",
            "istio-remote-secret-cluster2"
        ),
        "the remote secret was deleted while its record could not be written"
    );
    assert_eq!(w.state_json()["steps"], st["steps"], "the state changed");
    // A push of a serial near the limit is refused…
    let pulled = ok(&w.mesh(&["state", "pull"]));
    let pulled = &pulled[pulled.find('{').unwrap()..];
    std::fs::write(w.path("s.json"), pulled).unwrap();
    let o = w.mesh(&["state", "push", "s.json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("too near the largest"), "{}", text(&o));
    // …and `--force` renumbers it, after which destroy runs.
    ok(&w.mesh(&["state", "push", "--force", "s.json"]));
    assert!(w.state_json()["serial"].as_u64().unwrap() < (1 << 53));
    let out = ok(&w.mesh(&["destroy", "--auto-approve"]));
    assert!(out.contains("7 destroyed"), "{out}");
}

// ---- the Kubernetes state backend: ownership and fencing ----

/// The seed with its state in cluster1's `default` namespace under `name`.
fn team_mesh(name: &str) -> String {
    SEED.replacen(
        "[[cluster]]",
        &format!(
            "[state]\nbackend = \"kubernetes\"\nnamespace = \"default\"\nname = \"{name}\"\n\n[[cluster]]"
        ),
        1,
    )
}

fn lease(w: &World, name: &str) -> Option<Value> {
    w.get(
        "kind-cluster1",
        "coordination.k8s.io",
        "leases",
        "default",
        &format!("{name}-lock"),
    )
}

/// Creates `doc` in cluster1 as another tool would.
fn create(w: &World, group: &str, version: &str, plural: &str, doc: Value) {
    let c1 = w.cluster("kind-cluster1");
    let mut store = c1.store();
    let rt = store.find_type(group, version, plural).unwrap();
    store.create(&rt, "default", doc, "someone").unwrap();
}

// 4. mesh never writes or deletes an object it does not own.
#[test]
fn an_applications_secret_or_lease_of_a_state_name_is_never_touched() {
    let w = World::new(&team_mesh("db"), CONTEXTS);
    let theirs = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db-backup", "namespace": "default"},
        "data": {"dump": "c2VjcmV0"}});
    create(&w, "", "v1", "secrets", theirs);
    // The first write makes the state; the second would back it up.
    let o = w.mesh(&["apply", "--auto-approve"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("Secret default/db-backup in context kind-cluster1 is not mesh's")
            && out.contains("[state] name"),
        "{out}"
    );
    let kept = w
        .get("kind-cluster1", "", "secrets", "default", "db-backup")
        .unwrap();
    assert_eq!(kept["data"]["dump"], "c2VjcmV0", "overwritten");

    // An application's expired Lease of the lock's name: neither taken nor
    // deleted, by plan or apply.
    let w = World::new(&team_mesh("db"), CONTEXTS);
    create(
        &w,
        "coordination.k8s.io",
        "v1",
        "leases",
        serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "db-lock", "namespace": "default"},
            "spec": {"holderIdentity": "their-app", "leaseDurationSeconds": 1,
                     "renewTime": "2020-01-01T00:00:00.000000Z"}}),
    );
    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let o = w.mesh(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("Lease default/db-lock in context kind-cluster1 is not mesh's"),
            "{}",
            text(&o)
        );
    }
    let kept = lease(&w, "db").expect("their Lease was deleted");
    assert_eq!(kept["spec"]["holderIdentity"], "their-app");
    // And an application's Secret of the state's own name.
    let w = World::new(&team_mesh("db"), CONTEXTS);
    create(
        &w,
        "",
        "v1",
        "secrets",
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "default"}, "data": {"password": "eA=="}}),
    );
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert!(
        text(&o).contains("Secret default/db in context kind-cluster1 is not mesh's"),
        "{}",
        text(&o)
    );
    assert!(w.istioctl_log().is_empty(), "it applied");
}

/// `mesh apply` with slow simulated installs and a Lease of `lease_secs`,
/// started; waits until it holds the Lease.
#[allow(clippy::zombie_processes)]
fn holding(w: &World, name: &str, delay_ms: &str, lease_secs: &str) -> std::process::Child {
    let mut child = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", delay_ms)
        .env("MESH_STATE_LEASE_SECONDS", lease_secs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while lease(w, name).is_none() {
        if t0.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!("no Lease taken");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

/// No step's istioctl ran in two mesh processes at once: runs of the same
/// argv and input from different parents never overlap in time.
fn assert_no_step_ran_twice_at_once(w: &World) {
    let runs = w.istioctl_log();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            if a["argv"] != b["argv"] || a["stdin"] != b["stdin"] || a["parent"] == b["parent"] {
                continue;
            }
            let (a0, a1) = (
                a["started_ms"].as_u64().unwrap(),
                a["ended_ms"].as_u64().unwrap(),
            );
            let (b0, b1) = (
                b["started_ms"].as_u64().unwrap(),
                b["ended_ms"].as_u64().unwrap(),
            );
            assert!(
                a1 <= b0 || b1 <= a0,
                "two processes ran {} at once: {a} and {b}",
                a["argv"]
            );
        }
    }
}

// 1. A live holder is never taken over by its timestamps: a Lease whose
// renewTime looks an hour old (as to a client whose clock is fast) is taken
// only after this process has seen it unchanged for its whole duration,
// and a holder that renews it never is.
#[test]
fn a_renewing_holder_keeps_its_lease_whatever_its_timestamps_say() {
    let w = World::new(&team_mesh("mesh1"), CONTEXTS);
    let first = holding(&w, "mesh1", "800", "3");
    {
        let c1 = w.cluster("kind-cluster1");
        let mut store = c1.store();
        let rt = store
            .find_type("coordination.k8s.io", "v1", "leases")
            .unwrap();
        let patch = serde_json::json!({"spec": {"renewTime": "2020-01-01T00:00:00.000000Z",
            "acquireTime": "2020-01-01T00:00:00.000000Z"}});
        store
            .patch(
                &rt,
                "default",
                "mesh1-lock",
                kubesim::store::PatchType::Merge,
                patch.to_string().as_bytes(),
                "clock-skew",
                false,
                false,
            )
            .unwrap();
    }
    let o = w
        .command(&["plan"])
        .env("MESH_STATE_LEASE_SECONDS", "3")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "taken over: {}", text(&o));
    assert!(text(&o).contains("locked"), "{}", text(&o));
    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    w.assert_clean();
}

// 1. A holder stopped past its Lease (SIGSTOP) loses it to another apply;
// continued (SIGCONT), it starts no new step, writes nothing, and says so.
#[test]
fn a_holder_stopped_past_its_lease_starts_nothing_when_continued() {
    let w = World::new(&team_mesh("mesh1"), CONTEXTS);
    let first = holding(&w, "mesh1", "600", "2");
    signal(&first, libc::SIGSTOP);
    // The other apply takes the Lease once it has seen it unchanged for
    // its 2 s, and finishes the mesh.
    let o = w
        .command(&["apply", "--auto-approve", "--lock-timeout", "60s"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "600")
        .env("MESH_STATE_LEASE_SECONDS", "2")
        .output()
        .unwrap();
    let second = text(&o);
    assert!(o.status.success(), "{second}");
    let runs_before = w.istioctl_log().len();
    let state_before = w.ok(&["state", "pull"]);
    signal(&first, libc::SIGCONT);
    let o = first.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("no longer holds the lock of the state"),
        "it should say it lost the lock: {out}"
    );
    assert_eq!(
        w.istioctl_log().len(),
        runs_before,
        "the stopped apply ran istioctl after it lost the lock: {out}"
    );
    assert_eq!(w.ok(&["state", "pull"]), state_before, "it wrote the state");
    assert_no_step_ran_twice_at_once(&w);
    w.assert_clean();
}

// 1. force-unlock never frees the lock of a holder that still renews it.
#[test]
fn force_unlock_refuses_a_live_holder() {
    let w = World::new(&team_mesh("mesh1"), CONTEXTS);
    let first = holding(&w, "mesh1", "1500", "3");
    let id = lease(&w, "mesh1").unwrap()["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    let o = w.mesh(&["force-unlock", "--force", &id]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(lease(&w, "mesh1").is_some(), "the Lease was deleted");
    let o = first.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_no_step_ran_twice_at_once(&w);
}

/// Deletes the state's Lease as `kubectl delete lease` would.
fn delete_lease(w: &World, name: &str) {
    let c1 = w.cluster("kind-cluster1");
    let mut store = c1.store();
    let rt = store
        .find_type("coordination.k8s.io", "v1", "leases")
        .unwrap();
    store
        .delete(&rt, "default", &format!("{name}-lock"))
        .unwrap();
}

// 1. A Lease deleted by hand during an apply never lets a second apply run
// beside the first's running steps: the delete only marks it (mesh's
// finalizer), the first apply starts nothing more, records what ran and
// releases it, and only then does the second take the lock and finish.
#[test]
fn a_lease_deleted_by_hand_frees_the_lock_only_after_the_running_steps() {
    let w = World::new(&team_mesh("mesh1"), CONTEXTS);
    let first = holding(&w, "mesh1", "800", "3");
    // Until a first install is done (the next ones are running then).
    let t0 = std::time::Instant::now();
    while w.istioctl_log().is_empty() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "no step ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    delete_lease(&w, "mesh1");
    let marked = lease(&w, "mesh1").expect("a hand delete removed the held Lease at once");
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    let second = w
        .command(&["apply", "--auto-approve", "--lock-timeout", "60s"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "800")
        .env("MESH_STATE_LEASE_SECONDS", "3")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let o = first.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("was deleted") && out.contains("No further step starts"),
        "it should say why it stopped: {out}"
    );
    let o = second.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_no_step_ran_twice_at_once(&w);
    assert!(lease(&w, "mesh1").is_none(), "the Lease was left behind");
    w.assert_clean();
}

// 1. A holder killed after its Lease was deleted by hand: the marked Lease
// frees itself once seen unchanged for its duration.
#[test]
fn a_marked_lease_of_a_killed_holder_frees_itself() {
    let w = World::new(&team_mesh("mesh1"), CONTEXTS);
    let mut first = holding(&w, "mesh1", "800", "2");
    delete_lease(&w, "mesh1");
    first.kill().unwrap();
    let _ = first.wait();
    assert!(
        lease(&w, "mesh1").is_some(),
        "the finalizer did not keep it"
    );
    let o = w
        .command(&["apply", "--auto-approve", "--lock-timeout", "60s"])
        .env("MESH_STATE_LEASE_SECONDS", "2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(lease(&w, "mesh1").is_none(), "the Lease was left behind");
    w.assert_clean();
}

// The soak: bounded rounds of SIGSTOP/SIGCONT, and of the Lease deleted by
// hand, at points of an apply (`MESH_SOAK_ROUNDS`, 2 by default): no step ever runs in two processes
// at once, and the state converges.
#[test]
fn soak_stopped_and_continued_holders_never_run_a_step_twice() {
    let rounds: u64 = std::env::var("MESH_SOAK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    for round in 0..rounds {
        let w = World::new(&team_mesh("mesh1"), CONTEXTS);
        let first = holding(&w, "mesh1", "400", "2");
        // A point of the apply: 0 to 1.2 s after it took the Lease.
        let at = (round * 397 + 113) % 1200;
        std::thread::sleep(std::time::Duration::from_millis(at));
        // Odd rounds delete the Lease by hand instead of stopping its holder.
        let deleted = round % 2 == 1;
        if deleted {
            delete_lease(&w, "mesh1");
        } else {
            signal(&first, libc::SIGSTOP);
        }
        let o = w
            .command(&["apply", "--auto-approve", "--lock-timeout", "60s"])
            .env("KUBESIM_ISTIOCTL_DELAY_MS", "400")
            .env("MESH_STATE_LEASE_SECONDS", "2")
            .output()
            .unwrap();
        if !deleted {
            signal(&first, libc::SIGCONT);
        }
        let a = first.wait_with_output().unwrap();
        assert!(
            o.status.success() || a.status.success(),
            "round {round} ({at} ms): neither finished:\n{}\n{}",
            text(&o),
            text(&a)
        );
        assert_no_step_ran_twice_at_once(&w);
        w.ok(&["apply", "--auto-approve"]);
        w.assert_clean();
    }
}

// Day two, "no mesh over a mesh": on the Kubernetes backend the state's
// Secret is named after the state, so a changed mesh ID finds an empty
// state rather than another mesh's. The live control plane refuses it.
#[test]
fn a_mesh_id_change_on_the_kubernetes_backend_installs_nothing_over_the_first_mesh() {
    let w = World::new(&team_mesh("mesh1"), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let runs = w.istioctl_log().len();
    w.write_mesh(&team_mesh("mesh2").replace("id = \"mesh1\"", "id = \"mesh2\""));
    for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let o = w.mesh(args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(
            t.contains("cluster `cluster1` already runs a control plane the state does not record")
                && t.contains("of meshID `mesh1`")
                && t.contains("`mesh import`"),
            "{args:?}: {t}"
        );
    }
    assert_eq!(
        w.istioctl_log().len(),
        runs,
        "istioctl ran over the first mesh"
    );
    // The first mesh's own state still plans clean.
    w.write_mesh(&team_mesh("mesh1"));
    ok(&w.mesh(&["plan", "--detailed-exitcode"]));
}
