//! `mesh plan`, `mesh diff` and the plan half of `mesh apply`.

use super::{load_graph, mesh_file_sha256, needs_cluster, render_plan, state_path};
use crate::cli::{ApplyArgs, Cli, DiffArgs, PlanArgs};
use crate::output::Output;
use anyhow::{Context, Result, bail};
use engine::planner::{self, Mode};
use plans::SavedPlan;

pub fn plan(cli: &Cli, args: &PlanArgs, out: &Output) -> Result<u8> {
    let (mesh, graph) = load_graph(&cli.file)?;
    let path = state_path(cli, Some(&mesh))?;
    let backend = state::LocalBackend::new(path);
    let lock = backend.lock("plan", args.lock.lock_timeout)?;
    let recorded = lock.read()?;
    if let Some(s) = &recorded {
        s.check_mesh_id(&mesh.mesh.id)?;
    }
    if !args.no_refresh && recorded.as_ref().is_some_and(|s| !s.steps.is_empty()) {
        // Refresh reads the clusters; until providers can, say so rather
        // than pretend the plan saw them.
        eprintln!(
            "note: this version of mesh cannot read clusters yet; planning from the state alone (as with --no-refresh)."
        );
    }
    let mode = if args.destroy { Mode::Destroy } else { Mode::Converge };
    let plan = planner::plan(&mesh.mesh.id, &graph, recorded.as_ref(), None, mode);

    if let Some(file) = &args.out {
        let saved = SavedPlan {
            plan: plan.clone(),
            destroy: args.destroy,
            lineage: recorded.as_ref().map(|s| s.lineage.clone()),
            serial: recorded.as_ref().map_or(0, |s| s.serial),
            mesh_file_sha256: mesh_file_sha256(&cli.file)?,
            mesh_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        saved
            .write(file)
            .with_context(|| format!("saving the plan to {}", file.display()))?;
    }
    print!("{}", render_plan(&plan, args.format, out));
    Ok(if args.detailed_exitcode && plan.summary.has_changes() { 2 } else { 0 })
}

pub fn diff(cli: &Cli, args: &DiffArgs, out: &Output) -> Result<u8> {
    let (base_mesh, base) = load_graph(&args.base_file)?;
    let (mesh, head) = load_graph(&cli.file)?;
    if base_mesh.mesh.id != mesh.mesh.id {
        eprintln!(
            "note: the mesh ID changes from `{}` to `{}`: every step is compared as if it were the same mesh.",
            base_mesh.mesh.id, mesh.mesh.id
        );
    }
    let plan = planner::diff(&mesh.mesh.id, &base, &head);
    print!("{}", render_plan(&plan, args.format, out));
    Ok(if args.detailed_exitcode && plan.summary.has_changes() { 2 } else { 0 })
}

pub fn apply(cli: &Cli, args: &ApplyArgs) -> Result<u8> {
    if let Some(file) = &args.planfile {
        let saved = SavedPlan::read(file)?;
        let (mesh, _) = load_graph(&cli.file)?;
        let path = state_path(cli, Some(&mesh))?;
        let backend = state::LocalBackend::new(path);
        let lock = backend.lock("apply", args.lock.lock_timeout)?;
        let recorded = lock.read()?;
        saved.check_fresh(
            recorded.as_ref().map(|s| s.lineage.as_str()),
            recorded.as_ref().map_or(0, |s| s.serial),
            &mesh_file_sha256(&cli.file)?,
        )?;
        if saved.plan.mesh != mesh.mesh.id {
            bail!(
                "{} was made for mesh `{}`, but {} describes mesh `{}`",
                file.display(),
                saved.plan.mesh,
                cli.file.display(),
                mesh.mesh.id
            );
        }
    }
    needs_cluster("apply")
}
