//! Applying a plan: the executor's tasks made from the plan, a runner that
//! calls the step kinds, and the state recorded the moment each step ends.
//!
//! A step that succeeds is recorded `applied` with the input it ran with and
//! its outputs; one that fails or is aborted is recorded `tainted`, so the
//! next plan runs it again; a deleted step leaves the state. Every record is
//! persisted at once through `persist` (the CLI writes the state file under
//! its lock), so a crash loses at most the steps that were running.

use crate::executor::{self, Event, Report, Runner, Stop, Task, TaskAction, TaskFuture};
use crate::planner::{self, RenderedInput};
use crate::topology::StepGraph;
use futures::stream::{self, StreamExt};
use plans::{Action, Plan};
use providers::env::{Applied, Env, Recorded, StepError};
use providers::{Ctx, Known, StepKind, Target};
use serde_json::Value;
use state::{State, Status, StepRecord};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// What the CLI is told as the run goes.
#[derive(Debug)]
pub enum Progress<'a> {
    Started {
        step: &'a str,
        action: Action,
    },
    Finished {
        step: &'a str,
        action: Action,
        elapsed: Duration,
        log: &'a str,
    },
    Failed {
        step: &'a str,
        action: Action,
        elapsed: Duration,
        error: &'a str,
        log: &'a str,
    },
    Aborted {
        step: &'a str,
    },
    /// The state could not be written: the run stops.
    StateError {
        error: &'a str,
    },
}

/// The end of an apply.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    /// Error messages of failed steps, by step ID.
    pub errors: BTreeMap<String, String>,
    /// The state could not be saved; the message says why.
    pub state_error: Option<String>,
    /// Failed steps that never reached their cluster (step ID → cluster):
    /// nothing changed there, and their records are as they were.
    pub unreached: BTreeMap<String, String>,
    /// New steps were refused by the lock (it was lost, or asked away
    /// while held); the message says why.
    pub lock_refused: Option<String>,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        self.report.is_success() && self.state_error.is_none() && self.lock_refused.is_none()
    }
}

/// The tasks of a plan: every change but the no-ops. Each is grouped by
/// the clusters it talks to, so that the per-cluster limit keeps one API
/// server from seeing many steps at once: the cluster named in its step ID
/// and, when the graph has the step, the cluster its objects live in
/// (`C/attach@P` reads from C and writes to P).
///
/// A handed-over kept install ([`crate::upgrades::handovers`]) is a
/// [`TaskAction::Forget`] after the install that took its revision: were
/// that install to fail, the revision would still be recorded.
pub fn tasks(plan: &Plan, graph: &StepGraph) -> Vec<Task> {
    let handovers = crate::upgrades::handovers(plan);
    let released: Vec<&str> = crate::upgrades::released_tags(plan)
        .into_iter()
        .map(|c| c.step.as_str())
        .collect();
    plan.changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| {
            if let Some(h) = handovers.iter().find(|h| h.step == c.step) {
                return Task {
                    id: c.step.clone(),
                    action: TaskAction::Forget,
                    depends_on: vec![h.by.to_string()],
                    groups: vec![c.cluster.clone()],
                };
            }
            // A released tag ([`crate::upgrades::released_tags`]): its
            // record goes, the tag stays.
            if released.contains(&c.step.as_str()) {
                return Task {
                    id: c.step.clone(),
                    action: TaskAction::Forget,
                    depends_on: Vec::new(),
                    groups: vec![c.cluster.clone()],
                };
            }
            let mut groups = vec![c.cluster.clone()];
            if let Some(step) = graph.get(&c.step)
                && step.target.cluster != c.cluster
            {
                groups.push(step.target.cluster.clone());
            }
            Task {
                id: c.step.clone(),
                action: if c.action == Action::Delete {
                    TaskAction::Delete
                } else {
                    TaskAction::Apply
                },
                depends_on: c.depends_on.clone(),
                groups,
            }
        })
        .collect()
}

enum Done {
    Applied {
        input: RenderedInput,
        applied: Applied,
    },
    Deleted {
        log: String,
    },
}

