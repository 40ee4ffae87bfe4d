//! Terraform's verbs, as mesh has them, end to end against simulated
//! clusters (kubesim): `--replace`, `--target`, `--refresh-only`,
//! `state rm`, and a step that never reached its cluster.

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, Patch, PatchParams};
use kubesim::Faults;
use serde_json::Value;
use std::process::Output;

use crate::support::{self, World, text};

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const THIRD: &str = "\n[[cluster]]\nname = \"cluster3\"\ncontext = \"kind-cluster3\"\nnetwork = \"network1\"\nrole = \"remote\"\nprimary = \"cluster1\"\n";
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2", "kind-cluster3"];

fn state(w: &World) -> state::State {
    state::read_unlocked(&w.state_path())
        .unwrap()
        .expect("a state")
}

/// The output of a run that must have failed with exit code 1.
fn failed(o: &Output) -> String {
    let t = text(o);
    assert_eq!(o.status.code(), Some(1), "mesh should have failed:\n{t}");
    t
}

fn secret(w: &World, context: &str, name: &str) -> Option<Secret> {
    let api: Api<Secret> = Api::namespaced(w.client(context), "istio-system");
    w.rt.block_on(api.get_opt(name)).unwrap()
}

/// The requests a cluster saw that could have changed something.
fn writes(w: &World, context: &str) -> Vec<String> {
    w.cluster(context)
        .requests()
        .into_iter()
        .filter(|r| {
            matches!(
                r.verb.as_str(),
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn contexts_of_istioctl_runs(w: &World) -> Vec<String> {
    w.istioctl_log()
        .iter()
        .map(|inv| {
            let argv: Vec<&str> = inv["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            argv.iter()
                .position(|a| *a == "--context")
                .map(|i| argv[i + 1].to_string())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn replace_runs_an_unchanged_step_again() {
    let w = World::new(SEED, CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();

    let plan = w.ok(&["plan", "--replace", "cluster2/install-remote"]);
    assert!(
        plan.contains("~ cluster2/install-remote (update)\n    reason: replaced by --replace\n"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to create, 1 to update, 0 to delete."),
        "{plan}"
    );
    let json: Value = serde_json::from_str(&w.ok(&[
        "plan",
        "--replace",
        "cluster2/install-remote",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        json["replace"],
        serde_json::json!(["cluster2/install-remote"])
    );

    let runs = contexts_of_istioctl_runs(&w).len();
    let out = w.ok(&[
        "apply",
        "--auto-approve",
        "--replace",
        "cluster2/install-remote",
    ]);
    assert!(out.contains("0 created, 1 updated, 0 destroyed"), "{out}");
    let contexts = contexts_of_istioctl_runs(&w);
    assert_eq!(
        contexts[runs..],
        ["kind-cluster2".to_string()],
        "only the replaced install ran again"
    );
    w.assert_clean();
    // So does a saved plan.
    w.ok(&[
        "plan",
        "--replace",
        "cluster2/attach",
        "--out",
        "replace.plan",
    ]);
    let out = w.ok(&["apply", "replace.plan"]);
    assert!(out.contains("0 created, 1 updated, 0 destroyed"), "{out}");
    w.assert_clean();

    // A misspelt or partial step ID is refused before any cluster is read,
    // naming the steps it may have meant.
    let t = failed(&w.mesh(&["plan", "--replace", "cluster2/instal-remote"]));
    assert!(
        t.contains("no step `cluster2/instal-remote`")
            && t.contains("Did you mean `cluster2/install-remote`?"),
        "{t}"
    );
    let t = failed(&w.mesh(&["apply", "--auto-approve", "--replace", "install-remote"]));
    assert!(t.contains("`cluster2/install-remote`"), "{t}");
    let t = failed(&w.mesh(&["plan", "--replace", "cluster2"]));
    assert!(
        t.contains("`cluster2` is a cluster") && t.contains("cluster2/attach"),
        "{t}"
    );
}

#[test]
fn target_plans_and_applies_only_a_cluster_and_what_it_depends_on() {
    let w = World::new(&format!("{SEED}{THIRD}"), CONTEXTS);
    let plan = w.ok(&["plan", "--target", "cluster2"]);
    for warned in [
        "Warning: targeting is in effect (--target cluster2)",
        "may not be complete",
        "not for routine use",
    ] {
        assert!(plan.contains(warned), "{warned}: {plan}");
    }
    // cluster2's steps, and cluster1's that they need; none of cluster3's.
    assert!(
        plan.contains("Plan: 7 to create, 0 to update, 0 to delete."),
        "{plan}"
    );
    assert!(plan.contains("+ cluster2/attach (create)"), "{plan}");
    assert!(
        plan.contains("+ cluster1/install-control-plane (create)"),
        "{plan}"
    );
    assert!(!plan.contains("cluster3/"), "{plan}");
    let md = w.ok(&["plan", "--target", "cluster2", "--format", "markdown"]);
    assert!(
        md.contains("> **Warning:** targeting is in effect") && md.contains("not for routine use"),
        "{md}"
    );
    let json: Value =
        serde_json::from_str(&w.ok(&["plan", "--target", "cluster2", "--format", "json"])).unwrap();
    assert_eq!(json["targets"], serde_json::json!(["cluster2"]));
    assert!(
        json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("targeting is in effect"),
        "{json}"
    );
    assert_eq!(json["summary"]["create"], 7);

    // A saved plan keeps its targets: applying it applies only them.
    w.ok(&["plan", "--target", "cluster2", "--out", "cluster2.plan"]);
    let o = w.mesh(&["apply", "cluster2.plan", "--target", "cluster3"]);
    assert!(
        !o.status.success() && text(&o).contains("cannot be used with"),
        "{}",
        text(&o)
    );
    let out = w.ok(&["apply", "cluster2.plan"]);
    assert!(out.contains("Apply complete: 7 created"), "{out}");
    assert!(out.contains("targeting was in effect"), "{out}");
    let st = state(&w);
    assert!(st.steps.contains_key("cluster2/attach"));
    assert!(
        !st.steps.keys().any(|k| k.starts_with("cluster3/")),
        "{st:?}"
    );
    let plan = w.ok(&["plan"]);
    assert!(
        plan.contains("Plan: 3 to create, 0 to update, 0 to delete."),
        "{plan}"
    );
    w.ok(&["apply", "--auto-approve"]);

    // Deletes are targeted too: a step's delete brings the deletes of the
    // steps that depend on it (they go first), and nothing else.
    w.write_mesh(SEED);
    let plan = w.ok(&["plan", "--target", "cluster3/install-remote"]);
    assert!(
        plan.contains("Plan: 0 to create, 0 to update, 2 to delete."),
        "{plan}"
    );
    assert!(
        plan.contains("- cluster3/attach (delete)")
            && plan.contains("- cluster3/install-remote (delete)")
            && !plan.contains("cluster3/prepare-namespace"),
        "{plan}"
    );
    w.ok(&["apply", "--auto-approve", "--target", "cluster3/attach"]);
    assert!(secret(&w, "kind-cluster1", "istio-remote-secret-cluster3").is_none());
    let st = state(&w);
    assert!(!st.steps.contains_key("cluster3/attach"));
    assert!(st.steps.contains_key("cluster3/install-remote"));

    let t = failed(&w.mesh(&["plan", "--target", "cluster33"]));
    assert!(
        t.contains("no cluster or step `cluster33`") && t.contains("`cluster3`"),
        "{t}"
    );
}

#[test]
fn refresh_only_records_what_the_clusters_are_and_changes_nothing() {
    let w = World::new(SEED, CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let before = state(&w);
    let old = before.steps["cluster1/eastwest-address"].outputs["address"]
        .as_str()
        .unwrap()
        .to_string();
    // The load balancer moves the gateway; someone deletes the remote secret.
    let services: Api<Service> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    w.rt.block_on(services.patch_status(
        "istio-eastwestgateway",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "172.18.9.9"}]}}}),
        ),
    ))
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    w.rt.block_on(secrets.delete("istio-remote-secret-cluster2", &Default::default()))
        .unwrap();

    let plan = w.ok(&["plan", "--refresh-only"]);
    assert!(
        plan.contains(&format!(
            "~ cluster1/eastwest-address (record)\n    found: load-balancer address changed from {old} to 172.18.9.9\n    would record: outputs address = 172.18.9.9\n"
        )),
        "{plan}"
    );
    assert!(
        plan.contains("~ cluster2/attach (record)\n    found: Secret istio-system/istio-remote-secret-cluster2 missing\n    would record: tainted"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "Refresh-only plan: 2 steps to record in the state; nothing in any cluster changes."
        ),
        "{plan}"
    );
    let o = w.mesh(&["plan", "--refresh-only", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let json: Value =
        serde_json::from_str(&w.ok(&["plan", "--refresh-only", "--format", "json"])).unwrap();
    assert_eq!(json["refresh_only"], true);
    assert_eq!(json["summary"]["update"], 0, "{json}");
    assert_eq!(json["drift"][0]["step"], "cluster1/eastwest-address");
    assert_eq!(json["drift"][0]["outputs"]["address"], "172.18.9.9");
    assert_eq!(json["drift"][0]["status"], "applied");
    assert_eq!(json["drift"][1]["step"], "cluster2/attach");
    assert_eq!(json["drift"][1]["status"], "tainted");
    let md = w.ok(&["plan", "--refresh-only", "--format", "markdown"]);
    assert!(md.contains("| `cluster2/attach` |"), "{md}");

    for c in ["kind-cluster1", "kind-cluster2"] {
        w.cluster(c).clear_requests();
    }
    let runs = w.istioctl_log().len();
    let out = w.ok(&["apply", "--refresh-only", "--auto-approve"]);
    assert!(
        out.contains("2 steps recorded in the state") && out.contains("nothing in any cluster"),
        "{out}"
    );
    for c in ["kind-cluster1", "kind-cluster2"] {
        assert_eq!(writes(&w, c), Vec::<String>::new(), "{c} was changed");
    }
    assert_eq!(w.istioctl_log().len(), runs, "istioctl ran");
    assert!(secret(&w, "kind-cluster1", "istio-remote-secret-cluster2").is_none());
    let after = state(&w);
    assert_eq!(after.serial, before.serial + 1);
    let address = &after.steps["cluster1/eastwest-address"];
    assert_eq!(address.outputs["address"], "172.18.9.9");
    assert_eq!(address.status, state::Status::Applied);
    assert_eq!(
        after.steps["cluster2/attach"].status,
        state::Status::Tainted
    );
    for (id, rec) in &after.steps {
        if id != "cluster1/eastwest-address" && id != "cluster2/attach" {
            assert_eq!(rec, &before.steps[id], "{id} changed");
        }
    }
    let out = w.ok(&["plan", "--refresh-only"]);
    assert!(
        out.contains("No changes. The state matches the clusters"),
        "{out}"
    );

    // What was recorded is what the next plan starts from, even without a
    // refresh: the new address flows into the remote's install, and the
    // tainted remote secret is written again.
    let plan = w.ok(&["plan", "--no-refresh"]);
    assert!(
        plan.contains("~ cluster2/install-remote (update)")
            && plan.contains("+      remotePilotAddress: \"172.18.9.9\""),
        "{plan}"
    );
    assert!(
        plan.contains("~ cluster2/attach (update)\n    reason: tainted"),
        "{plan}"
    );
    w.ok(&["apply", "--auto-approve"]);
    assert!(secret(&w, "kind-cluster1", "istio-remote-secret-cluster2").is_some());
    w.assert_clean();

    // A saved refresh-only plan records what it showed, without asking again.
    w.rt.block_on(services.patch_status(
        "istio-eastwestgateway",
        &PatchParams::default(),
        &Patch::Merge(
            serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "172.18.9.10"}]}}}),
        ),
    ))
    .unwrap();
    w.ok(&["plan", "--refresh-only", "--out", "refresh.plan"]);
    let out = w.ok(&["apply", "refresh.plan"]);
    assert!(out.contains("1 step recorded in the state"), "{out}");
    assert_eq!(
        state(&w).steps["cluster1/eastwest-address"].outputs["address"],
        "172.18.9.10"
    );
}

#[test]
fn state_rm_forgets_steps_under_the_lock_without_touching_a_cluster() {
    let w = World::new(SEED, CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let before = state(&w);
    for c in ["kind-cluster1", "kind-cluster2"] {
        w.cluster(c).clear_requests();
    }

    // Unknown names are refused, with what they may have meant; nothing is written.
    let t = failed(&w.mesh(&["state", "rm", "cluster2/atach"]));
    assert!(
        t.contains("`cluster2/atach` is not a recorded step or cluster")
            && t.contains("`cluster2/attach`")
            && t.contains("nothing was removed"),
        "{t}"
    );
    assert_eq!(state(&w), before);

    // Refused while another command holds the lock.
    {
        let backend = state::LocalBackend::new(w.state_path());
        let _held = backend.lock("apply", std::time::Duration::ZERO).unwrap();
        let t = failed(&w.mesh(&["state", "rm", "cluster2/attach"]));
        assert!(t.contains("locked"), "{t}");
    }
    assert_eq!(state(&w), before);

    let o = w.mesh(&["state", "rm", "cluster2/attach"]);
    let out = support::succeeded(&o);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Removed cluster2/attach\n"
    );
    let backup = w.path("sandbox/mesh.state.json.backup");
    assert!(
        out.contains("Nothing in any cluster was changed")
            && out.contains("mesh import")
            && out.contains(&format!(
                "mesh state push --force {}",
                "sandbox/mesh.state.json.backup"
            )),
        "{out}"
    );
    let after = state(&w);
    assert!(!after.steps.contains_key("cluster2/attach"));
    assert_eq!(after.steps.len(), before.steps.len() - 1);
    assert_eq!(after.serial, before.serial + 1);
    let kept = state::read_unlocked(&backup).unwrap().unwrap();
    assert!(kept.steps.contains_key("cluster2/attach"));
    for c in ["kind-cluster1", "kind-cluster2"] {
        assert!(w.cluster(c).requests().is_empty(), "{c} was contacted");
    }
    assert!(secret(&w, "kind-cluster1", "istio-remote-secret-cluster2").is_some());
    let plan = w.ok(&["plan"]);
    assert!(plan.contains("+ cluster2/attach (create)"), "{plan}");

    // The backup brings it back.
    w.ok(&["state", "push", "--force", "sandbox/mesh.state.json.backup"]);
    w.assert_clean();

    // A cluster name forgets all of its steps.
    let o = w.mesh(&["state", "rm", "cluster2"]);
    support::succeeded(&o);
    let removed = String::from_utf8_lossy(&o.stdout).lines().count();
    assert_eq!(removed, 3, "{}", text(&o));
    assert!(!state(&w).steps.keys().any(|k| k.starts_with("cluster2/")));
}

#[test]
fn a_step_that_never_reached_its_cluster_leaves_no_record_and_destroy_completes() {
    let w = World::new(SEED, CONTEXTS);
    // cluster2's API server is down from the start: the preflight stops
    // the apply before any step, so nothing is recorded, tainted or not.
    w.cluster("kind-cluster2").set_faults(Faults {
        refuse_connections: true,
        ..Default::default()
    });
    let t = failed(&w.mesh(&["apply", "--auto-approve"]));
    assert!(
        t.contains("the preflight checks failed, so nothing was changed")
            && t.contains("cluster `cluster2`"),
        "{t}"
    );
    assert!(
        std::fs::metadata(w.state_path()).is_err() || state(&w).steps.is_empty(),
        "steps were recorded"
    );
    // With cluster2 still down, destroy has nothing to undo and ends.
    let out = w.ok(&["destroy", "--auto-approve"]);
    assert!(out.contains("Nothing to destroy"), "{out}");
}

#[test]
fn destroy_of_an_unreachable_cluster_keeps_its_records_and_says_how_to_forget_them() {
    let w = World::new(SEED, CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    w.cluster("kind-cluster2").set_faults(Faults {
        refuse_connections: true,
        ..Default::default()
    });
    let t = failed(&w.mesh(&["destroy", "--auto-approve"]));
    assert!(
        t.contains("the preflight checks failed, so nothing was changed")
            && t.contains("`mesh state rm CLUSTER`"),
        "{t}"
    );
    // Nothing was sent to cluster2, so its records still say applied.
    let st = state(&w);
    for id in ["cluster2/prepare-namespace", "cluster2/install-remote"] {
        assert_eq!(st.steps[id].status, state::Status::Applied, "{id}");
    }
    // The cluster is gone for good: forget it, and destroy the rest.
    w.ok(&["state", "rm", "cluster2"]);
    let out = w.ok(&["destroy", "--auto-approve"]);
    assert!(out.contains("Destroy complete"), "{out}");
    assert!(state(&w).steps.is_empty());
}
