//! The root rotation's gate, against the live clusters: a phase is
//! planned only when the proxies of every cluster show that the phase
//! before took effect (`engine::trust::gate` decides, from what
//! `providers::proxies` reads). Until then every primary's `cacerts`
//! stays as recorded and the plan says what it waits for, so a drift job
//! or a retried apply never takes a phase early. `--allow rotation-gate`
//! plans the phase anyway, and the plan records it.

use crate::world::World;
use engine::topology::StepGraph;
use engine::trust::{Evidence, GATE, Gate, Rotation, Staged};
use futures::StreamExt;
use state::State;

/// How many clusters are read at once.
const CLUSTERS_AT_ONCE: usize = 16;

/// The gate of the phase `staged` takes (from `engine::trust::stage`):
/// where the proxies do not show the phase before took effect, the graph
/// is staged again without it (`engine::trust::hold`). `world` None (a
/// plan that reads no cluster): a phase that needs the proxies' word
/// waits, saying why. Returns the staging and, when `allowed` overrode a
/// closed gate, what it overrode (for the plan's policy report).
pub async fn gate(
    world: Option<&World>,
    graph: &mut StepGraph,
    recorded: Option<&State>,
    mut staged: Staged,
    replace: &[String],
    allowed: bool,
) -> (Staged, Vec<String>) {
    let Some(rotation) = &staged.rotation else {
        return (staged, Vec::new());
    };
    let gate = match world {
        Some(world) => engine::trust::gate(rotation, &evidence(world, graph, rotation).await),
        None if engine::trust::reads_secrets(rotation) => Gate {
            outstanding: vec![(
                String::new(),
                "the proxies were not read: this plan reads no cluster (`--no-refresh`)".into(),
            )],
            ..Gate::default()
        },
        None => Gate::default(),
    };
    let closed = engine::trust::reads_secrets(rotation) && !gate.outstanding.is_empty();
    if closed && !allowed {
        return (
            engine::trust::hold(graph, recorded, replace, gate),
            Vec::new(),
        );
    }
    let overrode: Vec<String> = if closed {
        gate.outstanding.iter().map(|(_, l)| l.clone()).collect()
    } else {
        Vec::new()
    };
    if let Some(r) = &mut staged.rotation {
        r.overridden = closed;
        r.gate = Some(gate);
    }
    (staged, overrode)
}

/// The proxies of every cluster of the mesh, each cluster once.
pub async fn evidence(world: &World, graph: &StepGraph, rotation: &Rotation) -> Evidence {
    let secrets = engine::trust::reads_secrets(rotation);
    let targets = engine::topology::cluster_targets(graph);
    futures::stream::iter(targets)
        .map(|target| async move {
            let found = match world.env.clusters.connect(target).await {
                Ok(conn) => providers::proxies::read(&conn, secrets).await,
                Err(e) => Err(e.to_string()),
            };
            (target.cluster.clone(), found)
        })
        .buffer_unordered(CLUSTERS_AT_ONCE)
        .collect()
        .await
}

/// Whether this run may plan past a closed gate: `--allow rotation-gate`,
/// or the saved plan being applied recorded it.
pub fn allowed(allow: &[String], saved: Option<&plans::Plan>) -> bool {
    match saved {
        Some(saved) => saved.policy.allowed.iter().any(|a| a == GATE),
        None => allow.iter().any(|a| a == GATE),
    }
}