struct Failure {
    /// The input it tried to apply (recorded with the taint).
    input: Option<RenderedInput>,
    error: String,
    /// The cluster that did not answer before the step began: the step sent
    /// nothing that could change a cluster.
    unreached: Option<String>,
    /// The cluster answered, but the step stopped before it sent anything
    /// that could change it (`StepError::NotRun`): its record stays.
    not_run: bool,
}

impl Failure {
    fn of(error: String) -> Failure {
        Failure {
            input: None,
            error,
            unreached: None,
            not_run: false,
        }
    }
}

/// A cluster as the connection pool knows it: (kubeconfig, context).
type ClusterKey = (Option<PathBuf>, String);

struct StepRunner {
    graph: Arc<StepGraph>,
    env: Arc<Env>,
    state: Arc<Mutex<State>>,
    /// `--kubeconfig`, for deleting steps whose cluster left the mesh file.
    default_kubeconfig: Option<PathBuf>,
    /// Clusters that answered in this run: each is asked once.
    reached: Arc<Mutex<HashSet<ClusterKey>>>,
}

/// Asks each cluster a step talks to for its version before the step does
/// anything (once per cluster and run). A step that fails here sent no
/// request that could change a cluster, so it is not recorded as having
/// run: a cluster whose context is missing or whose API server is down
/// never leaves a tainted record that destroy could not clear.
async fn reach(
    env: &Env,
    reached: &Mutex<HashSet<ClusterKey>>,
    targets: &[Target],
) -> Result<(), Failure> {
    for target in targets {
        let key = (target.kubeconfig.clone(), target.context.clone());
        if reached.lock().expect("reached lock").contains(&key) {
            continue;
        }
        let unreached = |e: StepError| Failure {
            input: None,
            error: message(&e),
            unreached: Some(target.cluster.clone()),
            not_run: false,
        };
        let conn = env
            .clusters
            .connect(target)
            .await
            .map_err(|e| unreached(e.into()))?;
        conn.call("reaching its API server", || {
            conn.client.apiserver_version()
        })
        .await
        .map_err(|e| unreached(e.into()))?;
        reached.lock().expect("reached lock").insert(key);
    }
    Ok(())
}

impl StepRunner {
    /// The clusters a task talks to. Apply: the step's cluster, and the
    /// cluster of its step ID when its objects live in another (`R/attach`
    /// reads R, writes P). Delete: the cluster its record names, with the
    /// kubeconfig of the mesh file's cluster of that context, else
    /// `--kubeconfig` (the cluster may have left the mesh file).
    fn targets(&self, task: &Task) -> Vec<Target> {
        match task.action {
            TaskAction::Apply => {
                let Some(step) = self.graph.get(&task.id) else {
                    return Vec::new();
                };
                let mut targets = vec![step.target.clone()];
                if step.target.cluster != step.cluster
                    && let Some(own) = self
                        .graph
                        .in_order()
                        .find(|s| s.target.cluster == step.cluster)
                {
                    targets.push(own.target.clone());
                }
                targets
            }
            TaskAction::Delete => {
                let st = self.state.lock().expect("state lock");
                let Some(rec) = st.steps.get(&task.id) else {
                    return Vec::new();
                };
                let kubeconfig = self
                    .graph
                    .in_order()
                    .find(|s| s.target.context == rec.context)
                    .and_then(|s| s.target.kubeconfig.clone())
                    .or_else(|| self.default_kubeconfig.clone());
                vec![Target {
                    cluster: rec.cluster.clone(),
                    context: rec.context.clone(),
                    kubeconfig,
                }]
            }
            // A record dropped: no cluster is asked.
            TaskAction::Forget => Vec::new(),
        }
    }

