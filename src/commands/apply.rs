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
    strict: bool,
}

fn run(cli: &Cli, out: &Output, args: RunArgs<'_>) -> Result<u8> {
    let (mesh, graph) = load_graph(&cli.file)?;
    let backend = backend(cli, Some(&mesh))?;
    let path = backend.location();
    let mut lock = backend.lock(args.operation, args.lock_timeout)?;
    let recorded = lock.read()?;
    if let Some(s) = &recorded {
        s.check_mesh_id(&mesh.mesh.id)?;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let view = Arc::new(View::new(cli.verbose > 0));
    runtime.block_on(async {
        let world = World::open(cli, &mesh, view.clone()).await?;
        let graph = Arc::new(graph);
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
        let mode = match &saved {
            Some((_, s)) if s.destroy => Mode::Destroy,
            _ => args.mode,
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
            || engine::refresh::wants_preview(&graph, recorded.as_ref());
        let refreshed = if wants_refresh && needed && mode == Mode::Converge {
            Some(refresh(&world, &graph, recorded.as_ref(), args.limits.total).await?)
        } else {
            None
        };
        let plan: Plan = planner::plan(
            &mesh.mesh.id,
            &graph,
            recorded.as_ref(),
            refreshed.as_ref(),
            mode,
        );
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
        if !plan.summary.has_changes() {
            world.close().await;
            if mode == Mode::Destroy {
                crate::outln!(
                    "Nothing to destroy: the state at {} records no steps.",
                    path
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
        Ok(summarise(args.operation, &plan, &outcome))
    })
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
            lock.write(st).map_err(|e| e.to_string())
        },
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
    let question = if operation == "destroy" {
        "Do you want to destroy everything mesh applied, as listed above?"
    } else {
        "Do you want to apply these changes?"
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
    if let Some(e) = &outcome.state_error {
        crate::errln!("  the state could not be saved: {e}");
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
