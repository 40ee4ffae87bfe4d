//! The executor: runs a plan's tasks on tokio in dependency order, at most
//! `parallelism` at once, each as soon as what it depends on has finished.
//!
//! It knows tasks, dependencies and outcomes, nothing of what a task does: a
//! [`Runner`] does the work and the caller's `on_event` records it (the CLI
//! writes the state the moment a task finishes). Deletes run first, a step
//! before the steps it depended on; then creates and updates, a step after
//! its dependencies.
//!
//! After a failure no new task starts; running ones finish. A stop request
//! ([`Stop::Graceful`], the first Ctrl-C) does the same; [`Stop::Abort`] (the
//! second) also drops the running tasks, which are reported as aborted.
//!
//! Tasks start in batches, each announced by one [`Event::Starting`] before
//! any of them runs, so the caller can record them durably first (one state
//! write a batch) and veto the batch by requesting a stop. Tasks that end
//! together are handled together, so a batch gathers what they unblocked.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What a task does to its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskAction {
    /// Create or update: runs after its dependencies.
    Apply,
    /// Runs before the steps it depended on.
    Delete,
    /// Drops a step's record without touching a cluster (a handed-over
    /// kept install, `crate::upgrades::Handover`; a released tag,
    /// `crate::upgrades::released_tags`): runs, as an apply does, after its
    /// dependencies (the install that took its revision over).
    Forget,
}

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub action: TaskAction,
    /// Step IDs this step depends on. Those not among the tasks are taken as
    /// already done.
    pub depends_on: Vec<String>,
    /// The groups the task counts against: each runs at most
    /// [`Limits::per_group`] tasks at once (the caller groups by the API
    /// servers a step talks to; a step that talks to two is in both).
    /// Empty: only the total limit applies.
    pub groups: Vec<String>,
}

/// How many tasks may run at once: in total, and per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_group: usize,
}

impl From<usize> for Limits {
    fn from(total: usize) -> Limits {
        Limits {
            total,
            per_group: usize::MAX,
        }
    }
}

/// A future a runner returns for one task.
pub type TaskFuture<O, E> = Pin<Box<dyn Future<Output = Result<O, E>> + Send + 'static>>;

/// Does the work of a task.
pub trait Runner: Send + Sync + 'static {
    type Output: Send + 'static;
    type Error: Send + 'static;
    fn run(&self, task: &Task) -> TaskFuture<Self::Output, Self::Error>;
}

/// A request to stop, sent on the watch channel given to [`execute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep going.
    No,
    /// Start nothing new; let running tasks finish.
    Graceful,
    /// Also abandon running tasks.
    Abort,
}

/// What happened, as it happens.
#[derive(Debug)]
pub enum Event<'a, O, E> {
    /// These tasks are about to start, together. None has started yet: if
    /// the handler requests a stop (it could not record them), none starts.
    Starting(&'a [&'a Task]),
    Finished {
        task: &'a Task,
        result: &'a Result<O, E>,
        elapsed: Duration,
    },
    /// The task was running when an abort was requested; its work may be half done.
    Aborted(&'a Task),
}

/// The end of a run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub succeeded: Vec<String>,
    pub failed: Vec<String>,
    pub aborted: Vec<String>,
    /// Tasks that never started (after a failure or a stop).
    pub not_started: Vec<String>,
    /// A stop was requested.
    pub stopped: bool,
}

impl Report {
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.aborted.is_empty() && self.not_started.is_empty()
    }
}

/// A finished task: its index, result and run time.
type Finished<R> = (
    usize,
    Result<<R as Runner>::Output, <R as Runner>::Error>,
    Duration,
);

