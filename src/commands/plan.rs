//! `mesh plan` and `mesh diff`.

use crate::cli::{Cli, DiffArgs, PlanArgs};
use crate::mesh_file::{load_graph_or_none, mesh_file_sha256};
use crate::output::{Output, render_plan};
use crate::pipeline::{self, Operation, Request, Start};
use crate::progress::View;
use crate::world::World;
use anyhow::{Context, Result};
use engine::planner::{self, Mode};
use plans::SavedPlan;
use std::sync::Arc;

/// How many steps a refresh reads at once.
const REFRESH_PARALLELISM: usize = 16;

pub fn plan(cli: &Cli, args: &PlanArgs, out: &Output) -> Result<u8> {
    let Start {
        mesh,
        mut graph,
        lock: _lock,
        recorded,
        ..
    } = pipeline::start(cli, "plan", args.lock.lock_timeout, true)?;
    let options = planner::Options {
        renamed: Vec::new(),
        replace: args.replace.clone(),
        targets: args.target.clone(),
        refresh_only: args.refresh_only,
    }
    .normalised();
    // A misspelt step fails here, before any cluster is read.
    options.check(&graph, recorded.as_ref())?;
    let req = Request {
        operation: Operation::Plan,
        mode: if args.destroy {
            Mode::Destroy
        } else {
            Mode::Converge
        },
        options: &options,
        refresh: !args.no_refresh,
        strict: args.strict,
        allow: &args.allow,
        saved: None,
        parallelism: REFRESH_PARALLELISM,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // `--no-refresh` promises a plan without cluster access: no world.
    let computed = runtime.block_on(async {
        let (mesh, graph, recorded, req) = (&mesh, &mut graph, recorded.as_ref(), &req);
        if args.no_refresh {
            return pipeline::compute(None, mesh, graph, recorded, req).await;
        }
        World::open(cli, mesh, Arc::new(View::new(cli.verbose > 0)))
            .await?
            .run(async |world| pipeline::compute(Some(world), mesh, graph, recorded, req).await)
            .await
    })?;
    let plan = computed.plan;
    pipeline::refuse(&plan, args.format, out)?;
    if let Some(file) = &args.out {
        let saved = SavedPlan {
            plan: plan.clone(),
            destroy: args.destroy,
            lineage: recorded.as_ref().map(|s| s.lineage.clone()),
            serial: recorded.as_ref().map_or(0, |s| s.serial),
            mesh_file_sha256: mesh_file_sha256(&cli.file)?,
            mesh_version: env!("CARGO_PKG_VERSION").to_string(),
            refreshed: computed.refreshed.is_some(),
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