    /// Asks every cluster the tasks talk to for its version, all at once,
    /// once each, before any step starts (one try, a short timeout): a step
    /// then finds its cluster answered already and goes to work straight
    /// after its tainted record is written, leaving no gap in which a
    /// stopped process could lose the lock and still start it. A cluster
    /// that did not answer is asked again, with retries, by its first step.
    async fn reach_all(&self, tasks: &[Task], parallelism: usize) {
        let mut targets: Vec<Target> = tasks.iter().flat_map(|t| self.targets(t)).collect();
        targets.sort_by(|a, b| (&a.kubeconfig, &a.context).cmp(&(&b.kubeconfig, &b.context)));
        targets.dedup_by(|a, b| a.kubeconfig == b.kubeconfig && a.context == b.context);
        let env = &self.env;
        let answered: Vec<Option<ClusterKey>> = stream::iter(targets)
            .map(|target| async move {
                let ask = async {
                    let conn = env.clusters.connect(&target).await.ok()?;
                    conn.client.apiserver_version().await.ok()
                };
                tokio::time::timeout(FIRST_ASK_TIMEOUT, ask)
                    .await
                    .ok()
                    .flatten()
                    .map(|_| (target.kubeconfig.clone(), target.context.clone()))
            })
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
        self.reached
            .lock()
            .expect("reached lock")
            .extend(answered.into_iter().flatten());
    }
}

/// How long [`StepRunner::reach_all`] waits for a cluster before leaving it
/// to its first step.
const FIRST_ASK_TIMEOUT: Duration = Duration::from_secs(5);

impl Runner for StepRunner {
    type Output = Done;
    type Error = Failure;

    fn run(&self, task: &Task) -> TaskFuture<Done, Failure> {
        let env = self.env.clone();
        let id = task.id.clone();
        match task.action {
            TaskAction::Forget => {
                let log = match task.depends_on.join(", ") {
                    by if by.is_empty() => {
                        "released: left in the cluster as it is; mesh no longer manages it\n"
                            .to_string()
                    }
                    by => format!(
                        "handed over to {by}, which installs its revision now: nothing uninstalled\n"
                    ),
                };
                Box::pin(async move { Ok(Done::Deleted { log }) })
            }
            TaskAction::Apply => {
                let Some(step) = self.graph.get(&id).cloned() else {
                    return Box::pin(async move {
                        Err(Failure::of(format!("{id} is not a step of this mesh file")))
                    });
                };
                let state = self.state.clone();
                let targets = self.targets(task);
                let reached = self.reached.clone();
                Box::pin(async move {
                    reach(&env, &reached, &targets).await?;
                    // Upstream outputs as recorded by now: the executor starts
                    // a step only after its dependencies were recorded. Rendered
                    // here, in the task, not on the executor's loop: a fleet
                    // starts thousands of steps at once.
                    let (rendered, input, previous) = {
                        let st = state.lock().expect("state lock");
                        let lookup = |sid: &str, key: &str| match st
                            .steps
                            .get(sid)
                            .and_then(|r| r.outputs.get(key))
                        {
                            Some(v) => Known::Known(v.clone()),
                            None => Known::AfterApply,
                        };
                        let rendered = step.input.render(&lookup);
                        let input = planner::render_step(&step, &lookup);
                        let previous = st
                            .steps
                            .get(&id)
                            .map(|r| (r.input.clone(), r.outputs.clone()));
                        (rendered, input, previous)
                    };
                    let prev = previous.as_ref().map(|(i, o)| Recorded {
                        input: i,
                        outputs: o,
                    });
                    let cx = Ctx::new(&env, &id, &step.target);
                    match step.input.apply(cx, &rendered, prev.as_ref()).await {
                        Ok(applied) => Ok(Done::Applied { input, applied }),
                        Err(e) => Err(Failure {
                            input: Some(input),
                            error: message(&e),
                            unreached: None,
                            not_run: false,
                        }),
                    }
                })
            }
            TaskAction::Delete => {
                let record = self
                    .state
                    .lock()
                    .expect("state lock")
                    .steps
                    .get(&id)
                    .cloned();
                let targets = self.targets(task);
                let reached = self.reached.clone();
                Box::pin(async move {
                    let Some(rec) = record else {
                        return Ok(Done::Deleted { log: String::new() });
                    };
                    let kind: StepKind = rec.kind.parse().map_err(Failure::of)?;
                    reach(&env, &reached, &targets).await?;
                    let Some(target) = targets.into_iter().next() else {
                        return Err(Failure::of(format!("{id} has no cluster to delete from")));
                    };
                    let recorded = Recorded {
                        input: &rec.input,
                        outputs: &rec.outputs,
                    };
                    match kind.destroy(Ctx::new(&env, &id, &target), &recorded).await {
                        Ok(log) => Ok(Done::Deleted { log }),
                        // Nothing was sent: the record stays untainted.
                        Err(e @ StepError::NotRun(_)) => Err(Failure {
                            input: None,
                            error: message(&e),
                            unreached: None,
                            not_run: true,
                        }),
                        Err(e) => Err(Failure::of(message(&e))),
                    }
                })
            }
        }
    }
}

