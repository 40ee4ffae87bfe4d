//! The plan pipeline: the one way a plan is made, by `mesh plan`, `mesh
//! apply`, `mesh destroy` and `mesh apply PLANFILE` alike. A saved plan is
//! never run as written: apply computes the plan again through this very
//! pipeline, with the options the saved plan recorded, and runs it only if
//! it is the same, so what a reviewer saw is what runs.
//!
//! [`start`] loads the mesh file, locks and reads the state; [`compute`]
//! makes the plan: preflight, refresh, the planner, the review (notes,
//! policy, refusals), the root rotation's staging and what only the
//! clusters can say (`src/precheck.rs`); [`refuse`] stops a refused plan
//! after showing it. Each command adds only what is its own: `plan`
//! renders and saves, `apply` confirms and executes.

use crate::cli::{Cli, Format};
use crate::mesh_file::load_graph;
use crate::output::{Output, render_plan};
use crate::store::backend;
use crate::world::World;
use anyhow::{Result, bail};
use engine::config::MeshFile;
use engine::planner::{self, Mode, Refresh};
use engine::topology::StepGraph;
use plans::Plan;
use state::{LockedState, State};

/// What a command starts from: the mesh file, its graph, the state and
/// (unless the state's folder is read-only, for a plan) its lock.
pub struct Start {
    pub mesh: MeshFile,
    pub graph: StepGraph,
    /// Where the state is, for messages.
    pub location: String,
    pub lock: Option<Box<dyn LockedState>>,
    pub recorded: Option<State>,
}

