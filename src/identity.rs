//! Reads which cluster each context reaches (`providers::identity`) for
//! `engine::identity::judge`: every cluster of the mesh file through its
//! context, and the recorded contexts it must compare them with.

use crate::world::World;
use engine::identity::Found;
use engine::topology::StepGraph;
use futures::StreamExt;
use state::State;

/// How many clusters are read at once.
const AT_ONCE: usize = 32;

/// What the clusters' identities say of the mesh file's contexts.
pub async fn judge(
    world: &World,
    graph: &StepGraph,
    state: Option<&State>,
) -> engine::identity::Verdict {
    engine::identity::judge(graph, state, &read(world, graph, state).await)
}

async fn read(world: &World, graph: &StepGraph, state: Option<&State>) -> Found {
    let targets = engine::topology::cluster_targets(graph);
    let now = futures::stream::iter(targets)
        .map(|t| async move { (t.cluster.clone(), uid(world, t).await) })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let before = match state {
        Some(state) => {
            let contexts = engine::identity::contexts_to_read(graph, state);
            futures::stream::iter(contexts)
                .map(|context| async move {
                    // A recorded context is reached as destroy reaches it:
                    // through the default kubeconfig.
                    let target = providers::Target {
                        cluster: String::new(),
                        context: context.clone(),
                        kubeconfig: None,
                    };
                    (context, uid(world, &target).await)
                })
                .buffer_unordered(AT_ONCE)
                .collect()
                .await
        }
        None => Default::default(),
    };
    Found { now, before }
}

async fn uid(world: &World, target: &providers::Target) -> Result<String, String> {
    let conn = world
        .env
        .clusters
        .connect(target)
        .await
        .map_err(|e| e.to_string())?;
    providers::identity::read(&conn).await
}
