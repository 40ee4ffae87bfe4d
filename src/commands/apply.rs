//! `mesh apply`, `mesh destroy` and `mesh import`: the commands that change
//! clusters or record them in the state. Each runs on a tokio runtime made
//! here.

use super::refresh::refresh;
use crate::cli::{ApplyArgs, Cli, DestroyArgs, Format};
use crate::mesh_file::{load_graph, mesh_file_sha256};
use crate::output::{Output, render_plan};
use crate::progress::View;
use crate::store::backend;
use crate::world::World;
use anyhow::{Context, Result, bail};
use engine::apply::Outcome;
use engine::executor::Stop;
use engine::planner::{self, Mode};
use engine::topology::StepGraph;
use plans::{Plan, SavedPlan};
use state::{LockedState, State};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;
use tokio::sync::watch;

pub fn apply(cli: &Cli, args: &ApplyArgs, out: &Output) -> Result<u8> {
    let mode = Mode::Converge;
    run(
        cli,
        out,
        RunArgs {
            operation: "apply",
            planfile: args.planfile.as_deref(),
            auto_approve: args.auto_approve,
            limits: engine::executor::Limits {
                total: args.parallelism.into(),
                per_group: args.cluster_parallelism.into(),
            },
            no_refresh: args.no_refresh,
            lock_timeout: args.lock.lock_timeout,
            mode,
            allow: &args.allow,
            options: planner::Options {
                replace: args.replace.clone(),
                targets: args.target.clone(),
                refresh_only: args.refresh_only,
            }
            .normalised(),
            strict: args.strict,
        },
    )
}

pub fn destroy(cli: &Cli, args: &DestroyArgs, out: &Output) -> Result<u8> {
    run(
        cli,
        out,
        RunArgs {
            operation: "destroy",
            planfile: None,
            auto_approve: args.auto_approve,
            limits: engine::executor::Limits {
                total: args.parallelism.into(),
                per_group: args.cluster_parallelism.into(),
            },
            no_refresh: true,
            lock_timeout: args.lock.lock_timeout,
            mode: Mode::Destroy,
            allow: &args.allow,
            options: planner::Options {
                targets: args.target.clone(),
                ..Default::default()
            }
            .normalised(),
            strict: false,
        },
    )
}

struct RunArgs<'a> {
    operation: &'static str,
    planfile: Option<&'a std::path::Path>,
    auto_approve: bool,
    limits: engine::executor::Limits,
    no_refresh: bool,
    lock_timeout: std::time::Duration,
    mode: Mode,
    /// `--allow RULE`: the [policy] rules this run overrides.
    allow: &'a [String],
    /// `--replace`, `--target`, `--refresh-only` (a saved plan brings its own).
    options: planner::Options,
    /// `--strict`: preflight warnings are errors.
    strict: bool,
}