fn message(e: &StepError) -> String {
    e.to_string()
}

/// One apply: the plan, what it runs against, and what it tells the
/// caller as it goes.
pub struct Run<'a> {
    pub plan: &'a Plan,
    pub graph: Arc<StepGraph>,
    pub env: Arc<Env>,
    /// The state the plan was made against; each step is recorded in it.
    pub state: State,
    /// `--kubeconfig`, for deleting steps whose cluster left the mesh file.
    pub default_kubeconfig: Option<PathBuf>,
    pub limits: executor::Limits,
    /// Stop requests: graceful (no new step) or abort.
    pub stop: watch::Receiver<Stop>,
    /// Writes the state after a record (the CLI: under its lock). An error
    /// stops the run: running on without recording would lose track.
    pub persist: &'a mut dyn FnMut(&mut State) -> Result<(), String>,
    /// Asked before each batch of steps starts: an error (the lock is lost
    /// or asked away) starts none, and the run stops once the running
    /// steps are done and recorded.
    pub may_start: &'a dyn Fn() -> Result<(), String>,
    /// Told of each step's start and end.
    pub progress: &'a mut dyn FnMut(Progress<'_>),
    /// The time recorded with each step.
    pub now: fn() -> String,
}

/// Runs the plan's changes against the clusters, recording each step in
/// the state and calling `persist` after every record.
pub async fn apply(run: Run<'_>) -> (State, Outcome) {
    let Run {
        plan,
        graph,
        env,
        state,
        default_kubeconfig,
        limits,
        stop,
        persist,
        may_start,
        progress,
        now,
    } = run;
    let state = Arc::new(Mutex::new(state));
    let runner = Arc::new(StepRunner {
        graph: graph.clone(),
        env,
        state: state.clone(),
        default_kubeconfig,
        reached: Arc::default(),
    });
    let (halt_tx, halt_rx) = watch::channel(Stop::No);
    // Forward the caller's stop requests, and add our own when the state
    // cannot be written (running on without recording would lose track).
    let mut outer = stop;
    let forward = tokio::spawn({
        let halt_tx = halt_tx.clone();
        async move {
            loop {
                let s = *outer.borrow();
                // Copy out before sending: a borrow held across send deadlocks.
                let current = *halt_tx.borrow();
                let _ = halt_tx.send(s.max(current));
                if s == Stop::Abort || outer.changed().await.is_err() {
                    break;
                }
            }
        }
    });
    let mut recorder = Recorder {
        graph: &graph,
        actions: plan
            .changes
            .iter()
            .map(|c| (c.step.as_str(), c.action))
            .collect(),
        writer: PacedWriter {
            persist,
            pacer: Pacer::default(),
            dirty: false,
        },
        progress,
        may_start,
        lock_refused: None,
        now,
        halt: halt_tx,
        started_from: HashMap::new(),
        errors: BTreeMap::new(),
        unreached: BTreeMap::new(),
        state_error: None,
    };
    let tasks = tasks(plan, &graph);
    runner.reach_all(&tasks, limits.total).await;
    let report = executor::execute(tasks, runner, limits, halt_rx, |event| {
        recorder.on(event, &mut state.lock().expect("state lock"))
    })
    .await;
    forward.abort();
    // What the pacing left unwritten.
    // (Tried even after a failed write: it is fenced, and a lock asked
    // away still records the steps that ran.)
    if recorder.writer.dirty
        && let Err(e) = recorder
            .writer
            .write(&mut state.lock().expect("state lock"), true)
    {
        recorder.state_error.get_or_insert(e);
    }
    let state = Arc::try_unwrap(state)
        .map(|m| m.into_inner().expect("state lock"))
        .unwrap_or_else(|arc| arc.lock().expect("state lock").clone());
    (
        state,
        Outcome {
            report,
            errors: recorder.errors,
            state_error: recorder.state_error,
            unreached: recorder.unreached,
            lock_refused: recorder.lock_refused,
        },
    )
}

