//! What only the clusters can say about a plan, before it is shown or
//! run: `istioctl x precheck` before an in-place upgrade (Istio's own
//! check of what the new version needs, run with the new istioctl; its
//! findings are notes, Istio says what to do about each), namespaces still
//! on a revision the plan uninstalls, and a control plane the plan would
//! install over one the state does not record (both refusals).

use crate::world::World;
use engine::topology::StepGraph;
use plans::Plan;
use providers::istio::TAG_LABEL;

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
            match tags_on(&conn, rev).await {
                Ok(tags) => out.extend(
                    tags.iter()
                        .map(|(tag, webhook)| tag_in_use(target, tag, webhook, rev)),
                ),
                Err(e) => {
                    out.push(unreadable(target, &revisions[i..], &e));
                    break;
                }
            }
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

/// Every revision tag of a cluster that points at `rev`, as Istio keeps
/// them (mesh's own `[tags]`, the installer's `default`, ones made by hand
/// with `istioctl tag set`): `(tag, webhook)` of each
/// MutatingWebhookConfiguration labelled `istio.io/tag` and
/// `istio.io/rev=<rev>`.
async fn tags_on(
    conn: &providers::cluster::Connection,
    rev: &str,
) -> Result<Vec<(String, String)>, providers::cluster::ClusterError> {
    let listed = providers::k8s::list_labelled(
        conn,
        &[(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
        )],
        "",
        &format!("{TAG_LABEL},{}={rev}", providers::istio::REVISION_LABEL),
    )
    .await?;
    Ok(listed
        .iter()
        .map(|w| {
            let tag = w["metadata"]["labels"][TAG_LABEL]
                .as_str()
                .unwrap_or_default();
            let name = w["metadata"]["name"].as_str().unwrap_or_default();
            (tag.to_string(), name.to_string())
        })
        .collect())
}

/// The refusal for a tag that still points at a revision the plan
/// uninstalls: `istioctl uninstall --revision` deletes the installer's
/// tags with it, and leaves the ones made by hand calling a deleted istiod
/// (`failurePolicy: Fail`: no pod starts in the namespaces they inject).
fn tag_in_use(target: &providers::Target, tag: &str, webhook: &str, rev: &str) -> String {
    let (tag, webhook) = (
        providers::rendered::shown(tag),
        providers::rendered::shown(webhook),
    );
    format!(
        "tag `{tag}` in {} (MutatingWebhookConfiguration {webhook}) points at revision `{rev}`, \
         and this plan uninstalls `{rev}`: the namespaces it injects would get no sidecars, or \
         no pods at all. Move the tag first (in [tags], `{tag} = \"<revision>\"`, and apply; for \
         a tag made by hand, `istioctl --context {} tag set {tag} --revision <revision> \
         --overwrite`), then remove the revision, or keep `{rev}` in [[mesh.keep_revision]]",
        target.cluster, target.context,
    )
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
