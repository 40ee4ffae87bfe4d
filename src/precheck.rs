//! `istioctl x precheck` before an in-place upgrade: Istio's own check of
//! what the new version needs (Kubernetes version, permissions, Gateway
//! API CRDs), run on each control plane the plan upgrades in place, with
//! the new istioctl. Its findings are shown in the plan as notes; they do
//! not stop it (Istio says what to do about each).

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

/// Why a kept revision this plan uninstalls is still in use: a namespace
/// of any cluster labelled `istio.io/rev=<it>` (its new pods would find no
/// injector). Empty when none is, or the plan removes no revision. A
/// cluster that cannot be reached or listed is a refusal too: a safety
/// check that cannot look never passes by default.
pub async fn revisions_in_use(world: &World, plan: &Plan, graph: &StepGraph) -> Vec<String> {
    let removed = engine::upgrades::removed_revisions(plan);
    if removed.is_empty() {
        return Vec::new();
    }
    // Each cluster of the mesh once, by the target its steps act on.
    let mut targets: Vec<&providers::Target> = Vec::new();
    for step in graph.in_order() {
        if step.target.cluster == step.cluster && !targets.iter().any(|t| t.cluster == step.cluster)
        {
            targets.push(&step.target);
        }
    }
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
            let labelled = match providers::k8s::list_labelled(
                &conn,
                &[("v1", "Namespace")],
                "",
                &format!("istio.io/rev={rev}"),
            )
            .await
            {
                Ok(labelled) => labelled,
                Err(e) => {
                    // This cluster's other revisions would fail alike.
                    out.push(unreadable(target, &revisions[i..], &e));
                    break;
                }
            };
            for ns in labelled {
                let name = ns["metadata"]["name"].as_str().unwrap_or_default();
                out.push(format!(
                    "namespace `{}` in {} is labelled `istio.io/rev={rev}`, and this plan \
                     uninstalls revision `{rev}`: relabel it first (`kubectl --context {} label \
                     namespace {} istio.io/rev=<new revision or tag> --overwrite`), or keep `{rev}` \
                     in [[mesh.keep_revision]]",
                    providers::rendered::shown(name),
                    target.cluster,
                    target.context,
                    providers::rendered::shown(name),
                ));
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
        "cannot tell whether a namespace in {c} is still labelled {labels}, and this plan \
         uninstalls revision {revs}: {why}. Fix access to {c} and run again; if {c} is gone \
         for good, remove it from the mesh file and forget its steps with `mesh state rm {c}`"
    )
}
