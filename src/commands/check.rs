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
                let mut checks = engine::check::run(
                    &world.env,
                    &mesh,
                    &graph,
                    state.as_ref(),
                    &specs,
                    args.cluster.as_deref(),
                    world.default_kubeconfig(),
                )
                .await;
                if let Some(r) = &staged.rotation {
                    let found = crate::rotation::evidence(world, &graph, r).await;
                    let gate = engine::trust::gate(r, &found);
                    checks.extend(rotation_checks(r, &gate, args.cluster.as_deref()));
                }
                Ok(checks)
            })
            .await
    })?;
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

/// A root rotation under way: where it stands, and per cluster what its
/// proxies show of the phase before the next (the plan's gate).
fn rotation_checks(
    r: &engine::trust::Rotation,
    gate: &engine::trust::Gate,
    only: Option<&str>,
) -> Vec<providers::check::Check> {
    use providers::check::Check;
    let mut checks = vec![
        Check::warn(
            "(mesh)",
            "root rotation",
            format!(
                "a root rotation is under way on {}: its next phase is phase {} of 3",
                r.primaries.join(", "),
                r.phase
            ),
        )
        .fix("`mesh plan` says what that phase does, and whether the proxies let it start"),
    ];
    if !engine::trust::reads_secrets(r) {
        return checks;
    }
    let clusters = gate
        .proxies
        .keys()
        .chain(gate.outstanding.iter().map(|(c, _)| c))
        .collect::<std::collections::BTreeSet<_>>();
    for cluster in clusters
        .into_iter()
        .filter(|c| only.is_none_or(|o| o == *c))
    {
        let lines: Vec<&str> = gate
            .outstanding
            .iter()
            .filter(|(c, _)| c == cluster)
            .map(|(_, l)| l.as_str())
            .collect();
        let n = gate.proxies.get(cluster).copied().unwrap_or(0);
        checks.push(if lines.is_empty() {
            Check::pass(
                cluster,
                "rotation gate",
                format!("phase {} took effect on its {n} proxies", r.phase - 1),
            )
        } else {
            Check::warn(cluster, "rotation gate", lines.join("; ")).fix(
                "restart the workloads named (`kubectl rollout restart \
                 deployment,statefulset,daemonset -n NAMESPACE`) or wait for their certificates to \
                 renew; `mesh plan` plans the next phase once none is outstanding",
            )
        });
    }
    checks
}