/// Writes the state after records: every write of a state of up to
/// [`PACED_ABOVE_STEPS`] steps (so a kill never leaves the state behind the
/// clusters). A larger state (thousands of steps, tens of milliseconds a
/// write) waits until twice its last write's duration has passed, so
/// writing never takes more than a third of the run; what a pause leaves
/// unwritten is written at the next event or at the end, and a crash in
/// between loses only records of steps that are safe to run again. A
/// forced write (a batch about to start, a failure) is never paced.
struct PacedWriter<'a> {
    persist: &'a mut dyn FnMut(&mut State) -> Result<(), String>,
    pacer: Pacer,
    /// Records not written yet.
    dirty: bool,
}

impl PacedWriter<'_> {
    fn write(&mut self, st: &mut State, force: bool) -> Result<(), String> {
        self.dirty = true;
        let large = st.steps.len() > PACED_ABOVE_STEPS;
        if !force && large && self.pacer.last.elapsed() < self.pacer.interval {
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        let r = (self.persist)(st);
        self.pacer.last = std::time::Instant::now();
        self.pacer.interval = t0.elapsed() * 2;
        if r.is_ok() {
            self.dirty = false;
        }
        r
    }
}

/// Records each executor event in the state, and tells the caller.
struct Recorder<'a, 'p> {
    graph: &'a StepGraph,
    actions: BTreeMap<&'a str, Action>,
    writer: PacedWriter<'p>,
    progress: &'p mut dyn FnMut(Progress<'_>),
    may_start: &'p dyn Fn() -> Result<(), String>,
    lock_refused: Option<String>,
    now: fn() -> String,
    /// Stops the run when the state cannot be written.
    halt: watch::Sender<Stop>,
    /// Each running step's record from before it started, put back when
    /// the step turns out never to have reached its cluster.
    started_from: HashMap<String, Option<StepRecord>>,
    errors: BTreeMap<String, String>,
    unreached: BTreeMap<String, String>,
    state_error: Option<String>,
}

impl Recorder<'_, '_> {
    fn action(&self, id: &str) -> Action {
        self.actions.get(id).copied().unwrap_or(Action::Update)
    }

    fn on(&mut self, event: Event<'_, Done, Failure>, st: &mut State) {
        match event {
            Event::Starting(batch) => self.starting(batch, st),
            Event::Finished {
                task,
                result,
                elapsed,
            } => self.finished(&task.id, result, elapsed, st),
            Event::Aborted(t) => {
                self.started_from.remove(&t.id);
                let input = current_input(st, self.graph, &t.id);
                taint(st, self.graph, &t.id, input.as_ref(), (self.now)());
                if let Err(e) = self.writer.write(st, true) {
                    self.state_error.get_or_insert(e);
                }
                (self.progress)(Progress::Aborted { step: &t.id });
            }
        }
    }

    /// A write that failed: said, kept, and the run stops.
    fn state_failed(&mut self, e: String) {
        (self.progress)(Progress::StateError { error: &e });
        self.state_error.get_or_insert(e);
        let _ = self.halt.send(Stop::Graceful);
    }

    /// Recorded tainted, durably, before any of them runs: if mesh dies
    /// while a step runs (kill -9, a crash, a lost terminal), the state
    /// already says its work may be half done, and the next apply runs it
    /// again; finishing records it applied. A write that fails starts none
    /// of them (the stop vetoes the batch): no step ever runs unrecorded.
    fn starting(&mut self, batch: &[&Task], st: &mut State) {
        if let Err(e) = (self.may_start)() {
            // Nothing of the batch starts (the stop vetoes it); the running
            // steps finish and are recorded.
            self.lock_refused.get_or_insert(e);
            let _ = self.halt.send(Stop::Graceful);
            return;
        }
        let before: Vec<_> = batch
            .iter()
            .map(|t| (t.id.clone(), st.steps.get(&t.id).cloned()))
            .collect();
        for t in batch {
            let input = current_input(st, self.graph, &t.id);
            taint(st, self.graph, &t.id, input.as_ref(), (self.now)());
        }
        if let Err(e) = self.writer.write(st, true) {
            // Never started: the records stay as they were.
            for (id, rec) in before {
                match rec {
                    Some(rec) => st.steps.insert(id, rec),
                    None => st.steps.remove(&id),
                };
            }
            self.state_failed(e);
            return;
        }
        self.started_from.extend(before);
        for t in batch {
            let action = self.action(&t.id);
            (self.progress)(Progress::Started {
                step: &t.id,
                action,
            })
        }
    }