/// Loads the mesh file and its graph, locks the state for `operation` and
/// reads it, and checks that it is this mesh's. `read_only_ok` (a plan,
/// which writes no state): where the lock cannot be created (a read-only
/// folder, e.g. a state checked out in CI) it reads the state unlocked,
/// and says so, rather than refusing.
pub fn start(
    cli: &Cli,
    operation: &str,
    lock_timeout: std::time::Duration,
    read_only_ok: bool,
) -> Result<Start> {
    let (mesh, graph) = load_graph(&cli.file)?;
    let backend = backend(cli, Some(&mesh))?;
    let location = backend.location();
    let (lock, recorded) = match backend.lock(operation, lock_timeout) {
        Ok(lock) => {
            let recorded = lock.read()?;
            (Some(lock), recorded)
        }
        Err(state::StateError::Lock { source, .. })
            if read_only_ok
                && matches!(
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
        refuse_damaged(s, &location, backend.backup_location())?;
    }
    Ok(Start {
        mesh,
        graph,
        location,
        lock,
        recorded,
    })
}

/// A state whose records mesh cannot use as they are (hand-edited or
/// damaged: `engine::trust::damaged`) stops the command before any plan,
/// naming the state, each step and key, and what to do; nothing is written.
fn refuse_damaged(state: &State, location: &str, backup: Option<String>) -> Result<()> {
    let damaged = engine::trust::damaged(state);
    if damaged.is_empty() {
        return Ok(());
    }
    let restore = match backup {
        Some(b) => format!("restore the backup (`mesh state push --force {b}`)"),
        None => "restore the backup the state backend keeps (docs/state.md)".to_string(),
    };
    bail!(
        "the state {location} is damaged, so nothing was planned or changed:\n{}\n\
         Either {restore}, or forget the step with `mesh state rm STEP` and record what is live \
         again with `mesh import --force`",
        damaged
            .iter()
            .map(|d| format!("  - {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Which command the plan is for: what its preflight says did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Plan,
    Apply,
    Destroy,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Plan => "plan",
            Operation::Apply => "apply",
            Operation::Destroy => "destroy",
        }
    }
}

/// What the plan is computed with.
pub struct Request<'a> {
    pub operation: Operation,
    pub mode: Mode,
    /// `--replace`, `--target`, `--refresh-only` (a saved plan's own).
    pub options: &'a planner::Options,
    /// Read the clusters back (refresh) before planning.
    pub refresh: bool,
    /// `--strict`: preflight warnings are errors.
    pub strict: bool,
    /// `--allow RULE`: the [policy] rules this run overrides.
    pub allow: &'a [String],
    /// The saved plan being applied: its recorded overrides are the policy's.
    pub saved: Option<&'a Plan>,
    /// How many steps a refresh reads at once.
    pub parallelism: usize,
}

/// The plan and what its refresh read (None: no refresh).
pub struct Computed {
    pub plan: Plan,
    pub refreshed: Option<Refresh>,
    /// The programs the run executes (None in the sandbox, or with no
    /// cluster to reach): an apply records them in the state.
    pub programs: Option<std::collections::BTreeMap<String, state::Program>>,
    /// Which cluster each context reaches, for the apply to record.
    pub identity: engine::identity::Verdict,
}

/// Makes the plan of `req` for `graph` against `recorded`, staging the
/// graph first for a root rotation's next phase where the live proxies
/// let it (`crate::rotation`). `world` is None for a plan that reads no
/// cluster (`plan --no-refresh`): then no preflight, no refresh, no live
/// precheck, and a rotation phase that needs the proxies' word waits.
pub async fn compute(
    world: Option<&World>,
    mesh: &MeshFile,
    graph: &mut StepGraph,
    recorded: Option<&State>,
    req: &Request<'_>,
) -> Result<Computed> {
    let converge = req.mode == Mode::Converge;
    let programs = match world {
        Some(world) if world.runs_programs() => Some(new_programs(mesh, recorded, req)?),
        _ => None,
    };
    // A root rotation's next phase, staged before the preflight (which
    // checks what the staged plan does), then held after it where the
    // proxies do not show the phase before took effect.
    let staged = engine::trust::stage(graph, recorded, &req.options.replace);
    if let Some(world) = world {
        let preflight = crate::preflight::Preflight {
            operation: req.operation,
            mode: req.mode,
            refresh: req.refresh && converge,
            strict: req.strict,
        };
        crate::preflight::check(world, mesh, graph, recorded, &preflight).await?;
    }
    // Which cluster each context reaches, against the state's record.
    let identity = match world {
        Some(world) if converge && !req.options.refresh_only => {
            crate::identity::judge(world, graph, recorded).await
        }
        _ => engine::identity::Verdict::default(),
    };
    let options = planner::Options {
        renamed: identity.renamed.clone(),
        ..req.options.clone()
    };
    let (staged, mut overrode) = if converge && !req.options.refresh_only {
        let allowed = crate::rotation::allowed(req.allow, req.saved);
        crate::rotation::gate(
            world,
            graph,
            recorded,
            staged,
            &req.options.replace,
            allowed,
        )
        .await
    } else {
        (staged, Vec::new())
    };
    let refreshed = match world {
        Some(world) => {
            // Refresh only what is recorded (and a first plan with
            // `[trust]` looks whether a `cacerts` is there to be replaced).
            let needed = recorded.is_some_and(|s| !s.steps.is_empty())
                || (!req.options.refresh_only && engine::refresh::wants_preview(graph, recorded));
            if req.refresh && converge && needed {
                Some(refresh(world, graph, recorded, req.parallelism).await?)
            } else {
                None
            }
        }
        None => None,
    };
    // No rotation phase goes on while the refresh shows a primary's
    // cacerts off; the plan writes it back first.
    let staged = match &refreshed {
        Some(found) if converge && !req.options.refresh_only => {
            let (staged, held) = engine::trust::hold_where_cacerts_off(
                graph,
                recorded,
                staged,
                &req.options.replace,
                found,
            );
            if held {
                overrode.clear();
            }
            staged
        }
        _ => staged,
    };
    let graph = &*graph;
    let mut plan = planner::plan_with(
        &mesh.mesh.id,
        graph,
        recorded,
        refreshed.as_ref(),
        req.mode,
        &options,
    );
    if let Err(e) = engine::review::apply(&mut plan, mesh, req.saved, req.allow) {
        bail!(e);
    }
    if let Some(programs) = &programs {
        engine::policy::record_override(
            &mut plan.policy,
            crate::programs::ALLOW,
            &programs.changed,
        );
    }
    engine::policy::record_override(&mut plan.policy, engine::trust::GATE, &overrode);
    if converge && !plan.refresh_only {
        identity.review(&mut plan);
        staged.review(&mut plan);
        plan.refused
            .extend(engine::refresh::refusals(refreshed.as_ref()));
    }
    live_checks(world, &mut plan, graph, recorded, converge).await;
    Ok(Computed {
        plan,
        refreshed,
        programs: programs.map(|p| p.current),
        identity,
    })
}

/// What only the clusters can say: Istio's own precheck before an
/// in-place upgrade, namespaces still on a revision it uninstalls, and a
/// control plane it would install over one the state does not know.
/// Without a world (no cluster read), the plan says what they would have
/// checked; after a refusal, they are not asked.
async fn live_checks(
    world: Option<&World>,
    plan: &mut Plan,
    graph: &StepGraph,
    recorded: Option<&State>,
    converge: bool,
) {
    let Some(world) = world else {
        let unchecked = engine::upgrades::unchecked_removals(plan);
        plan.notes.extend(unchecked);
        return;
    };
    if !plan.refused.is_empty() {
        return;
    }
    plan.notes
        .extend(crate::precheck::notes(world, plan, graph).await);
    plan.refused
        .extend(crate::precheck::revisions_in_use(world, plan, graph).await);
    if converge {
        plan.refused
            .extend(crate::precheck::untracked_control_planes(world, plan, graph, recorded).await);
    }
}

/// The programs this run would execute, and how they differ from the
/// ones the state records; refused (before any runs) when they differ and
/// `--allow new-binary` (or the saved plan's record of it) does not allow
/// it.
fn new_programs(mesh: &MeshFile, recorded: Option<&State>, req: &Request<'_>) -> Result<Programs> {
    let current = crate::programs::current(mesh);
    let none = std::collections::BTreeMap::new();
    let was = recorded.map_or(&none, |s| &s.programs);
    let changed = crate::programs::changed(was, &current);
    let allow = crate::programs::ALLOW;
    let allowed = match req.saved {
        Some(saved) => saved.policy.allowed.iter().any(|a| a == allow),
        None => req.allow.iter().any(|a| a == allow),
    };
    if !changed.is_empty() && !allowed {
        bail!(crate::programs::refusal(&changed));
    }
    Ok(Programs { current, changed })
}

/// The programs of a run: as they are now, and what differs from the state.
struct Programs {
    current: std::collections::BTreeMap<String, state::Program>,
    changed: Vec<String>,
}

/// A plan the policy or the rules of changing a running mesh refuse is
/// shown (every format says why), then an error: nothing is saved or run.
pub fn refuse(plan: &Plan, format: Format, out: &Output) -> Result<()> {
    if let Some(refusal) = plan.policy.refusal() {
        crate::out!("{}", render_plan(plan, format, out));
        bail!(refusal);
    }
    if !plan.refused.is_empty() {
        crate::out!("{}", render_plan(plan, format, out));
        bail!(refused(&plan.refused));
    }
    Ok(())
}

/// The error of a refused plan: nothing runs.
fn refused(reasons: &[String]) -> String {
    format!(
        "the plan is refused, nothing was changed:\n{}",
        reasons
            .iter()
            .map(|r| format!("  - {r}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Reads every recorded step back from the clusters, and previews the
/// steps about to be created that look first (a `cacerts` to replace).
async fn refresh(
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
