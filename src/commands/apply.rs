//! `mesh apply`, `mesh destroy` and `mesh import`: the commands that change
//! clusters or record them in the state. Each runs on a tokio runtime made
//! here.

use crate::cli::{ApplyArgs, Cli, DestroyArgs, Format};
use crate::mesh_file::mesh_file_sha256;
use crate::output::{Output, render_plan};
use crate::pipeline::{self, Operation, Request, Start};
use crate::progress::View;
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
                renamed: Vec::new(),
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
                renamed: Vec::new(),
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
    let Start {
        mesh,
        mut graph,
        location,
        lock,
        recorded,
    } = pipeline::start(cli, args.operation, args.lock_timeout, false)?;
    let mut lock = lock.expect("apply never plans without the lock");
    // A misspelt step fails here, before any cluster is reached.
    args.options.check(&graph, recorded.as_ref())?;
    let saved = match args.planfile {
        Some(file) => Some((file, saved_plan(cli, file, &mesh, recorded.as_ref())?)),
        None => None,
    };
    let saved_plan = saved.as_ref().map(|(_, s)| s);
    // A saved plan is recomputed with the verbs it was made with.
    let options = match saved_plan {
        Some(s) => planner::Options {
            renamed: Vec::new(),
            replace: s.plan.replace.clone(),
            targets: s.plan.targets.clone(),
            refresh_only: s.plan.refresh_only,
        },
        None => args.options.clone(),
    };
    let mode = match saved_plan {
        Some(s) if s.destroy => Mode::Destroy,
        _ => args.mode,
    };
    let req = Request {
        operation: if args.mode == Mode::Destroy {
            Operation::Destroy
        } else {
            Operation::Apply
        },
        mode,
        options: &options,
        refresh: saved_plan.map_or(!args.no_refresh, |s| s.refreshed),
        strict: args.strict,
        allow: args.allow,
        saved: saved_plan.map(|s| &s.plan),
        parallelism: args.limits.total,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let view = Arc::new(View::new(cli.verbose > 0));
    runtime.block_on(async {
        let world = World::open(cli, &mesh, view.clone()).await?.with_fleet(&graph);
        world
            .run(async |world| {
                let computed =
                    pipeline::compute(Some(world), &mesh, &mut graph, recorded.as_ref(), &req)
                        .await?;
                let (plan, programs, identity) =
                    (computed.plan, computed.programs, computed.identity);
                if let Some((file, saved)) = &saved {
                    saved.check_matches(file, &plan)?;
                }
                if let Some(stuck) =
                    engine::executor::blocked_by_cycle(&engine::apply::tasks(&plan, &graph))
                {
                    bail!(
                        "the steps {} depend on each other in a cycle, so none of them could ever run: \
                         the state or the saved plan was edited by hand. Restore the state from its `.backup`, \
                         or make a new plan with `mesh plan`",
                        stuck.join(", ")
                    );
                }
                // A plan computed while this process lost the lock (stopped
                // past its Lease) judged a state another holder has changed
                // since: the lost lock is the error, not the stale refusal.
                if !plan.refused.is_empty() {
                    lock.may_start()?;
                }
                pipeline::refuse(&plan, Format::Text, out)?;
                let run = Execution {
                    operation: args.operation,
                    mode,
                    // A saved plan was reviewed when it was made: not asked again.
                    approved: args.auto_approve || args.planfile.is_some(),
                    limits: args.limits,
                    location: &location,
                    view: &view,
                    programs,
                    identity,
                };
                carry_out(world, out, &plan, graph, recorded, &mut lock, &run).await
            })
            .await
    })
}

/// The saved plan `file`, if it may still be applied: made from the
/// state as it is (lineage, serial) and the mesh file as it is, for this
/// mesh.
fn saved_plan(
    cli: &Cli,
    file: &std::path::Path,
    mesh: &engine::config::MeshFile,
    recorded: Option<&State>,
) -> Result<SavedPlan> {
    let saved = SavedPlan::read(file)?;
    saved.check_fresh(
        recorded.map(|s| s.lineage.as_str()),
        recorded.map_or(0, |s| s.serial),
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
    Ok(saved)
}

/// How a computed plan is carried out.
struct Execution<'a> {
    operation: &'static str,
    mode: Mode,
    /// No confirmation is asked (`--auto-approve`, or a saved plan).
    approved: bool,
    limits: engine::executor::Limits,
    /// Where the state is, for messages.
    location: &'a str,
    view: &'a Arc<View>,
    /// The programs this apply runs, recorded in the state with its first
    /// step (None in the sandbox).
    programs: Option<std::collections::BTreeMap<String, state::Program>>,
    /// Which cluster each context reaches, recorded with the first step.
    identity: engine::identity::Verdict,
}