/// Runs `tasks`. `on_event` is called on the executor's own task, one event
/// at a time, so it may write the state without further locking.
pub async fn execute<R: Runner>(
    tasks: Vec<Task>,
    runner: Arc<R>,
    limits: impl Into<Limits>,
    mut stop: watch::Receiver<Stop>,
    mut on_event: impl FnMut(Event<'_, R::Output, R::Error>),
) -> Report {
    let limits = limits.into();
    let parallelism = limits.total.max(1);
    let per_group = limits.per_group.max(1);
    // Groups as indices, and how many tasks of each run now.
    let (task_groups, group_count) = intern_groups(&tasks);
    let mut slots = Slots {
        task_groups,
        in_group: vec![0usize; group_count],
        per_group,
        parallelism,
    };
    let mut queue = Queue::new(&tasks);
    let mut running: JoinSet<Finished<R>> = JoinSet::new();
    let mut started: HashSet<usize> = HashSet::new();
    // Which task each tokio task runs, so a panicked one can be named.
    let mut spawned: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut report = Report::default();
    let mut halted = false;
    let mut stop_open = true;
    loop {
        if *stop.borrow() >= Stop::Graceful {
            halted = true;
            report.stopped = true;
        }
        if *stop.borrow() == Stop::Abort {
            break;
        }
        if !halted && running.len() < parallelism {
            let batch = slots.take(&mut queue.ready, running.len());
            if !batch.is_empty() {
                let announced: Vec<&Task> = batch.iter().map(|&i| &tasks[i]).collect();
                on_event(Event::Starting(&announced));
                if *stop.borrow() >= Stop::Graceful {
                    // Vetoed (or stopped meanwhile): none of them started.
                    for &i in &batch {
                        slots.release(i);
                    }
                    halted = true;
                    report.stopped = true;
                    if *stop.borrow() == Stop::Abort {
                        break;
                    }
                } else {
                    for i in batch {
                        started.insert(i);
                        let handle = spawn(&mut running, &*runner, &tasks, i);
                        spawned.insert(handle, i);
                    }
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next_with_id() => {
                // This task, and every other that has finished meanwhile:
                // what they unblock starts as one batch.
                let mut next = joined;
                while let Some(joined) = next.take() {
                    next = running.try_join_next_with_id();
                    let (i, result, elapsed) = match joined {
                        Ok((_, v)) => v,
                        // A runner that panicked (a bug): its work may be half
                        // done, so it is reported as aborted (the caller taints
                        // it) and nothing new starts.
                        Err(e) => {
                            if let Some(&i) = spawned.get(&e.id()) {
                                slots.release(i);
                                on_event(Event::Aborted(&tasks[i]));
                                report.aborted.push(tasks[i].id.clone());
                            }
                            halted = true;
                            continue;
                        }
                    };
                    let task = &tasks[i];
                    slots.release(i);
                    on_event(Event::Finished { task, result: &result, elapsed });
                    match result {
                        Ok(_) => {
                            report.succeeded.push(task.id.clone());
                            queue.finished(i);
                        }
                        Err(_) => {
                            report.failed.push(task.id.clone());
                            halted = true;
                        }
                    }
                }
            }
            changed = stop.changed(), if stop_open => {
                // A closed channel means nobody can ask us to stop any more.
                stop_open = changed.is_ok();
            }
        }
    }

    // An abort leaves running tasks behind: drop them and say so.
    if !running.is_empty() {
        running.abort_all();
        for i in unfinished(&tasks, &started, &report) {
            on_event(Event::Aborted(&tasks[i]));
            report.aborted.push(tasks[i].id.clone());
        }
        while running.join_next().await.is_some() {}
    }
    report.not_started = (0..tasks.len())
        .filter(|i| !started.contains(i))
        .map(|i| tasks[i].id.clone())
        .collect();
    report
}

/// Starts task `i` on `running`, timed; returns its tokio task's ID.
fn spawn<R: Runner>(
    running: &mut JoinSet<Finished<R>>,
    runner: &R,
    tasks: &[Task],
    i: usize,
) -> tokio::task::Id {
    let fut = runner.run(&tasks[i]);
    running
        .spawn(async move {
            let t0 = Instant::now();
            let result = fut.await;
            (i, result, t0.elapsed())
        })
        .id()
}

/// The tasks still to start, ready first.
struct Queue {
    /// Ready tasks, sorted by rank.
    ready: Vec<usize>,
    /// How many unfinished blockers each task has.
    remaining: Vec<usize>,
    waiters: Vec<Vec<usize>>,
    /// Each task's longest chain of tasks waiting behind it.
    height: Vec<usize>,
}

impl Queue {
    fn new(tasks: &[Task]) -> Queue {
        let waits = WaitGraph::new(tasks);
        let height = waits.heights();
        let remaining: Vec<usize> = waits.blockers.iter().map(Vec::len).collect();
        let mut q = Queue {
            ready: (0..tasks.len()).filter(|&i| remaining[i] == 0).collect(),
            remaining,
            waiters: waits.waiters,
            height,
        };
        let mut ready = std::mem::take(&mut q.ready);
        ready.sort_by_key(|&i| q.rank(i));
        q.ready = ready;
        q
    }

    /// Longest chain first: of the ready tasks, the one with the most tasks
    /// waiting behind it in a row starts first (then plan order), so a
    /// limit spends its slots on the critical path before the leaves.
    fn rank(&self, i: usize) -> (std::cmp::Reverse<usize>, usize) {
        (std::cmp::Reverse(self.height[i]), i)
    }

    /// Task `i` succeeded: the tasks it was the last blocker of are ready.
    fn finished(&mut self, i: usize) {
        for k in 0..self.waiters[i].len() {
            let w = self.waiters[i][k];
            self.remaining[w] -= 1;
            if self.remaining[w] == 0 {
                let pos = self.ready.partition_point(|&r| self.rank(r) < self.rank(w));
                self.ready.insert(pos, w);
            }
        }
    }
}

/// The limits: how many tasks run, in total and per group.
struct Slots {
    task_groups: Vec<Vec<usize>>,
    /// How many tasks of each group run now.
    in_group: Vec<usize>,
    per_group: usize,
    parallelism: usize,
}

impl Slots {
    /// One pass over the `ready` tasks, in rank order: each whose groups
    /// all have room joins the batch, until the total limit is reached
    /// (`running` run already). The rest stay ready.
    fn take(&mut self, ready: &mut Vec<usize>, running: usize) -> Vec<usize> {
        let mut kept = Vec::with_capacity(ready.len());
        let mut batch = Vec::new();
        for i in std::mem::take(ready) {
            let room = running + batch.len() < self.parallelism
                && self.task_groups[i]
                    .iter()
                    .all(|&g| self.in_group[g] < self.per_group);
            if !room {
                kept.push(i);
                continue;
            }
            for &g in &self.task_groups[i] {
                self.in_group[g] += 1;
            }
            batch.push(i);
        }
        *ready = kept;
        batch
    }

    /// Task `i` no longer runs.
    fn release(&mut self, i: usize) {
        for &g in &self.task_groups[i] {
            self.in_group[g] = self.in_group[g].saturating_sub(1);
        }
    }
}

/// The started tasks the report does not say finished, in plan order.
fn unfinished(tasks: &[Task], started: &HashSet<usize>, report: &Report) -> Vec<usize> {
    let finished: HashSet<&String> = report
        .succeeded
        .iter()
        .chain(&report.failed)
        .chain(&report.aborted)
        .collect();
    let mut unfinished: Vec<usize> = started
        .iter()
        .copied()
        .filter(|&i| !finished.contains(&tasks[i].id))
        .collect();
    unfinished.sort();
    unfinished
}

/// The tasks that can never start because they wait for each other in a
/// cycle (only a hand-edited state or saved plan has one), sorted; None
/// when every task can run. Checked before a run, so such tasks are an
/// error that names them rather than "not started".
pub fn blocked_by_cycle(tasks: &[Task]) -> Option<Vec<String>> {
    let waits = WaitGraph::new(tasks);
    let mut remaining: Vec<usize> = waits.blockers.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..tasks.len()).filter(|&i| remaining[i] == 0).collect();
    let mut done = vec![false; tasks.len()];
    while let Some(i) = ready.pop() {
        done[i] = true;
        for &w in &waits.waiters[i] {
            remaining[w] -= 1;
            if remaining[w] == 0 {
                ready.push(w);
            }
        }
    }
    let mut stuck: Vec<String> = (0..tasks.len())
        .filter(|&i| !done[i])
        .map(|i| tasks[i].id.clone())
        .collect();
    stuck.sort();
    (!stuck.is_empty()).then_some(stuck)
}

/// Each task's groups as indices into one numbering of all groups, and how
/// many groups there are.
fn intern_groups(tasks: &[Task]) -> (Vec<Vec<usize>>, usize) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let groups = tasks
        .iter()
        .map(|t| {
            let mut ids: Vec<usize> = t
                .groups
                .iter()
                .map(|g| {
                    let next = index.len();
                    *index.entry(g.as_str()).or_insert(next)
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        })
        .collect();
    (groups, index.len())
}

/// Who waits for whom. An apply waits for its dependencies; a delete waits
/// for the deletes of the steps that depended on it; every apply waits for
/// every delete.
struct WaitGraph {
    /// blockers[i]: the tasks i waits for.
    blockers: Vec<Vec<usize>>,
    /// waiters[i]: the tasks waiting for i.
    waiters: Vec<Vec<usize>>,
}

impl WaitGraph {
    fn new(tasks: &[Task]) -> WaitGraph {
        let index: HashMap<&str, usize> = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut blockers: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
        let deletes: Vec<usize> = (0..tasks.len())
            .filter(|&i| tasks[i].action == TaskAction::Delete)
            .collect();
        for (i, t) in tasks.iter().enumerate() {
            match t.action {
                TaskAction::Apply | TaskAction::Forget => {
                    for d in &t.depends_on {
                        if let Some(&j) = index.get(d.as_str())
                            && tasks[j].action == TaskAction::Apply
                        {
                            blockers[i].push(j);
                        }
                    }
                    blockers[i].extend(&deletes);
                }
                TaskAction::Delete => {
                    // i depended on d, so d is deleted after i.
                    for d in &t.depends_on {
                        if let Some(&j) = index.get(d.as_str())
                            && tasks[j].action == TaskAction::Delete
                        {
                            blockers[j].push(i);
                        }
                    }
                }
            }
        }
        let mut waiters: Vec<Vec<usize>> = vec![Vec::new(); tasks.len()];
        for (i, bs) in blockers.iter_mut().enumerate() {
            bs.sort();
            bs.dedup();
            for &b in bs.iter() {
                waiters[b].push(i);
            }
        }
        WaitGraph { blockers, waiters }
    }

    /// For each task, how many tasks wait behind it in a row at most (0 for
    /// one nothing waits for). Tasks in a cycle, which never run, get 0.
    fn heights(&self) -> Vec<usize> {
        let mut unplaced: Vec<usize> = self.waiters.iter().map(Vec::len).collect();
        let mut height = vec![0; unplaced.len()];
        let mut placed: Vec<usize> = (0..unplaced.len()).filter(|&i| unplaced[i] == 0).collect();
        while let Some(i) = placed.pop() {
            for &b in &self.blockers[i] {
                height[b] = height[b].max(height[i] + 1);
                unplaced[b] -= 1;
                if unplaced[b] == 0 {
                    placed.push(b);
                }
            }
        }
        height
    }
}

#[cfg(test)]
mod cycle_tests {
    use super::*;

    fn task(id: &str, action: TaskAction, deps: &[&str]) -> Task {
        Task {
            id: id.into(),
            action,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            groups: Vec::new(),
        }
    }

    #[test]
    fn a_cycle_is_found_and_named() {
        let ok = [
            task("a", TaskAction::Apply, &[]),
            task("b", TaskAction::Apply, &["a"]),
        ];
        assert_eq!(blocked_by_cycle(&ok), None);
        let cyclic = [
            task("a", TaskAction::Apply, &["c"]),
            task("b", TaskAction::Apply, &["a"]),
            task("c", TaskAction::Apply, &["b"]),
            task("d", TaskAction::Apply, &[]),
        ];
        assert_eq!(
            blocked_by_cycle(&cyclic),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        let deletes = [
            task("x", TaskAction::Delete, &["y"]),
            task("y", TaskAction::Delete, &["x"]),
        ];
        assert_eq!(
            blocked_by_cycle(&deletes),
            Some(vec!["x".into(), "y".into()])
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A runner whose tasks sleep for a set time and may fail, and which
    /// records the moments tasks start and end.
    struct Fake {
        delay: HashMap<String, u64>,
        fail: HashSet<String>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Runner for Fake {
        type Output = ();
        type Error = String;
        fn run(&self, task: &Task) -> TaskFuture<(), String> {
            let id = task.id.clone();
            let ms = self.delay.get(&id).copied().unwrap_or(10);
            let fail = self.fail.contains(&id);
            let log = self.log.clone();
            Box::pin(async move {
                log.lock().unwrap().push(format!("start {id}"));
                tokio::time::sleep(Duration::from_millis(ms)).await;
                log.lock().unwrap().push(format!("end {id}"));
                if fail {
                    Err(format!("{id} failed"))
                } else {
                    Ok(())
                }
            })
        }
    }

    fn apply(id: &str, deps: &[&str]) -> Task {
        Task {
            id: id.into(),
            action: TaskAction::Apply,
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            groups: Vec::new(),
        }
    }

    fn delete(id: &str, deps: &[&str]) -> Task {
        Task {
            action: TaskAction::Delete,
            ..apply(id, deps)
        }
    }

    fn fake(delays: &[(&str, u64)], fail: &[&str]) -> (Arc<Fake>, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let f = Fake {
            delay: delays.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            fail: fail.iter().map(|s| s.to_string()).collect(),
            log: log.clone(),
        };
        (Arc::new(f), log)
    }

    fn pos(log: &[String], what: &str) -> usize {
        log.iter()
            .position(|l| l == what)
            .unwrap_or_else(|| panic!("{what} not in {log:?}"))
    }

    async fn run(tasks: Vec<Task>, runner: Arc<Fake>, par: usize) -> Report {
        let (_tx, rx) = watch::channel(Stop::No);
        execute(tasks, runner, par, rx, |_| {}).await
    }

    /// Per group at most `per_group` at once; other groups are not held up.
    #[tokio::test(start_paused = true)]
    async fn a_group_never_runs_more_than_its_limit() {
        let grouped = |id: &str, g: &str| Task {
            groups: vec![g.into()],
            ..apply(id, &[])
        };
        let mut tasks: Vec<Task> = (0..6)
            .map(|i| grouped(&format!("p{i}"), "primary"))
            .collect();
        tasks.extend((0..4).map(|i| grouped(&format!("r{i}"), &format!("remote{i}"))));
        let (r, log) = fake(&[], &[]);
        let t0 = tokio::time::Instant::now();
        let (_tx, rx) = watch::channel(Stop::No);
        let report = execute(
            tasks,
            r,
            Limits {
                total: 64,
                per_group: 2,
            },
            rx,
            |_| {},
        )
        .await;
        assert!(report.is_success());
        // 6 tasks of 10 ms, two at a time: 30 ms; the remotes ran beside them.
        assert_eq!(t0.elapsed(), Duration::from_millis(30));
        let log = log.lock().unwrap().clone();
        let mut running = 0usize;
        let mut most = 0usize;
        for l in &log {
            if l.starts_with("start p") {
                running += 1;
                most = most.max(running);
            } else if l.starts_with("end p") {
                running -= 1;
            }
        }
        assert_eq!(most, 2, "{log:?}");
        assert!(pos(&log, "start r3") < pos(&log, "end p0"), "{log:?}");
    }

    /// A task in two groups (a step that talks to two API servers) needs
    /// room in both.
    #[tokio::test(start_paused = true)]
    async fn a_task_in_two_groups_counts_against_both() {
        let in_groups = |id: &str, gs: &[&str]| Task {
            groups: gs.iter().map(|g| g.to_string()).collect(),
            ..apply(id, &[])
        };
        let tasks = vec![
            in_groups("r1/attach@p", &["r1", "p"]),
            in_groups("r2/attach@p", &["r2", "p"]),
            in_groups("r3/attach@p", &["r3", "p"]),
            in_groups("r1/other", &["r1"]),
        ];
        let (r, log) = fake(&[], &[]);
        let t0 = tokio::time::Instant::now();
        let (_tx, rx) = watch::channel(Stop::No);
        let limits = Limits {
            total: 64,
            per_group: 1,
        };
        let report = execute(tasks, r, limits, rx, |_| {}).await;
        assert!(report.is_success());
        // p admits one at a time: three 10 ms tasks in a row; r1/other
        // waits for r1's slot, then runs beside r2's attach.
        assert_eq!(t0.elapsed(), Duration::from_millis(30));
        let log = log.lock().unwrap().clone();
        assert!(
            pos(&log, "end r1/attach@p") < pos(&log, "start r2/attach@p"),
            "{log:?}"
        );
        assert!(
            pos(&log, "end r1/attach@p") < pos(&log, "start r1/other"),
            "{log:?}"
        );
        assert!(
            pos(&log, "start r1/other") < pos(&log, "end r2/attach@p"),
            "{log:?}"
        );
    }

    /// Under a limit, the ready task with the longest chain behind it starts
    /// first, whatever its place in the plan.
    #[tokio::test(start_paused = true)]
    async fn the_longest_chain_starts_first() {
        let (r, log) = fake(&[], &[]);
        let t0 = tokio::time::Instant::now();
        let report = run(
            vec![
                apply("leaf1", &[]),
                apply("leaf2", &[]),
                apply("a", &[]),
                apply("b", &["a"]),
                apply("c", &["b"]),
            ],
            r,
            1,
        )
        .await;
        assert!(report.is_success());
        assert_eq!(t0.elapsed(), Duration::from_millis(50));
        let log = log.lock().unwrap().clone();
        let starts: Vec<&str> = log
            .iter()
            .filter_map(|l| l.strip_prefix("start "))
            .collect();
        // a (two behind it) first, then b (one) before the leaves; c,
        // a leaf like them, comes after those before it in the plan.
        assert_eq!(starts, ["a", "b", "leaf1", "leaf2", "c"], "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn dependencies_run_first_and_independent_tasks_overlap() {
        let (r, log) = fake(&[("a", 100), ("b", 100)], &[]);
        let t0 = tokio::time::Instant::now();
        let report = run(
            vec![apply("a", &[]), apply("b", &[]), apply("c", &["a", "b"])],
            r,
            10,
        )
        .await;
        assert!(report.is_success());
        let log = log.lock().unwrap().clone();
        assert!(pos(&log, "end a") < pos(&log, "start c"));
        assert!(pos(&log, "end b") < pos(&log, "start c"));
        // a and b ran side by side: 100 + 10, not 210.
        assert!(
            t0.elapsed() < Duration::from_millis(150),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn parallelism_limits_running_tasks() {
        let (r, _) = fake(&[], &[]);
        let tasks: Vec<Task> = (0..8).map(|i| apply(&format!("t{i}"), &[])).collect();
        let t0 = tokio::time::Instant::now();
        let report = run(tasks, r, 2).await;
        assert_eq!(report.succeeded.len(), 8);
        // 8 tasks of 10 ms, 2 at a time: 40 ms.
        let e = t0.elapsed();
        assert!(
            e >= Duration::from_millis(40) && e < Duration::from_millis(50),
            "{e:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_starts_nothing_new_but_lets_running_tasks_finish() {
        let (r, log) = fake(&[("slow", 100), ("bad", 10)], &["bad"]);
        let report = run(
            vec![
                apply("slow", &[]),
                apply("bad", &[]),
                apply("after", &["bad"]),
                apply("later", &["slow"]),
            ],
            r,
            10,
        )
        .await;
        assert_eq!(report.failed, ["bad"]);
        assert_eq!(report.succeeded, ["slow"]);
        assert_eq!(report.not_started, ["after", "later"]);
        assert!(log.lock().unwrap().contains(&"end slow".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn deletes_run_in_reverse_dependency_order_before_applies() {
        let (r, log) = fake(&[], &[]);
        let report = run(
            vec![
                delete("child", &["parent"]),
                delete("parent", &[]),
                apply("new", &[]),
            ],
            r,
            10,
        )
        .await;
        assert!(report.is_success());
        let log = log.lock().unwrap().clone();
        assert!(pos(&log, "end child") < pos(&log, "start parent"));
        assert!(pos(&log, "end parent") < pos(&log, "start new"));
    }

    /// A forget (a handed-over record) runs after the apply it depends on,
    /// and not at all when that apply fails: the record stays.
    #[tokio::test(start_paused = true)]
    async fn a_forget_runs_after_its_dependency_and_never_after_its_failure() {
        let forget = |id: &str, deps: &[&str]| Task {
            action: TaskAction::Forget,
            ..apply(id, deps)
        };
        let (r, log) = fake(&[("taker", 50)], &[]);
        let report = run(
            vec![
                forget("old", &["taker"]),
                apply("taker", &[]),
                delete("gone", &[]),
            ],
            r,
            10,
        )
        .await;
        assert!(report.is_success());
        let log = log.lock().unwrap().clone();
        assert!(pos(&log, "end gone") < pos(&log, "start taker"));
        assert!(pos(&log, "end taker") < pos(&log, "start old"));
        let (r, log) = fake(&[], &["taker"]);
        let report = run(vec![forget("old", &["taker"]), apply("taker", &[])], r, 10).await;
        assert!(!report.is_success());
        assert!(!log.lock().unwrap().contains(&"start old".to_string()));
    }

    #[tokio::test(start_paused = true)]
    async fn graceful_stop_finishes_running_and_abort_drops_them() {
        let (r, _) = fake(&[("a", 100), ("b", 100)], &[]);
        let (tx, rx) = watch::channel(Stop::No);
        let handle = tokio::spawn(execute(
            vec![apply("a", &[]), apply("b", &["a"])],
            r,
            10,
            rx,
            |_| {},
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(Stop::Graceful).unwrap();
        let report = handle.await.unwrap();
        assert!(report.stopped);
        assert_eq!(report.succeeded, ["a"]);
        assert_eq!(report.not_started, ["b"]);

        let (r, _) = fake(&[("a", 1000)], &[]);
        let (tx, rx) = watch::channel(Stop::No);
        let aborted = Arc::new(Mutex::new(Vec::new()));
        let seen = aborted.clone();
        let handle = tokio::spawn(execute(vec![apply("a", &[])], r, 10, rx, move |e| {
            if let Event::Aborted(t) = e {
                seen.lock().unwrap().push(t.id.clone());
            }
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(Stop::Abort).unwrap();
        let report = handle.await.unwrap();
        assert_eq!(report.aborted, ["a"]);
        assert_eq!(*aborted.lock().unwrap(), ["a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn events_come_in_order_for_each_task() {
        let (r, _) = fake(&[], &["x"]);
        let (_tx, rx) = watch::channel(Stop::No);
        let mut events = Vec::new();
        execute(vec![apply("x", &[])], r, 1, rx, |e| {
            events.push(match e {
                Event::Starting(batch) => {
                    let ids: Vec<&str> = batch.iter().map(|t| t.id.as_str()).collect();
                    format!("started {}", ids.join(" "))
                }
                Event::Finished { task, result, .. } => {
                    format!("finished {} {}", task.id, result.is_ok())
                }
                Event::Aborted(t) => format!("aborted {}", t.id),
            })
        })
        .await;
        assert_eq!(events, ["started x", "finished x false"]);
    }

    /// A stop requested while a batch is announced (the caller could not
    /// record it) starts none of the batch; what ran before finishes.
    #[tokio::test(start_paused = true)]
    async fn a_batch_vetoed_when_announced_never_starts() {
        let (r, log) = fake(&[("a", 10), ("b", 10), ("c", 10)], &[]);
        let (tx, rx) = watch::channel(Stop::No);
        let announced = Arc::new(Mutex::new(Vec::new()));
        let seen = announced.clone();
        let report = execute(
            vec![apply("a", &[]), apply("b", &["a"]), apply("c", &["a"])],
            r,
            10,
            rx,
            move |e| {
                if let Event::Starting(batch) = e {
                    let ids: Vec<String> = batch.iter().map(|t| t.id.clone()).collect();
                    if ids.contains(&"b".to_string()) {
                        tx.send(Stop::Graceful).unwrap();
                    }
                    seen.lock().unwrap().push(ids);
                }
            },
        )
        .await;
        assert_eq!(
            *announced.lock().unwrap(),
            [
                vec!["a".to_string()],
                vec!["b".to_string(), "c".to_string()]
            ],
            "b and c, unblocked together, are one batch"
        );
        assert_eq!(report.succeeded, ["a"]);
        assert_eq!(report.not_started, ["b", "c"]);
        assert!(report.stopped);
        let log = log.lock().unwrap();
        assert!(
            !log.iter().any(|l| l.contains('b') || l.contains('c')),
            "{log:?}"
        );
    }
}
