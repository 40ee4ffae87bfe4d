//! The preflight `plan` and `apply` make before anything else touches a
//! cluster (engine::preflight decides what, providers::preflight checks):
//! a plan that cannot be applied is an error, not "7 to create".

use crate::cli::{Cli, PlanArgs};
use crate::progress::View;
use crate::world::World;
use anyhow::{Context, Result};
use engine::config::MeshFile;
use engine::planner::{self, Mode};
use engine::topology::StepGraph;
use state::State;
use std::sync::Arc;

/// How many clusters are checked at once.
const PARALLELISM: usize = 64;

/// `mesh plan`'s preflight, in a world of its own. None with
/// `--no-refresh`, which promises a plan without cluster access.
pub fn before_plan(
    cli: &Cli,
    mesh: &MeshFile,
    graph: &StepGraph,
    recorded: Option<&State>,
    args: &PlanArgs,
) -> Result<()> {
    if args.no_refresh {
        return Ok(());
    }
    let mode = if args.destroy {
        Mode::Destroy
    } else {
        Mode::Converge
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let world = World::open(cli, mesh, Arc::new(View::new(cli.verbose > 0))).await?;
        let r = check(
            &world,
            mesh,
            graph,
            recorded,
            mode,
            !args.destroy,
            args.strict,
            "no plan was made",
            "Fix them, or plan from the state alone (reading no cluster) with --no-refresh.",
        )
        .await;
        world.close().await;
        r
    })
}

/// `mesh apply`'s and `mesh destroy`'s preflight, before any step, in the
/// command's world: `(mode, refresh, strict)`.
pub async fn before_apply(
    world: &World,
    mesh: &MeshFile,
    graph: &StepGraph,
    recorded: Option<&State>,
    (mode, refresh, strict): (Mode, bool, bool),
    operation: &str,
) -> Result<()> {
    check(
        world,
        mesh,
        graph,
        recorded,
        mode,
        refresh,
        strict,
        "nothing was changed",
        &if mode == Mode::Destroy {
            // A cluster gone for good holds steps destroy cannot undo.
            format!(
                "Fix them and run `mesh {operation}` again. A cluster that is gone for good: \
                 `mesh state rm CLUSTER` forgets its steps (nothing is sent to it), then \
                 destroy the rest."
            )
        } else {
            format!("Fix them and run `mesh {operation}` again.")
        },
    )
    .await
}

/// Checks what the plan of `mode` against `recorded` touches (with
/// `refresh`, what refresh reads too); prints the warnings; an error when
/// a check failed, or a warning did with `strict`. The error says what
/// did not happen (`outcome`), then each finding, then `advice`.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    world: &World,
    mesh: &MeshFile,
    graph: &StepGraph,
    recorded: Option<&State>,
    mode: Mode,
    refresh: bool,
    strict: bool,
    outcome: &str,
    advice: &str,
) -> Result<()> {
    // The plan before refresh: refresh only turns recorded steps into
    // changes, and their clusters are checked when it runs.
    let plan = planner::plan(&mesh.mesh.id, graph, recorded, None, mode);
    let dk = world.default_kubeconfig();
    let needs = engine::preflight::needs(&plan, graph, recorded, refresh, dk.as_deref());
    let found = engine::preflight::run(
        &world.env,
        &needs,
        mesh.mesh.istio_version.as_deref(),
        &mesh.mesh.keep_revisions,
        world.loopback_reachable(),
        PARALLELISM,
    )
    .await;
    let mut errors = found.errors;
    if strict {
        errors.extend(
            found
                .warnings
                .iter()
                .map(|w| format!("{w} (an error with --strict)")),
        );
    } else {
        for w in &found.warnings {
            crate::errln!("warning: {w}");
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = errors.iter().map(|e| format!("  - {e}")).collect();
    anyhow::bail!(
        "the preflight checks failed, so {outcome}:\n{}\n{advice}",
        lines.join("\n")
    )
}
