//! `mesh check`: proves, live and read-only, that the mesh works, cluster
//! by cluster (docs/check.md). No lock: it writes nothing, so it may run
//! beside an apply, and it reads the state as it is.

use crate::cli::{CheckArgs, CheckFormat, Cli};
use crate::mesh_file::load_graph;
use crate::progress::View;
use crate::store::backend;
use crate::world::World;
use anyhow::{Context, Result, bail};
use std::sync::Arc;

pub fn check(cli: &Cli, args: &CheckArgs) -> Result<u8> {
    let (mesh, mut graph) = load_graph(&cli.file)?;
    if let Some(c) = &args.cluster
        && mesh.cluster(c).is_none()
    {
        let names: Vec<&str> = mesh.clusters.iter().map(|c| c.name.as_str()).collect();
        bail!(
            "no cluster `{c}` in {}: its clusters are {}",
            cli.file.display(),
            names.join(", ")
        );
    }
    // A state that cannot be read, or is another mesh's, is reported as
    // such, never fatal: the live checks do not need it.
    let mut notes = Vec::new();
    let state = match backend(cli, Some(&mesh)).and_then(|b| Ok(b.read_unlocked()?)) {
        Ok(Some(s)) => match s.check_mesh_id(&mesh.mesh.id) {
            Ok(()) if !engine::trust::damaged(&s).is_empty() => {
                notes.push(format!(
                    "the state is damaged ({}): restore its backup, or `mesh state rm STEP` \
                     then `mesh import --force`",
                    engine::trust::damaged(&s).join("; ")
                ));
                None
            }
            Ok(()) => Some(s),
            Err(e) => {
                notes.push(format!("{e}"));
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            notes.push(format!("the state cannot be read ({e:#})"));
            None
        }
    };
    // A root rotation under way: its phases' cacerts, not a plain one.
    let staged = engine::trust::stage(&mut graph, state.as_ref(), &[]);
    let specs = engine::check::specs(&mesh, &graph, state.as_ref());
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let mut checks = runtime.block_on(async {
        let world = World::open(cli, &mesh, Arc::new(View::new(false))).await?;
        world
            .run(async |world| {
                Ok(engine::check::run(
                    &world.env,
                    &mesh,
                    &graph,
                    state.as_ref(),
                    &specs,
                    args.cluster.as_deref(),
                    world.default_kubeconfig(),
                )
                .await)
            })
            .await
    })?;
    if let Some(r) = &staged.rotation {
        checks.push(
            providers::check::Check::warn(
                "(mesh)",
                "root rotation",
                format!(
                    "a root rotation is under way on {}: the next `mesh apply` takes phase {} of 3",
                    r.primaries.join(", "),
                    r.phase
                ),
            )
            .fix("`mesh plan` says what that phase does and what must happen before it"),
        );
    }
    for note in notes {
        checks.push(
            providers::check::Check::warn(
                "(state)",
                "state",
                format!("{note}; the checks that need it were made without it"),
            )
            .fix("`mesh state list` shows which state is used; --state picks another"),
        );
    }
    match args.format {
        CheckFormat::Json => crate::outln!("{}", engine::check::json(&checks)),
        CheckFormat::Text => crate::outln!("{}", engine::check::text(&mesh, &checks).trim_end()),
    }
    Ok(engine::check::exit_code(&checks))
}
