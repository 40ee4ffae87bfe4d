//! Regression tests for issue "Hardening II" (fencing, tamper-proof saved
//! plans, state writes before steps, objects mesh does not own), each
//! failing without its fix. On kubesim, the project's simulator.

use serde_json::Value;

const SEED: &str = include_str!("../examples/primary-remote.toml");
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];

mod support;
use support::{World, succeeded as ok, text};

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
