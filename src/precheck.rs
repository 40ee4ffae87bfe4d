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
/// injector). Empty when none is, or the plan removes no revision.
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
        let Ok(conn) = world.env.clusters.connect(target).await else {
            continue;
        };
        for rev in &revisions {
            let labelled = providers::k8s::list_labelled(
                &conn,
                &[("v1", "Namespace")],
                "",
                &format!("istio.io/rev={rev}"),
            )
            .await
            .unwrap_or_default();
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
