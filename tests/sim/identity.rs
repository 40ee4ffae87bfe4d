//! Cluster identity: each cluster's kube-system UID, recorded when mesh
//! first reaches it, tells a context renamed for the same cluster (no
//! change) from one that now reaches another cluster (a move, refused)
//! and from a cluster renamed in the mesh file (a warning).

use crate::support::{World, golden, text};

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const THREE: &[&str] = &["kind-cluster1", "kind-cluster2", "kind-cluster3"];

fn with_context(cluster: &str, context: &str) -> String {
    SEED.replace(
        &format!("context = \"kind-{cluster}\""),
        &format!("context = \"{context}\""),
    )
}

/// `out` with what differs from run to run (the simulated clusters' UIDs
/// and ports) masked, for a golden.
fn masked(w: &World, out: &str) -> String {
    let mut out = out.to_string();
    for ctx in THREE {
        out = out.replace(&uid(w, ctx)[..8], &format!("<uid of {ctx}>"));
        let port = w.cluster(ctx).port;
        out = out.replace(&format!("127.0.0.1:{port}"), &format!("<{ctx}'s server>"));
    }
    out
}

fn uid(w: &World, context: &str) -> String {
    w.get(context, "", "namespaces", "", "kube-system").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn an_apply_records_each_clusters_identity() {
    let w = World::new(SEED, THREE);
    w.ok(&["apply", "--auto-approve"]);
    let state = w.state_json();
    for (c, ctx) in [("cluster1", "kind-cluster1"), ("cluster2", "kind-cluster2")] {
        assert_eq!(state["clusters"][c]["uid"], uid(&w, ctx), "{state}");
        assert_eq!(state["clusters"][c]["context"], ctx);
    }
}

#[test]
fn a_context_renamed_for_the_same_cluster_changes_nothing_and_is_recorded() {
    let mut w = World::new(SEED, THREE);
    w.ok(&["apply", "--auto-approve"]);
    w.alias("alias", "kind-cluster2");
    w.write_mesh(&with_context("cluster2", "alias"));
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    let plan = text(&o);
    assert_eq!(o.status.code(), Some(0), "{plan}");
    assert!(
        plan.contains("cluster2 is reached through context `alias` now (`kind-cluster2` before): the same cluster"),
        "{plan}"
    );
    let istioctl_runs = w.istioctl_log().len();
    let out = w.ok(&["apply", "--auto-approve"]);
    assert_eq!(
        w.istioctl_log().len(),
        istioctl_runs,
        "something ran again: {out}"
    );
    let state = w.state_json();
    assert_eq!(state["clusters"]["cluster2"]["context"], "alias");
    assert_eq!(
        state["steps"]["cluster2/install-remote"]["context"],
        "alias"
    );
    assert_eq!(
        state["steps"]["cluster2/attach"]["outputs"]["token_context"],
        "alias"
    );
    // Recorded: the next plan has no note, and destroy reaches it.
    let plan = w.ok(&["plan"]);
    assert!(!plan.contains("reached through context"), "{plan}");
    w.assert_clean();
}

#[test]
fn a_context_that_now_reaches_another_cluster_is_refused() {
    let w = World::new(SEED, THREE);
    w.ok(&["apply", "--auto-approve"]);
    w.write_mesh(&with_context("cluster2", "kind-cluster3"));
    let o = w.mesh(&["plan", "--format", "markdown"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    golden(
        "context-move-refused.md",
        &masked(&w, &String::from_utf8_lossy(&o.stdout)),
    );
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cluster2: context `kind-cluster3` reaches another cluster"),
        "{}",
        text(&o)
    );
    assert!(!w.exists("kind-cluster3", "", "namespaces", "", "istio-system"));
    // What it says to do: remove cluster2 and apply, then add it back.
    let without = SEED[..SEED.rfind("[[cluster]]").unwrap()].to_string();
    w.write_mesh(&without);
    w.ok(&["apply", "--auto-approve"]);
    assert!(!w.exists("kind-cluster2", "", "namespaces", "", "istio-system"));
    w.write_mesh(&with_context("cluster2", "kind-cluster3"));
    w.ok(&["apply", "--auto-approve"]);
    assert!(w.exists("kind-cluster3", "", "namespaces", "", "istio-system"));
    w.assert_clean();
}

#[test]
fn a_state_from_before_identities_compares_through_the_old_context() {
    let mut w = World::new(SEED, THREE);
    w.ok(&["apply", "--auto-approve"]);
    // As an older mesh wrote it: no `clusters`.
    let mut state = w.state_json();
    state.as_object_mut().unwrap().remove("clusters");
    std::fs::write(w.state_path(), serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    w.write_mesh(&with_context("cluster2", "kind-cluster3"));
    let o = w.mesh(&["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("reaches another cluster"), "{}", text(&o));
    w.alias("alias", "kind-cluster2");
    w.write_mesh(&with_context("cluster2", "alias"));
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_cluster_renamed_on_the_same_api_server_is_shown_with_a_warning() {
    let w = World::new(SEED, THREE);
    w.ok(&["apply", "--auto-approve"]);
    w.write_mesh(&SEED.replace("name = \"cluster2\"", "name = \"east\""));
    let o = w.mesh(&["plan", "--format", "markdown"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(plan.contains("east is the cluster cluster2 was"), "{plan}");
    golden("cluster-rename-warning.md", &masked(&w, &plan));
}
