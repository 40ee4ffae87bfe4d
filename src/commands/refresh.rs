//! The refresh that `mesh plan` and `mesh apply` both make before planning:
//! its own module so that neither command imports the other.

use crate::world::World;
use anyhow::Result;
use engine::planner::Refresh;
use engine::topology::StepGraph;
use state::State;

/// Reads every recorded step back from the clusters, and previews the
/// steps about to be created that look first (a `cacerts` to replace).
pub async fn refresh(
    world: &World,
    graph: &StepGraph,
    state: Option<&State>,
    parallelism: usize,
) -> Result<Refresh> {
    let recorded = match state {
        Some(s) if !s.steps.is_empty() => {
            engine::refresh::refresh(
                &world.env,
                graph,
                s,
                world.default_kubeconfig(),
                parallelism,
            )
            .await
        }
        _ => Ok(Refresh::new()),
    };
    let previewed = if engine::refresh::wants_preview(graph, state) {
        engine::refresh::preview(&world.env, graph, state, parallelism).await
    } else {
        Ok(Refresh::new())
    };
    let merged = match (recorded, previewed) {
        (Ok(mut a), Ok(b)) => {
            a.extend(b);
            Ok(a)
        }
        (Err(mut a), Err(b)) => {
            a.extend(b);
            Err(a)
        }
        (Err(a), _) | (_, Err(a)) => Err(a),
    };
    merged.map_err(|errors| {
        let lines: Vec<String> = engine::refresh::report(&errors)
            .into_iter()
            .map(|e| format!("  {e}"))
            .collect();
        anyhow::anyhow!(
            "the clusters could not be read, so no plan was made:\n{}\n\
                 Fix access to those clusters, or plan from the state alone with --no-refresh",
            lines.join("\n")
        )
    })
}
