//! Refresh: read every recorded step back from its cluster, concurrently,
//! so the plan sees drift (an annotation removed by hand, a Secret deleted,
//! a new load-balancer address).

use crate::planner::Refresh;
use crate::topology::StepGraph;
use futures::stream::{self, StreamExt};
use providers::env::{Env, Recorded};
use providers::{StepKind, Target};
use state::State;
use std::path::PathBuf;

/// A step could not be read.
#[derive(Debug, thiserror::Error)]
#[error("refreshing {step}: {message}")]
pub struct RefreshError {
    pub step: String,
    pub message: String,
}

/// Reads every recorded step, at most `parallelism` at once. Steps whose
/// kind this mesh does not know are skipped (they will be deleted).
pub async fn refresh(
    env: &Env,
    graph: &StepGraph,
    state: &State,
    default_kubeconfig: Option<PathBuf>,
    parallelism: usize,
) -> Result<Refresh, Vec<RefreshError>> {
    let reads = state.steps.iter().filter_map(|(id, rec)| {
        let kind: StepKind = rec.kind.parse().ok()?;
        // The mesh file's view of the target, when the step is still in it;
        // else what the state recorded.
        let target = graph
            .get(id)
            .map(|s| s.target.clone())
            .unwrap_or_else(|| Target {
                cluster: rec.cluster.clone(),
                context: rec.context.clone(),
                kubeconfig: default_kubeconfig.clone(),
            });
        Some(async move {
            let recorded = Recorded {
                input: &rec.input,
                outputs: &rec.outputs,
            };
            let input = graph.get(id).map(|s| &s.input);
            let result = providers::run::read(env, kind, &target, &recorded, input).await;
            (id.clone(), result)
        })
    });
    let results: Vec<_> = stream::iter(reads)
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut refresh = Refresh::new();
    let mut errors = Vec::new();
    for (id, result) in results {
        match result {
            Ok(obs) => {
                refresh.insert(id, obs);
            }
            Err(e) => errors.push(RefreshError {
                step: id,
                message: e.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(refresh)
    } else {
        errors.sort_by(|a, b| a.step.cmp(&b.step));
        Err(errors)
    }
}