fn run(cli: &Cli, out: &Output, args: RunArgs<'_>) -> Result<u8> {
    let (mesh, mut graph) = load_graph(&cli.file)?;
    let backend = backend(cli, Some(&mesh))?;
    let path = backend.location();
    let mut lock = backend.lock(args.operation, args.lock_timeout)?;
    let recorded = lock.read()?;
    if let Some(s) = &recorded {
        s.check_mesh_id(&mesh.mesh.id)?;
    }
    // A misspelt step fails here, before any cluster is reached.
    args.options.check(&graph, recorded.as_ref())?;
    // A saved plan is never executed as written: the plan is computed
    // again, as `mesh plan` made it, and must match it exactly.
    let saved = match args.planfile {
        Some(file) => {
            let saved = SavedPlan::read(file)?;
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
            Some((file, saved))
        }
        None => None,
    };
    // A root rotation's next phase (none in a destroy: it deletes), with
    // the steps replaced as given, or as the saved plan recorded them.
    let replace = match &saved {
        Some((_, s)) => &s.plan.replace,
        None => &args.options.replace,
    };
    let staged = engine::trust::stage(&mut graph, recorded.as_ref(), replace);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let view = Arc::new(View::new(cli.verbose > 0));
    runtime.block_on(async {
        let world = World::open(cli, &mesh, view.clone())
            .await?
            .with_fleet(&graph);
        let graph = Arc::new(graph);
        let mode = match &saved {
            Some((_, s)) if s.destroy => Mode::Destroy,
            _ => args.mode,
        };
        // A saved plan is recomputed with the verbs it was made with.
        let options = match &saved {
            Some((_, s)) => planner::Options {
                replace: s.plan.replace.clone(),
                targets: s.plan.targets.clone(),
                refresh_only: s.plan.refresh_only,
            },
            None => args.options.clone(),
        };
        let wants_refresh = match &saved {
            Some((_, s)) => s.refreshed,
            None => !args.no_refresh,
        };
        let checked = (mode, wants_refresh && mode == Mode::Converge, args.strict);
        crate::preflight::before_apply(
            &world,
            &mesh,
            &graph,
            recorded.as_ref(),
            checked,
            args.operation,
        )
        .await?;
        let needed = recorded.as_ref().is_some_and(|s| !s.steps.is_empty())
            || (!options.refresh_only && engine::refresh::wants_preview(&graph, recorded.as_ref()));
        let refreshed = if wants_refresh && needed && mode == Mode::Converge {
            match refresh(&world, &graph, recorded.as_ref(), args.limits.total).await {
                Ok(r) => Some(r),
                Err(e) => {
                    world.close().await;
                    return Err(e);
                }
            }
        } else {
            None
        };
        let mut plan: Plan = planner::plan_with(
            &mesh.mesh.id,
            &graph,
            recorded.as_ref(),
            refreshed.as_ref(),
            mode,
            &options,
        );
        // The policy as `mesh plan` checked it: a saved plan with the
        // overrides it recorded (and must reach the same verdict below).
        let saved_plan = saved.as_ref().map(|(_, s)| &s.plan);
        if let Err(e) = engine::review::apply(&mut plan, &mesh, saved_plan, args.allow) {
            world.close().await;
            bail!(e);
        }
        if mode == Mode::Converge && !plan.refresh_only {
            staged.review(&mut plan);
            plan.refused
                .extend(engine::refresh::refusals(refreshed.as_ref()));
        }
        if plan.refused.is_empty() {
            plan.notes
                .extend(crate::precheck::notes(&world, &plan, &graph).await);
            plan.refused
                .extend(crate::precheck::revisions_in_use(&world, &plan, &graph).await);
        }
        if let Some((file, saved)) = &saved
            && let Err(e) = saved.check_matches(file, &plan)
        {
            world.close().await;
            return Err(e.into());
        }
        if let Some(stuck) = engine::executor::blocked_by_cycle(&engine::apply::tasks(&plan, &graph)) {
            world.close().await;
            bail!(
                "the steps {} depend on each other in a cycle, so none of them could ever run: \
                 the state or the saved plan was edited by hand. Restore the state from its `.backup`, \
                 or make a new plan with `mesh plan`",
                stuck.join(", ")
            );
        }
        if let Some(refusal) = plan.policy.refusal() {
            world.close().await;
            crate::out!("{}", render_plan(&plan, Format::Text, out));
            bail!(refusal);
        }
        if !plan.refused.is_empty() {
            world.close().await;
            crate::out!("{}", render_plan(&plan, Format::Text, out));
            bail!(super::plan::refused(&plan.refused));
        }
        if plan.refresh_only {
            world.close().await;
            // A saved plan was reviewed when it was made: not asked again.
            let approved = args.auto_approve || args.planfile.is_some();
            return record_refresh(out, &plan, recorded, &mut lock, &path, approved);
        }
        if !plan.summary.has_changes() {
            world.close().await;
            if mode == Mode::Destroy {
                crate::outln!(
                    "Nothing to destroy: the state at {} records {}.",
                    path,
                    if plan.targets.is_empty() {
                        "no steps"
                    } else {
                        "none of the targeted steps"
                    }
                );
            } else {
                crate::out!("{}", render_plan(&plan, Format::Text, out));
            }
            return Ok(0);
        }
        crate::out!("{}", render_plan(&plan, Format::Text, out));
        if args.planfile.is_none() && !confirm(args.operation, args.auto_approve)? {
            world.close().await;
            crate::errln!(
                "{} cancelled: nothing was changed.",
                capitalise(args.operation)
            );
            return Ok(1);
        }
        let state = recorded
            .clone()
            .unwrap_or_else(|| State::new(&mesh.mesh.id));
        let outcome = execute(
            &world,
            &plan,
            graph,
            state,
            &mut lock,
            args.limits,
            &view,
        )
        .await;
        world.close().await;
        let code = summarise(args.operation, &plan, &outcome);
        if !plan.targets.is_empty() {
            let targets = plan.targets.join(" --target ");
            if mode == Mode::Destroy {
                crate::errln!(
                    "\nWarning: targeting was in effect (--target {targets}): only the targeted steps \
                     and the steps that depended on them were destroyed. `mesh state list` shows what is left."
                );
            } else {
                crate::errln!(
                    "\nWarning: targeting was in effect (--target {targets}): changes the mesh file asks \
                     for outside the targeted steps were not made. Run `mesh plan` to see what is left."
                );
            }
        }
        Ok(code)
    })
}

