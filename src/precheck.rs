//! What only the clusters can say about a plan, before it is shown or
//! run: `istioctl x precheck` before an in-place upgrade (Istio's own
//! check of what the new version needs, run with the new istioctl; its
//! findings are notes, Istio says what to do about each), namespaces still
//! on a revision the plan uninstalls, and a control plane the plan would
//! install over one the state does not record (both refusals).

use crate::world::World;
use engine::topology::StepGraph;
use plans::Plan;

/// One note per finding (or one saying there was none), per cluster.
pub async fn notes(world: &World, plan: &Plan, graph: &StepGraph) -> Vec<String> {
    let mut notes = Vec::new();
    for change in engine::upgrades::in_place(plan) {
        let Some(step) = graph.get(&change.step) else {
            continue;
        };
        let found = world
            .env
            .istioctl
            .precheck(&step.target, world.default_kubeconfig().as_ref())
            .await;
        let c = &change.cluster;
        match found {
            Ok(f) if f.is_empty() => notes.push(format!("`istioctl x precheck` on {c}: no issues")),
            Ok(f) => notes.extend(
                f.iter()
                    .map(|finding| format!("`istioctl x precheck` on {c}: {finding}")),
            ),
            Err(e) => notes.push(format!("`istioctl x precheck` on {c} could not run: {e}")),
        }
    }
    notes
}

/// Why a kept revision this plan uninstalls is still in use, in any
/// cluster (`providers::revision_use`: a namespace or a workload's pod
/// template labelled `istio.io/rev=<it>`, a tag pointing at it). Empty when none is, or the plan removes no revision. A
/// cluster that cannot be reached or listed is a refusal too: a safety
/// check that cannot look never passes by default.
pub async fn revisions_in_use(world: &World, plan: &Plan, graph: &StepGraph) -> Vec<String> {
    let removed = engine::upgrades::removed_revisions(plan);
    if removed.is_empty() {
        return Vec::new();
    }
    // Each cluster of the mesh once, by the target its steps act on.
    let targets = engine::topology::cluster_targets(graph);
    let mut out = Vec::new();
    let mut revisions: Vec<&str> = removed.iter().map(|(_, r)| r.as_str()).collect();
    revisions.sort();
    revisions.dedup();
    for target in targets {
        let conn = match world.env.clusters.connect(target).await {
            Ok(conn) => conn,
            Err(e) => {
                out.push(unreadable(target, &revisions, &e));
                continue;
            }
        };
        for (i, rev) in revisions.iter().enumerate() {
            match providers::revision_use::of(&conn, rev).await {
                Ok(uses) => out.extend(uses.iter().map(|u| {
                    providers::revision_use::refusal(u, &target.cluster, &target.context, rev)
                })),
                Err(e) => {
                    // This cluster's other revisions would fail alike.
                    out.push(unreadable(target, &revisions[i..], &e));
                    break;
                }
            }
        }
    }
    out
}

/// The refusal for a cluster whose namespaces could not be listed: which
/// revisions it may still use, why it could not be read, what to do.
fn unreadable(
    target: &providers::Target,
    revisions: &[&str],
    why: &providers::cluster::ClusterError,
) -> String {
    let c = &target.cluster;
    let labels = revisions
        .iter()
        .map(|r| format!("`istio.io/rev={r}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let revs = revisions
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "cannot tell whether a namespace in {c} is still labelled {labels} (or a workload's \
         pod template, or a tag), and this plan uninstalls revision {revs}: {why}. Fix access to {c} and run again; if {c} is gone \
         for good, remove it from the mesh file and forget its steps with `mesh state rm {c}`"
    )
}

/// Why a control plane this plan creates would go over one already
/// running: a live istiod (any revision) in a cluster the state records
/// nothing of (a state lost, another mesh's, one installed by hand). One
/// refusal per cluster, naming each istiod and the meshID it was installed
/// with, pointing at `mesh import`. A cluster that cannot be read is left
/// to preflight, which has refused the plan already.
pub async fn untracked_control_planes(
    world: &World,
    plan: &Plan,
    graph: &StepGraph,
    state: Option<&state::State>,
) -> Vec<String> {
    let ns = providers::istio::NAMESPACE;
    let mut out = Vec::new();
    for change in engine::upgrades::new_control_planes(plan, state) {
        let Some(step) = graph.get(&change.step) else {
            continue;
        };
        let Ok(conn) = world.env.clusters.connect(&step.target).await else {
            continue;
        };
        let Ok(listed) =
            providers::k8s::list_labelled(&conn, &[("apps/v1", "Deployment")], ns, "").await
        else {
            continue;
        };
        let mut found = Vec::new();
        for d in &listed {
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            if !providers::istio::is_istiod(name) {
                continue;
            }
            let mesh_id = installed_mesh_id(&conn, name).await;
            found.push(match mesh_id {
                Some(id) => format!("Deployment {ns}/{name} of meshID `{id}`"),
                None => format!("Deployment {ns}/{name}"),
            });
        }
        if !found.is_empty() {
            out.push(format!(
                "cluster `{}` already runs a control plane the state does not record ({}): this \
                 plan would install another over it. If this mesh installed it and its state was \
                 lost, or it was installed by hand, `mesh import` records it, then plan again; if \
                 it is another mesh's, plan with that mesh's state (--state, or [state] name)",
                change.cluster,
                found.join(", ")
            ));
        }
    }
    out
}

/// The meshID the istiod Deployment `name` was installed with, from the
/// values istioctl and Helm leave beside it (ConfigMap `values[-<rev>]`).
async fn installed_mesh_id(conn: &providers::cluster::Connection, istiod: &str) -> Option<String> {
    let values = istiod.replacen("istiod", "values", 1);
    let doc = providers::k8s::object(
        "v1",
        "ConfigMap",
        Some(providers::istio::NAMESPACE),
        &values,
    );
    let live = providers::k8s::get(conn, &doc).await.ok()??;
    let merged: serde_json::Value =
        serde_json::from_str(live.data.pointer("/data/merged-values")?.as_str()?).ok()?;
    merged.pointer("/global/meshID")?.as_str().map(String::from)
}
