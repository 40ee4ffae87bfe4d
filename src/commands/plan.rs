//! `mesh plan` and `mesh diff`.

use super::refresh::refresh;
use crate::cli::{Cli, DiffArgs, PlanArgs};
use crate::mesh_file::{load_graph, load_graph_or_none, mesh_file_sha256};
use crate::output::{Output, render_plan};
use crate::progress::View;
use crate::store::backend;
use crate::world::World;
use anyhow::{Context, Result};
use engine::planner::{self, Mode};
use plans::SavedPlan;
use std::sync::Arc;

/// How many steps a refresh reads at once.
const REFRESH_PARALLELISM: usize = 16;

pub fn plan(cli: &Cli, args: &PlanArgs, out: &Output) -> Result<u8> {
    let (mesh, mut graph) = load_graph(&cli.file)?;
    let backend = backend(cli, Some(&mesh))?;
    // A plan writes no state: where the lock cannot be created (a read-only
    // folder, e.g. a state checked out in CI) it plans from the state as it
    // is, and says so, rather than refusing.
    let (_lock, recorded) = match backend.lock("plan", args.lock.lock_timeout) {
        Ok(lock) => {
            let recorded = lock.read()?;
            (Some(lock), recorded)
        }
        Err(state::StateError::Lock { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            crate::errln!(
                "note: the state's folder is read-only ({source}); planning without the state lock"
            );
            (None, backend.read_unlocked()?)
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(s) = &recorded {
        s.check_mesh_id(&mesh.mesh.id)?;
    }
    let options = planner::Options {
        replace: args.replace.clone(),
        targets: args.target.clone(),
        refresh_only: args.refresh_only,
    }
    .normalised();
    // A misspelt step fails here, before any cluster is read.
    options.check(&graph, recorded.as_ref())?;
    // A root rotation's next phase.
    let staged = engine::trust::stage(&mut graph, recorded.as_ref(), &options.replace);
    crate::preflight::before_plan(cli, &mesh, &graph, recorded.as_ref(), args)?;
    // Refresh only what is recorded; `--no-refresh` (and a destroy plan,
    // which deletes whatever is recorded) needs no cluster access at all.
    // (and a first plan with `[trust]` looks whether a `cacerts` is there
    // to be replaced).
    let needed = recorded.as_ref().is_some_and(|s| !s.steps.is_empty())
        || (!args.refresh_only && engine::refresh::wants_preview(&graph, recorded.as_ref()));
    let refreshed = if !args.no_refresh && !args.destroy && needed {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        Some(runtime.block_on(async {
            let world = World::open(cli, &mesh, Arc::new(View::new(cli.verbose > 0))).await?;
            let r = refresh(&world, &graph, recorded.as_ref(), REFRESH_PARALLELISM).await;
            world.close().await;
            r
        })?)
    } else {
        None
    };
    let mode = if args.destroy {
        Mode::Destroy
    } else {
        Mode::Converge
    };
    let mut plan = planner::plan_with(
        &mesh.mesh.id,
        &graph,
        recorded.as_ref(),
        refreshed.as_ref(),
        mode,
        &options,
    );
    engine::review::plan(&mut plan, &mesh, &args.allow);
    if mode == Mode::Converge && !args.refresh_only {
        staged.review(&mut plan);
        plan.refused
            .extend(engine::refresh::refusals(refreshed.as_ref()));
    }
    // What only the clusters can say: Istio's own precheck before an
    // in-place upgrade, and namespaces still on a revision it uninstalls.
    if !args.no_refresh
        && plan.refused.is_empty()
        && (!engine::upgrades::removed_revisions(&plan).is_empty()
            || !engine::upgrades::in_place(&plan).is_empty())
    {
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        let (notes, in_use) = runtime.block_on(async {
            let world = World::open(cli, &mesh, Arc::new(View::new(cli.verbose > 0))).await?;
            let n = crate::precheck::notes(&world, &plan, &graph).await;
            let u = crate::precheck::revisions_in_use(&world, &plan, &graph).await;
            world.close().await;
            anyhow::Ok((n, u))
        })?;
        plan.notes.extend(notes);
        plan.refused.extend(in_use);
    }
    // A plan the policy refuses is shown (every format says why), not saved.
    if let Some(refusal) = plan.policy.refusal() {
        crate::out!("{}", render_plan(&plan, args.format, out));
        anyhow::bail!(refusal);
    }
    if !plan.refused.is_empty() {
        crate::out!("{}", render_plan(&plan, args.format, out));
        anyhow::bail!(refused(&plan.refused));
    }

    if let Some(file) = &args.out {
        let saved = SavedPlan {
            plan: plan.clone(),
            destroy: args.destroy,
            lineage: recorded.as_ref().map(|s| s.lineage.clone()),
            serial: recorded.as_ref().map_or(0, |s| s.serial),
            mesh_file_sha256: mesh_file_sha256(&cli.file)?,
            mesh_version: env!("CARGO_PKG_VERSION").to_string(),
            refreshed: refreshed.is_some(),
        };
        saved
            .write(file)
            .with_context(|| format!("saving the plan to {}", file.display()))?;
    }
    crate::out!("{}", render_plan(&plan, args.format, out));
    if let Some(file) = &args.out {
        crate::errln!(
            "\nSaved the plan to {}. To apply exactly these changes: mesh{} apply {}",
            file.display(),
            if cli.file == std::path::Path::new("mesh.toml") {
                String::new()
            } else {
                format!(" -f {}", cli.file.display())
            },
            file.display()
        );
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        2
    } else {
        0
    })
}

pub fn diff(cli: &Cli, args: &DiffArgs, out: &Output) -> Result<u8> {
    // A base that is missing or empty is no mesh yet (a pull request that
    // adds the mesh file); an empty head, a mesh file emptied.
    let base = load_graph_or_none(&args.base_file, true)?;
    let head = load_graph_or_none(&cli.file, false)?;
    let Some(mesh_id) = head
        .as_ref()
        .or(base.as_ref())
        .map(|(m, _)| m.mesh.id.clone())
    else {
        anyhow::bail!(
            "neither {} nor {} describes a mesh: there is nothing to compare",
            args.base_file.display(),
            cli.file.display()
        );
    };
    let none = engine::graph::GraphBuilder::new()
        .build()
        .context("an empty step graph")?;
    let base_graph = base.as_ref().map_or(&none, |(_, g)| g);
    let head_graph = head.as_ref().map_or(&none, |(_, g)| g);
    let mut plan = planner::diff(&mesh_id, base_graph, head_graph);
    engine::review::diff(
        &mut plan,
        base.as_ref().map(|(m, _)| m),
        head.as_ref().map(|(m, _)| m),
    );
    crate::out!("{}", render_plan(&plan, args.format, out));
    Ok(if args.detailed_exitcode && plan.summary.has_changes() {
        2
    } else {
        0
    })
}

/// The error of a plan that breaks a rule of upgrading Istio
/// (`engine::upgrades`): nothing runs.
pub(crate) fn refused(reasons: &[String]) -> String {
    format!(
        "the plan is refused, nothing was changed:\n{}",
        reasons
            .iter()
            .map(|r| format!("  - {r}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}