/// Records a refresh-only plan, or shows the plan, asks for confirmation
/// and executes it, then says how it ended.
async fn carry_out(
    world: &World,
    out: &Output,
    plan: &Plan,
    graph: StepGraph,
    recorded: Option<State>,
    lock: &mut Box<dyn LockedState>,
    run: &Execution<'_>,
) -> Result<u8> {
    if plan.refresh_only {
        return record_refresh(out, plan, recorded, lock, run.location, run.approved);
    }
    let destroy = run.mode == Mode::Destroy;
    if !plan.summary.has_changes() {
        if destroy {
            crate::outln!(
                "Nothing to destroy: the state at {} records {}.",
                run.location,
                if plan.targets.is_empty() {
                    "no steps"
                } else {
                    "none of the targeted steps"
                }
            );
        } else {
            crate::out!("{}", render_plan(plan, Format::Text, out));
            record_programs(recorded, lock, plan, &graph, run)?;
        }
        return Ok(0);
    }
    crate::out!("{}", render_plan(plan, Format::Text, out));
    if !run.approved && !confirm(run.operation, false)? {
        crate::errln!(
            "{} cancelled: nothing was changed.",
            capitalise(run.operation)
        );
        return Ok(1);
    }
    let mesh_id = plan.mesh.clone();
    let mut state = recorded.unwrap_or_else(|| State::new(&mesh_id));
    if let Some(programs) = &run.programs {
        state.programs = programs.clone();
    }
    if !destroy {
        engine::identity::record(&mut state, plan, &graph, &run.identity);
    }
    let outcome = execute(
        world,
        plan,
        Arc::new(graph),
        state,
        lock,
        run.limits,
        run.view,
    )
    .await;
    let code = summarise(run.operation, plan, &outcome);
    if !plan.targets.is_empty() {
        let targets = plan.targets.join(" --target ");
        if destroy {
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

/// An apply with nothing to change still records the programs it was
/// allowed to run (`--allow new-binary`), so the next plan keeps to them,
/// and what it learnt of the clusters (their identities, a context
/// renamed for the same cluster).
fn record_programs(
    recorded: Option<State>,
    lock: &mut Box<dyn LockedState>,
    plan: &Plan,
    graph: &StepGraph,
    run: &Execution<'_>,
) -> Result<()> {
    let Some(mut state) = recorded else {
        return Ok(());
    };
    let mut changed = false;
    if let Some(programs) = &run.programs
        && state.programs != *programs
    {
        state.programs = programs.clone();
        changed = true;
    }
    changed |= engine::identity::record(&mut state, plan, graph, &run.identity);
    if changed {
        lock.write(&mut state)?;
        crate::errln!(
            "Recorded the programs this apply runs and the clusters it reached in the state at {}.",
            run.location
        );
    }
    Ok(())
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
    let Start {
        mesh,
        graph,
        location: path,
        lock,
        recorded,
    } = pipeline::start(cli, "import", lock_timeout, false)?;
    let mut lock = lock.expect("import never runs without the lock");
    if let Some(s) = &recorded
        && !s.steps.is_empty()
        && !force
    {
        bail!(
            "the state at {} already records {} steps: import is for a mesh mesh has not recorded. \
             `mesh plan` compares it with the clusters; pass --force to replace its records with what import finds",
            path,
            s.steps.len()
        );
    }
    let mut st = recorded.unwrap_or_else(|| State::new(&mesh.mesh.id));
    st.steps.clear();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let view = Arc::new(View::new(cli.verbose > 0));
    let report = runtime.block_on(async {
        let world = World::open(cli, &mesh, view).await?;
        let r = world
            .run(async |world| {
                Ok(engine::import::import(&world.env, &graph, &mut st, state::now_rfc3339).await)
            })
            .await?;
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