    fn finished(
        &mut self,
        id: &str,
        result: &Result<Done, Failure>,
        elapsed: Duration,
        st: &mut State,
    ) {
        let action = self.action(id);
        let previous = self.started_from.remove(id);
        match result {
            Ok(Done::Applied { input, applied }) => {
                if let Some(step) = self.graph.get(id) {
                    let rec = planner::record(
                        step,
                        self.graph,
                        input,
                        applied.outputs.clone(),
                        Status::Applied,
                        (self.now)(),
                    );
                    st.steps.insert(id.to_string(), rec);
                }
                (self.progress)(Progress::Finished {
                    step: id,
                    action,
                    elapsed,
                    log: &applied.log,
                });
            }
            Ok(Done::Deleted { log }) => {
                st.steps.remove(id);
                (self.progress)(Progress::Finished {
                    step: id,
                    action,
                    elapsed,
                    log,
                });
            }
            Err(f) => {
                let error = match (&f.unreached, previous) {
                    // Stopped before it sent anything: the record as it was.
                    (None, Some(previous)) if f.not_run => {
                        match previous {
                            Some(rec) => st.steps.insert(id.to_string(), rec),
                            None => st.steps.remove(id),
                        };
                        format!(
                            "{}. Nothing was sent to the cluster; the step's record is as it was",
                            f.error
                        )
                    }
                    // Nothing was sent that could change a cluster: the
                    // record stays as it was before the run.
                    (Some(cluster), Some(previous)) => {
                        let what = match previous {
                            Some(rec) => {
                                st.steps.insert(id.to_string(), rec);
                                "its record is as it was"
                            }
                            None => {
                                st.steps.remove(id);
                                "it is not recorded"
                            }
                        };
                        self.unreached.insert(id.to_string(), cluster.clone());
                        format!(
                            "{}. It never reached cluster `{cluster}`, so nothing changed there and {what}",
                            f.error
                        )
                    }
                    _ => {
                        taint(st, self.graph, id, f.input.as_ref(), (self.now)());
                        f.error.clone()
                    }
                };
                self.errors.insert(id.to_string(), error.clone());
                (self.progress)(Progress::Failed {
                    step: id,
                    action,
                    elapsed,
                    error: &error,
                    log: "",
                });
            }
        }
        // A failure is written at once: the run stops after it.
        if let Err(e) = self.writer.write(st, result.is_err()) {
            self.state_failed(e);
        }
    }
}

/// A state of more steps than this has its writes paced (see `apply`).
const PACED_ABOVE_STEPS: usize = 300;

/// When the state was last written, and how long until the next write.
struct Pacer {
    last: std::time::Instant,
    interval: Duration,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            last: std::time::Instant::now() - Duration::from_secs(3600),
            interval: Duration::ZERO,
        }
    }
}

/// A step's input rendered with the outputs recorded so far.
fn current_input(st: &State, graph: &StepGraph, id: &str) -> Option<RenderedInput> {
    graph.get(id).map(|step| {
        let lookup = |sid: &str, key: &str| match st.steps.get(sid).and_then(|r| r.outputs.get(key))
        {
            Some(v) => Known::Known(v.clone()),
            None => Known::AfterApply,
        };
        planner::render_step(step, &lookup)
    })
}

/// Marks a step tainted: a failed create is recorded with the input it tried;
/// a failed update or delete keeps its record, marked.
fn taint(st: &mut State, graph: &StepGraph, id: &str, input: Option<&RenderedInput>, now: String) {
    if let Some(rec) = st.steps.get_mut(id) {
        rec.status = Status::Tainted;
        rec.updated_at = now;
        return;
    }
    if let (Some(step), Some(input)) = (graph.get(id), input) {
        let rec = planner::record(
            step,
            graph,
            input,
            BTreeMap::<String, Value>::new(),
            Status::Tainted,
            now,
        );
        st.steps.insert(id.to_string(), rec);
    }
}
