//! Refresh: read every recorded step back from its cluster, concurrently,
//! so the plan sees drift (an annotation removed by hand, a Secret deleted,
//! a new load-balancer address).

use crate::planner::Refresh;
use crate::topology::StepGraph;
use futures::stream::{self, StreamExt};
use providers::env::{Env, Recorded};
use providers::{Ctx, StepKind, Target};
use state::State;
use std::path::PathBuf;

/// A step could not be read.
#[derive(Debug, thiserror::Error)]
#[error("refreshing {step}: {message}")]
pub struct RefreshError {
    pub step: String,
    pub message: String,
    /// `(cluster, context)` when the cluster could not be reached at all.
    pub unreachable: Option<(String, String)>,
}

/// Looks, for the graph's steps that are not recorded yet and have a
/// preview (`StepInput::has_preview`), at what they would replace. The
/// phrases go into the plan's reason for their create.
pub async fn preview(
    env: &Env,
    graph: &StepGraph,
    state: Option<&State>,
    parallelism: usize,
) -> Result<Refresh, Vec<RefreshError>> {
    let looks = graph
        .in_order()
        .filter(|s| s.input.has_preview())
        .filter(|s| state.is_none_or(|st| !st.steps.contains_key(&s.id)))
        .map(|s| async move {
            let r = s.input.preview(Ctx::new(env, &s.id, &s.target)).await;
            (s.id.clone(), r)
        });
    let results: Vec<_> = stream::iter(looks)
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let mut refresh = Refresh::new();
    let mut errors = Vec::new();
    for (id, r) in results {
        match r {
            Ok(notes) if !notes.is_empty() => {
                refresh.insert(
                    id,
                    providers::Observation {
                        drift: notes,
                        ..Default::default()
                    },
                );
            }
            Ok(_) => {}
            Err(providers::env::StepError::Refused(why)) => {
                refresh.insert(
                    id,
                    providers::Observation {
                        refused: vec![why],
                        ..Default::default()
                    },
                );
            }
            Err(e) => errors.push(RefreshError::of(id, &e)),
        }
    }
    if errors.is_empty() {
        Ok(refresh)
    } else {
        Err(errors)
    }
}

/// What the refresh found that forbids the plan (see
/// `Observation::refused`), in step order.
pub fn refusals(refresh: Option<&Refresh>) -> Vec<String> {
    refresh
        .into_iter()
        .flat_map(|r| r.values())
        .flat_map(|o| o.refused.iter().cloned())
        .collect()
}

/// Whether [`preview`] has anything to look at.
pub fn wants_preview(graph: &StepGraph, state: Option<&State>) -> bool {
    graph
        .in_order()
        .any(|s| s.input.has_preview() && state.is_none_or(|st| !st.steps.contains_key(&s.id)))
}

/// The refresh errors as lines for the user: one line per unreachable
/// cluster (naming its steps), then one per other failed step.
pub fn report(errors: &[RefreshError]) -> Vec<String> {
    let mut by_cluster: std::collections::BTreeMap<(&str, &str), (Vec<&str>, &str)> =
        Default::default();
    let mut lines = Vec::new();
    for e in errors {
        match &e.unreachable {
            Some((cluster, context)) => {
                let entry = by_cluster
                    .entry((cluster.as_str(), context.as_str()))
                    .or_insert((Vec::new(), e.message.as_str()));
                entry.0.push(e.step.as_str());
            }
            None => lines.push(e.to_string()),
        }
    }
    let mut grouped: Vec<String> = by_cluster
        .into_iter()
        .map(|((cluster, _), (steps, message))| {
            format!(
                "cluster `{cluster}` cannot be reached ({} step{}: {}): {message}",
                steps.len(),
                if steps.len() == 1 { "" } else { "s" },
                steps.join(", ")
            )
        })
        .collect();
    grouped.extend(lines);
    grouped
}

impl RefreshError {
    /// A step's error, noting when its cluster could not be reached at all.
    pub fn of(step: String, e: &providers::env::StepError) -> RefreshError {
        RefreshError {
            step,
            message: e.to_string(),
            unreachable: e
                .unreachable_cluster()
                .map(|(c, x)| (c.to_string(), x.to_string())),
        }
    }
}

/// Reads the recorded steps `wanted` accepts, at most `parallelism` at
/// once; each step's own result, so one that cannot be read hides no
/// other. Steps whose kind this mesh does not know are skipped (they will
/// be deleted).
pub async fn read_each(
    env: &Env,
    graph: &StepGraph,
    state: &State,
    default_kubeconfig: Option<PathBuf>,
    parallelism: usize,
    limit: Option<std::time::Duration>,
    wanted: impl Fn(&str, &state::StepRecord) -> bool,
) -> Vec<(String, Result<providers::Observation, RefreshError>)> {
    let reads = state.steps.iter().filter_map(|(id, rec)| {
        if !wanted(id, rec) {
            return None;
        }
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
            let read = kind.read(Ctx::new(env, id, &target), &recorded, input);
            let result = match limit {
                None => read.await.map_err(|e| RefreshError::of(id.clone(), &e)),
                Some(limit) => match tokio::time::timeout(limit, read).await {
                    Ok(r) => r.map_err(|e| RefreshError::of(id.clone(), &e)),
                    Err(_) => Err(RefreshError {
                        step: id.clone(),
                        message: format!("no answer within {} s", limit.as_secs()),
                        unreachable: None,
                    }),
                },
            };
            (id.clone(), result)
        })
    });
    stream::iter(reads)
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await
}

/// Reads every recorded step, at most `parallelism` at once: all their
/// observations, or every step that could not be read.
pub async fn refresh(
    env: &Env,
    graph: &StepGraph,
    state: &State,
    default_kubeconfig: Option<PathBuf>,
    parallelism: usize,
) -> Result<Refresh, Vec<RefreshError>> {
    let results = read_each(
        env,
        graph,
        state,
        default_kubeconfig,
        parallelism,
        None,
        |_, _| true,
    )
    .await;
    let mut refresh = Refresh::new();
    let mut errors = Vec::new();
    for (id, result) in results {
        match result {
            Ok(obs) => {
                refresh.insert(id, obs);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(refresh)
    } else {
        errors.sort_by(|a, b| a.step.cmp(&b.step));
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_cluster_is_reported_once_with_its_steps() {
        let down = |step: &str| RefreshError {
            step: step.into(),
            message: format!(
                "cluster `c2` (context `k2`): reading {step} failed: connection refused"
            ),
            unreachable: Some(("c2".into(), "k2".into())),
        };
        let errors = vec![
            down("c2/prepare-namespace"),
            down("c2/install-remote"),
            RefreshError {
                step: "c1/expose-istiod".into(),
                message: "forbidden".into(),
                unreachable: None,
            },
        ];
        let lines = report(&errors);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "cluster `c2` cannot be reached (2 steps: c2/prepare-namespace, c2/install-remote):"
            ),
            "{lines:?}"
        );
        assert_eq!(lines[1], "refreshing c1/expose-istiod: forbidden");
    }
}