/// `apply --refresh-only`: writes what the refresh found (new outputs,
/// drifted steps tainted) in the state, once, under the lock; no cluster
/// changes.
fn record_refresh(
    out: &Output,
    plan: &Plan,
    recorded: Option<State>,
    lock: &mut Box<dyn LockedState>,
    path: &str,
    auto_approve: bool,
) -> Result<u8> {
    crate::out!("{}", render_plan(plan, Format::Text, out));
    let drift = plan.drift.as_deref().unwrap_or_default();
    let Some(mut state) = recorded.filter(|_| !drift.is_empty()) else {
        return Ok(0);
    };
    if !confirm("apply --refresh-only", auto_approve)? {
        crate::errln!("Apply cancelled: nothing was recorded.");
        return Ok(1);
    }
    let done = planner::record_drift(&mut state, drift, &state::now_rfc3339());
    lock.write(&mut state)?;
    crate::errln!(
        "\nApply complete: {} step{} recorded in the state at {path} ({}); nothing in any cluster was changed.",
        done.len(),
        if done.len() == 1 { "" } else { "s" },
        done.join(", ")
    );
    Ok(0)
}

/// Runs the plan with Ctrl-C handling: the first stops starting new steps,
/// the second aborts the running ones.
async fn execute(
    world: &World,
    plan: &Plan,
    graph: Arc<StepGraph>,
    state: State,
    lock: &mut Box<dyn LockedState>,
    limits: engine::executor::Limits,
    view: &Arc<View>,
) -> Outcome {
    let (stop_tx, stop_rx) = watch::channel(Stop::No);
    let signals = tokio::spawn(async move {
        let mut presses = 0;
        while tokio::signal::ctrl_c().await.is_ok() {
            presses += 1;
            if presses == 1 {
                crate::errln!(
                    "\nInterrupted: finishing the running steps and saving the state (Ctrl-C again to abort them)."
                );
                let _ = stop_tx.send(Stop::Graceful);
            } else {
                crate::errln!("\nAborting the running steps; they will be recorded as tainted.");
                let _ = stop_tx.send(Stop::Abort);
                break;
            }
        }
    });
    // Shared by the two callbacks below: the lock writes records and says
    // whether new steps may start.
    let lock = std::cell::RefCell::new(lock);
    let (_, outcome) = engine::apply::apply(engine::apply::Run {
        plan,
        graph,
        env: world.env.clone(),
        state,
        default_kubeconfig: world.default_kubeconfig(),
        limits,
        stop: stop_rx,
        persist: &mut |st| {
            world.before_record()?;
            lock.borrow_mut().write(st).map_err(|e| e.to_string())
        },
        may_start: &|| lock.borrow().may_start().map_err(|e| e.to_string()),
        progress: &mut |p| view.event(p),
        now: state::now_rfc3339,
    })
    .await;
    signals.abort();
    outcome
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Asks for `yes` on a terminal; without one, `--auto-approve` is required.
fn confirm(operation: &str, auto_approve: bool) -> Result<bool> {
    if auto_approve {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "{operation} changes clusters and needs confirmation, but there is no terminal to ask on: \
             pass --auto-approve to {operation} without asking"
        );
    }
    let question = match operation {
        "destroy" => "Do you want to destroy everything mesh applied, as listed above?",
        "apply --refresh-only" => {
            "Do you want to record these in the state? Nothing in any cluster changes."
        }
        _ => "Do you want to apply these changes?",
    };
    crate::err!("\n{question} Only 'yes' will be accepted: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

/// Prints how the run ended; returns the exit code.
fn summarise(operation: &str, plan: &Plan, outcome: &Outcome) -> u8 {
    let r = &outcome.report;
    if outcome.is_success() {
        let s = plan.summary;
        crate::errln!(
            "\n{} complete: {} created, {} updated, {} destroyed.",
            capitalise(operation),
            s.create,
            s.update,
            s.delete
        );
        return 0;
    }
    crate::errln!("\n{} did not complete.", capitalise(operation));
    if !r.succeeded.is_empty() {
        crate::errln!("  done ({}): {}", r.succeeded.len(), r.succeeded.join(", "));
    }
    for id in &r.failed {
        crate::errln!(
            "  failed: {id}: {}",
            outcome
                .errors
                .get(id)
                .map(String::as_str)
                .unwrap_or("(no message)")
        );
    }
    if !r.aborted.is_empty() {
        crate::errln!("  aborted (tainted): {}", r.aborted.join(", "));
    }
    if !r.not_started.is_empty() {
        crate::errln!(
            "  not started ({}): {}",
            r.not_started.len(),
            r.not_started.join(", ")
        );
    }
    if let Some(e) = &outcome.lock_refused {
        crate::errln!("  {e}");
    }
    if let Some(e) = &outcome.state_error {
        crate::errln!("  the state could not be saved: {e}");
    }
    // A cluster that never answered: nothing changed there. For a cluster
    // gone for good, forgetting its steps is the way out.
    let mut unreached: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (step, cluster) in &outcome.unreached {
        unreached.entry(cluster).or_default().push(step);
    }
    for (cluster, steps) in unreached {
        let deletes = steps.iter().any(|s| {
            plan.changes
                .iter()
                .any(|c| c.step == *s && c.action == plans::Action::Delete)
        });
        crate::errln!(
            "  cluster `{cluster}` could not be reached, so nothing changed there ({}). Fix access \
             to it (its context, kubeconfig, API server) and run `mesh {operation}` again.{}",
            steps.join(", "),
            if deletes {
                format!(
                    " If it is gone for good, `mesh state rm {cluster}` forgets its recorded \
                     steps without touching it."
                )
            } else {
                String::new()
            }
        );
    }
    crate::errln!("Finished steps are recorded; run `mesh {operation}` again to resume.");
    1
}

/// `mesh import`: records as applied every step whose live objects are
/// what mesh would apply; changes nothing in the clusters.
pub fn import(cli: &Cli, force: bool, lock_timeout: std::time::Duration) -> Result<u8> {
    let (mesh, graph) = load_graph(&cli.file)?;
    let backend = backend(cli, Some(&mesh))?;
    let path = backend.location();
    let mut lock = backend.lock("import", lock_timeout)?;
    let recorded = lock.read()?;
    if let Some(s) = &recorded {
        s.check_mesh_id(&mesh.mesh.id)?;
        if !s.steps.is_empty() && !force {
            bail!(
                "the state at {} already records {} steps: import is for a mesh mesh has not recorded. \
                 `mesh plan` compares it with the clusters; pass --force to replace its records with what import finds",
                path,
                s.steps.len()
            );
        }
    }
    let mut st = recorded.unwrap_or_else(|| State::new(&mesh.mesh.id));
    st.steps.clear();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let view = Arc::new(View::new(cli.verbose > 0));
    let report = runtime.block_on(async {
        let world = World::open(cli, &mesh, view).await?;
        let r = engine::import::import(&world.env, &graph, &mut st, state::now_rfc3339).await;
        world.close().await;
        r.map_err(|errors| {
            let lines: Vec<String> = engine::refresh::report(&errors)
                .into_iter()
                .map(|e| format!("  {e}"))
                .collect();
            anyhow::anyhow!(
                "the clusters could not be read, so nothing was imported:\n{}",
                lines.join("\n")
            )
        })
    })?;
    lock.write(&mut st)?;
    for id in &report.adopted {
        crate::outln!("adopted {id}");
    }
    for (id, why) in &report.differs {
        crate::outln!("differs {id}: {why}");
    }
    crate::outln!(
        "\nImported {} of {} steps into {}; `mesh plan` shows the {} that differ.",
        report.adopted.len(),
        graph.len(),
        path,
        report.differs.len()
    );
    Ok(0)
}
