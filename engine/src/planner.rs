//! The planner: step graph + recorded state (+ refresh) → plan. Pure.
//!
//! For each step of the graph, in dependency order, it renders the step's
//! input with the upstream outputs it knows (from the refresh, else from the
//! state; unknown when the upstream step is about to run) and compares the
//! fingerprint with the recorded one. Steps recorded in the state but no
//! longer in the graph are deleted first, in reverse dependency order.
//!
//! [`Options`] are Terraform's verbs: `--replace` (run a step again),
//! `--target` (only some steps and what they depend on) and
//! `--refresh-only` (record what the clusters are, change nothing).

use crate::graph::{GraphBuilder, Node};
use crate::topology::{Step, StepGraph};
use plans::{Action, Change, Drift, Plan};
use providers::{Known, Observation, Rendered, sha256_hex};
use serde_json::Value;
use state::{State, Status, StepRecord};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What the refresh saw, keyed by step ID. Steps not in it were not read.
pub type Refresh = BTreeMap<String, Observation>;

/// Whether to converge the clusters on the mesh file or remove everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Converge,
    Destroy,
}

/// A step's input as the planner rendered it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedInput {
    /// `# context: <ctx>` then the documents' YAML: what is diffed and stored.
    pub text: String,
    /// sha256 of `text`.
    pub fingerprint: String,
    /// Some value is known only after apply.
    pub unknown: bool,
}

/// Renders one step with the given output lookup into its canonical text.
pub fn render_step(step: &Step, lookup: &dyn Fn(&str, &str) -> Known<Value>) -> RenderedInput {
    let rendered: Rendered = step.input.render(lookup);
    let text = format!("# context: {}\n{}", step.target.context, rendered.to_yaml());
    RenderedInput {
        fingerprint: sha256_hex(text.as_bytes()),
        text,
        unknown: rendered.unknown,
    }
}

/// Plans `graph` against `state`.
pub fn plan(
    mesh_id: &str,
    graph: &StepGraph,
    state: Option<&State>,
    refresh: Option<&Refresh>,
    mode: Mode,
) -> Plan {
    plan_with(mesh_id, graph, state, refresh, mode, &Options::default())
}

/// What `--replace`, `--target` and `--refresh-only` ask of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Step IDs to run again even when nothing changed (`--replace`).
    pub replace: Vec<String>,
    /// Cluster names or step IDs (`--target`): only they and the steps
    /// they depend on are planned. Empty: every step.
    pub targets: Vec<String>,
    /// Record what the refresh found; change nothing (`--refresh-only`).
    pub refresh_only: bool,
    /// Contexts that reach the same cluster as the recorded ones
    /// (`identity::judge`): a step whose input differs only by them is
    /// unchanged.
    pub renamed: Vec<crate::identity::Renamed>,
}

impl Options {
    /// Sorted and without repeats, so that the same flags in another order
    /// make the same plan (and a saved plan compares equal).
    pub fn normalised(mut self) -> Options {
        for list in [&mut self.replace, &mut self.targets] {
            list.sort();
            list.dedup();
        }
        self
    }

    /// Refuses a `--replace` or `--target` that names no step (or, for
    /// `--target`, no cluster) of the mesh file or the state, naming it
    /// with the closest matches. Checked before any cluster is read.
    pub fn check(&self, graph: &StepGraph, state: Option<&State>) -> Result<(), UnknownAddress> {
        let recorded = state.map(|s| &s.steps);
        let recorded_ids = || {
            recorded
                .into_iter()
                .flat_map(|r| r.keys().map(String::as_str))
        };
        let step_ids = || graph.in_order().map(|s| s.id.as_str());
        let clusters: BTreeSet<&str> = graph
            .in_order()
            .map(|s| s.cluster.as_str())
            .chain(
                recorded
                    .into_iter()
                    .flat_map(|r| r.values().map(|r| r.cluster.as_str())),
            )
            .collect();
        let mut problems = Vec::new();
        for id in &self.replace {
            if graph.contains(id) {
                continue;
            }
            problems.push(if recorded.is_some_and(|r| r.contains_key(id)) {
                format!(
                    "--replace {id}: `{id}` is no longer in the mesh file, so the plan deletes it; \
                     --replace runs a step of the mesh file again"
                )
            } else if clusters.contains(id.as_str()) {
                let steps: Vec<&str> = step_ids()
                    .filter(|s| s.split('/').next() == Some(id.as_str()))
                    .collect();
                format!(
                    "--replace {id}: `{id}` is a cluster, and --replace takes step IDs: {}",
                    steps.join(", ")
                )
            } else {
                format!(
                    "--replace {id}: no step `{id}` in the mesh file{}",
                    suggest(id, step_ids(), "`mesh graph` shows every step")
                )
            });
        }
        for t in &self.targets {
            if graph.contains(t)
                || recorded.is_some_and(|r| r.contains_key(t))
                || clusters.contains(t.as_str())
            {
                continue;
            }
            problems.push(format!(
                "--target {t}: no cluster or step `{t}` in the mesh file or the state{}",
                suggest(
                    t,
                    clusters
                        .iter()
                        .copied()
                        .chain(step_ids())
                        .chain(recorded_ids()),
                    "`mesh graph` shows the steps, `mesh state list` the recorded ones"
                )
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(UnknownAddress {
                message: problems.join("\n"),
            })
        }
    }
}

/// A `--replace` or `--target` that names nothing the plan knows; the
/// message names it and its closest matches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnknownAddress {
    pub message: String,
}

/// ". Did you mean `a`? (how to list them)" (or "one of `a`, `b`"), or the listing hint
/// alone when nothing is close.
fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>, listing: &str) -> String {
    let close = close_matches(word, candidates);
    match close.as_slice() {
        [] => format!(" ({listing})"),
        [one] => format!(". Did you mean `{one}`? ({listing})"),
        many => format!(
            ". Did you mean one of {}? ({listing})",
            many.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The candidates close to `word`, best first (at most five): those whose
/// kind or cluster is exactly `word` (a step ID given without its cluster),
/// then likely misspellings.
pub fn close_matches<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut scored: Vec<(f64, &str)> = candidates
        .filter_map(|c| {
            let (cluster, kind) = c.split_once('/').unwrap_or((c, ""));
            // Edit distance, not Jaro-Winkler: every step ID shares the
            // prefix `cluster…/`, which Jaro-Winkler rewards.
            let score = if kind == word || (cluster == word && !kind.is_empty()) {
                2.0
            } else {
                strsim::normalized_damerau_levenshtein(word, c)
            };
            (score >= 0.8).then_some((score, c))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    // Only those about as close as the best: one clear match is named alone.
    let best = scored.first().map_or(0.0, |s| s.0);
    let mut out: Vec<&str> = Vec::new();
    for (_, c) in scored.into_iter().filter(|s| s.0 >= best - 0.05) {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out.truncate(5);
    out
}

/// Plans `graph` against `state` as `options` ask. `options` must have
/// passed [`Options::check`]: a name it does not know selects nothing.
pub fn plan_with(
    mesh_id: &str,
    graph: &StepGraph,
    state: Option<&State>,
    refresh: Option<&Refresh>,
    mode: Mode,
    options: &Options,
) -> Plan {
    let mut plan = if options.refresh_only {
        refresh_only(mesh_id, state, refresh)
    } else {
        let replace: BTreeSet<&str> = options.replace.iter().map(String::as_str).collect();
        let mut plan = converge_or_destroy(
            mesh_id,
            graph,
            state,
            refresh,
            mode,
            (&replace, &options.renamed),
        );
        if mode != Mode::Destroy {
            crate::upgrades::reset_default_tags(&mut plan);
        }
        plan
    };
    if !options.targets.is_empty() {
        let keep = targeted(&plan.changes, &options.targets);
        let split = crate::upgrades::split_removals(&plan, &keep);
        plan.refused.extend(split);
        plan.changes.retain(|c| keep.contains(c.step.as_str()));
        if let Some(drift) = &mut plan.drift {
            drift.retain(|d| keep.contains(d.step.as_str()));
        }
        plan.summary = plans::Summary::of(&plan.changes);
        plan.warnings.push(targeting_warning(&options.targets));
    }
    plan.refresh_only = options.refresh_only;
    plan.targets = options.targets.clone();
    plan.replace = options.replace.clone();
    plan
}

/// Terraform's warning, in mesh's words: every plan format shows it.
fn targeting_warning(targets: &[String]) -> String {
    format!(
        "targeting is in effect (--target {}): the plan may not be complete. It covers only the \
         targeted steps and the steps they depend on; other changes the mesh file asks for are \
         left out. --target is not for routine use: it is for exceptional cases, such as \
         recovering from a mistake or working around a cluster that cannot be reached. Run \
         `mesh plan` without --target afterwards to see what is left.",
        targets.join(" --target ")
    )
}

/// The steps `targets` select, with what they need: a change to a step of
/// the mesh file needs the steps it depends on; a delete needs the deletes
/// of the steps that depend on it first (the namespace goes after what is
/// in it). A cluster name selects every step of that cluster.
fn targeted(changes: &[Change], targets: &[String]) -> BTreeSet<String> {
    let by_id: HashMap<&str, &Change> = changes.iter().map(|c| (c.step.as_str(), c)).collect();
    let mut stack: Vec<&str> = changes
        .iter()
        .filter(|c| targets.iter().any(|t| *t == c.step || *t == c.cluster))
        .map(|c| c.step.as_str())
        .collect();
    let mut keep = BTreeSet::new();
    while let Some(id) = stack.pop() {
        if !keep.insert(id.to_string()) {
            continue;
        }
        let change = by_id[id];
        if change.action == Action::Delete {
            stack.extend(
                changes
                    .iter()
                    .filter(|d| d.action == Action::Delete && d.depends_on.iter().any(|x| x == id))
                    .map(|d| d.step.as_str()),
            );
        } else {
            stack.extend(
                change
                    .depends_on
                    .iter()
                    .filter_map(|d| by_id.get(d.as_str()).map(|c| c.step.as_str())),
            );
        }
    }
    keep
}

/// A `--refresh-only` plan: every recorded step as `no-op` (nothing in a
/// cluster changes), and for each one the refresh found changed, what
/// applying the plan records (docs/state.md, "Refresh only"):
///
/// - outputs the cluster has with other values (a new east-west address)
///   are recorded as found; the step keeps its status;
/// - any other drift (an object missing or changed) records the step
///   `tainted`, so the next apply runs it again, even one that does not
///   refresh; its record (input, outputs) stays, so destroy still finds
///   what is left of it.
///
/// Steps not recorded yet, and recorded steps the refresh did not read,
/// record nothing.
fn refresh_only(mesh_id: &str, state: Option<&State>, refresh: Option<&Refresh>) -> Plan {
    let empty = BTreeMap::new();
    let recorded: &BTreeMap<String, StepRecord> = state.map(|s| &s.steps).unwrap_or(&empty);
    let ids: Vec<&String> = recorded.keys().collect();
    let mut changes = Vec::new();
    let mut drift = Vec::new();
    for id in recorded_order(&ids, recorded) {
        let rec = &recorded[&id];
        if let Some(found) = refresh.and_then(|r| r.get(&id))
            && let Some(d) = drift_of(&id, rec, found)
        {
            drift.push(d);
        }
        changes.push(Change {
            kind: rec.kind.clone(),
            cluster: rec.cluster.clone(),
            action: Action::NoOp,
            depends_on: rec.depends_on.clone(),
            reason: None,
            before: Some(rec.input.clone()),
            after: Some(rec.input.clone()),
            diff: None,
            step: id,
        });
    }
    let mut plan = Plan::new(mesh_id, changes);
    plan.drift = Some(drift);
    plan
}

/// What a refresh-only apply records for one step, if anything.
fn drift_of(id: &str, rec: &StepRecord, found: &Observation) -> Option<Drift> {
    let changed: Vec<(&String, &Value)> = found
        .outputs
        .iter()
        .filter(|(k, v)| rec.outputs.get(*k) != Some(*v))
        .collect();
    let mut phrases = found.drift.clone();
    if phrases.is_empty() {
        // A kind that reports a new output without a phrase for it.
        for (k, v) in &changed {
            phrases.push(match rec.outputs.get(*k) {
                Some(old) => format!("output {k} changed from {old} to {v}"),
                None => format!("output {k} is {v}"),
            });
        }
    }
    let outputs = (!changed.is_empty()).then(|| {
        let mut all = rec.outputs.clone();
        all.extend(found.outputs.clone());
        all
    });
    // Drift the new outputs do not account for: what the step made is no
    // longer as applied.
    let status = if !found.drift.is_empty() && changed.is_empty() {
        Status::Tainted
    } else {
        rec.status
    };
    if outputs.is_none() && status == rec.status {
        return None;
    }
    Some(Drift {
        step: id.to_string(),
        kind: rec.kind.clone(),
        cluster: rec.cluster.clone(),
        found: phrases,
        outputs,
        status: status.as_str().to_string(),
    })
}

/// Records a refresh-only plan's findings in `state`: the outputs found
/// and the status. Returns the steps recorded.
pub fn record_drift(state: &mut State, drift: &[Drift], now: &str) -> Vec<String> {
    let mut done = Vec::new();
    for d in drift {
        let Some(rec) = state.steps.get_mut(&d.step) else {
            continue;
        };
        if let Some(outputs) = &d.outputs {
            rec.outputs = outputs.clone();
        }
        if d.status == Status::Tainted.as_str() {
            rec.status = Status::Tainted;
        }
        rec.updated_at = now.to_string();
        done.push(d.step.clone());
    }
    done
}

/// A converge or destroy plan; `replace` are step IDs to run again.
fn converge_or_destroy(
    mesh_id: &str,
    graph: &StepGraph,
    state: Option<&State>,
    refresh: Option<&Refresh>,
    mode: Mode,
    (replace, renamed): (&BTreeSet<&str>, &[crate::identity::Renamed]),
) -> Plan {
    let empty = BTreeMap::new();
    let recorded: &BTreeMap<String, StepRecord> = state.map(|s| &s.steps).unwrap_or(&empty);

    // 1. Deletes: recorded steps the graph no longer has (all of them when
    //    destroying), in reverse dependency order.
    let doomed: Vec<&String> = recorded
        .keys()
        .filter(|id| mode == Mode::Destroy || !graph.contains(id))
        .collect();
    let mut changes = delete_changes(&doomed, recorded, mode);

    if mode == Mode::Destroy {
        return Plan::new(mesh_id, changes);
    }

    // 2. The graph's steps in dependency order. `actions` remembers what was
    //    decided upstream, so a step whose upstream will run sees that
    //    upstream's outputs as unknown.
    let mut actions: HashMap<&str, Action> = HashMap::new();
    for step in graph.in_order() {
        let lookup = |id: &str, key: &str| -> Known<Value> {
            let observed = refresh
                .and_then(|r| r.get(id))
                .and_then(|o| o.outputs.get(key));
            match actions.get(id) {
                Some(Action::NoOp) | Some(Action::Update) => {
                    // An update's refreshed output is already the live value;
                    // a recorded one will be recomputed by the update.
                    if let Some(v) = observed {
                        return Known::Known(v.clone());
                    }
                    if actions.get(id) == Some(&Action::NoOp)
                        && let Some(v) = recorded.get(id).and_then(|r| r.outputs.get(key))
                    {
                        return Known::Known(v.clone());
                    }
                    Known::AfterApply
                }
                _ => Known::AfterApply,
            }
        };
        let new = render_step(step, &lookup);
        let depends_on: Vec<String> = graph
            .dependencies(&step.id)
            .into_iter()
            .map(String::from)
            .collect();
        let change = match recorded.get(&step.id) {
            None => Change {
                step: step.id.clone(),
                kind: step.kind().to_string(),
                cluster: step.cluster.clone(),
                action: Action::Create,
                depends_on,
                // What a preview saw that this create replaces.
                reason: Some(
                    match refresh
                        .and_then(|r| r.get(&step.id))
                        .filter(|o| !o.drift.is_empty())
                    {
                        Some(o) => format!("not in the state yet; {}", o.drift.join("; ")),
                        None => "not in the state yet".into(),
                    },
                ),
                before: None,
                diff: Some(plans::diff::unified("", &new.text, &step.id)),
                after: Some(new.text),
            },
            Some(rec) => {
                let drift = refresh
                    .and_then(|r| r.get(&step.id))
                    .map(|o| o.drift.as_slice())
                    .unwrap_or_default();
                let replaced = replace.contains(step.id.as_str());
                match update_reason(rec, &compared(rec, &new, renamed), drift, replaced) {
                    None => Change {
                        step: step.id.clone(),
                        kind: step.kind().to_string(),
                        cluster: step.cluster.clone(),
                        action: Action::NoOp,
                        depends_on,
                        reason: None,
                        before: Some(rec.input.clone()),
                        after: Some(new.text),
                        diff: None,
                    },
                    Some(reason) => Change {
                        step: step.id.clone(),
                        kind: step.kind().to_string(),
                        cluster: step.cluster.clone(),
                        action: Action::Update,
                        depends_on,
                        reason: Some(with_leftovers(reason, step, &rec.input, lookup)),
                        diff: Some(plans::diff::unified(&rec.input, &new.text, &step.id)),
                        before: Some(rec.input.clone()),
                        after: Some(new.text),
                    },
                }
            }
        };
        actions.insert(step.id.as_str(), change.action);
        changes.push(change);
    }
    Plan::new(mesh_id, changes)
}

/// `new` as the planner compares it with `rec`: another context for the
/// same cluster (`renamed`) changes nothing, so an input that differs
/// only by one has the recorded fingerprint.
fn compared(
    rec: &StepRecord,
    new: &RenderedInput,
    renamed: &[crate::identity::Renamed],
) -> RenderedInput {
    let same = rec.input_fingerprint != new.fingerprint
        && !renamed.is_empty()
        && sha256_hex(crate::identity::as_recorded(&new.text, renamed).as_bytes())
            == rec.input_fingerprint;
    RenderedInput {
        fingerprint: if same {
            rec.input_fingerprint.clone()
        } else {
            new.fingerprint.clone()
        },
        ..new.clone()
    }
}

/// Why a recorded step runs again (None: it does not): tainted, its input
/// changed, or drift; `replaced` by `--replace` in any case.
fn update_reason(
    rec: &StepRecord,
    new: &RenderedInput,
    drift: &[String],
    replaced: bool,
) -> Option<String> {
    let cause: Option<String> = if rec.status == Status::Tainted {
        Some(
            "tainted: an earlier apply of this step failed or was interrupted, \
             or `apply --refresh-only` found it drifted"
                .into(),
        )
    } else if rec.input_fingerprint != new.fingerprint {
        Some(if new.unknown {
            "input changed (some values are known only after apply)".into()
        } else {
            "input changed".into()
        })
    } else {
        None
    };
    // Drift is always shown, also beside another cause: what the cluster
    // has now is what the update starts from, and a reviewer must see it.
    let drifted = (!drift.is_empty()).then(|| format!("drift: {}", drift.join("; ")));
    let reason = match (cause, drifted) {
        (Some(c), Some(d)) => Some(format!("{c}; {d}")),
        (c, d) => c.or(d),
    };
    if !replaced {
        return reason;
    }
    Some(match reason {
        None => "replaced by --replace".to_string(),
        Some(r) => format!("replaced by --replace; {r}"),
    })
}

/// The reason, with what the update will remove (see
/// `StepInput::leftovers`) so the plan shows those deletions too.
fn with_leftovers(
    reason: String,
    step: &Step,
    recorded: &str,
    lookup: impl Fn(&str, &str) -> Known<Value>,
) -> String {
    let leftovers = step.input.leftovers(recorded, &step.input.render(&lookup));
    if leftovers.is_empty() {
        reason
    } else {
        format!("{reason}; {}", leftovers.join("; "))
    }
}

/// `ids` in the recorded dependency order (a step after those it depended on).
fn recorded_order(ids: &[&String], recorded: &BTreeMap<String, StepRecord>) -> Vec<String> {
    struct Id(String);
    impl Node for Id {
        fn id(&self) -> &str {
            &self.0
        }
    }
    let mut b = GraphBuilder::new();
    for id in ids {
        // Keys of a map are unique, so add cannot fail.
        let _ = b.add(Id((*id).clone()));
    }
    for id in ids {
        for dep in &recorded[*id].depends_on {
            if ids.contains(&dep) {
                b.depend((*id).clone(), dep.clone());
            }
        }
    }
    // A state edited by hand could hold a cycle; fall back to ID order then.
    match b.build() {
        Ok(dag) => dag.in_order().map(|n| n.0.clone()).collect::<Vec<_>>(),
        Err(_) => ids.iter().map(|s| (*s).clone()).collect(),
    }
}

/// Delete changes for `ids`, ordered so that a step is removed before the
/// steps it depended on (reverse of the recorded dependency order).
fn delete_changes(
    ids: &[&String],
    recorded: &BTreeMap<String, StepRecord>,
    mode: Mode,
) -> Vec<Change> {
    recorded_order(ids, recorded)
        .into_iter()
        .rev()
        .map(|id| {
            let rec = &recorded[&id];
            Change {
                kind: rec.kind.clone(),
                cluster: rec.cluster.clone(),
                action: Action::Delete,
                depends_on: rec.depends_on.clone(),
                reason: Some(match mode {
                    Mode::Destroy => "destroy: everything mesh applied is removed".into(),
                    Mode::Converge => "no longer in the mesh file".into(),
                }),
                diff: Some(plans::diff::unified(&rec.input, "", &id)),
                before: Some(rec.input.clone()),
                after: None,
                step: id,
            }
        })
        .collect()
}

/// `mesh diff`: the steps of `base` (another version of the mesh file)
/// against `head`, with no state and no cluster. Upstream outputs are unknown
/// on both sides, so only what the files say is compared.
pub fn diff(mesh_id: &str, base: &StepGraph, head: &StepGraph) -> Plan {
    let unknown = |_: &str, _: &str| Known::AfterApply;
    let mut state = State::new(mesh_id);
    for step in base.in_order() {
        let r = render_step(step, &unknown);
        let rec = record(
            step,
            base,
            &r,
            BTreeMap::new(),
            Status::Applied,
            String::new(),
        );
        state.steps.insert(step.id.clone(), rec);
    }
    let mut plan = plan(mesh_id, head, Some(&state), None, Mode::Converge);
    for c in &mut plan.changes {
        c.reason = match c.action {
            Action::Create => Some("added by this version of the mesh file".into()),
            Action::Update => Some("changed by this version of the mesh file".into()),
            Action::Delete => Some("removed by this version of the mesh file".into()),
            Action::NoOp => None,
        };
    }
    plan
}

/// The state record of a step that has just been applied (or failed:
/// `status` tainted), with its rendered input as applied.
pub fn record(
    step: &Step,
    graph: &StepGraph,
    input: &RenderedInput,
    outputs: BTreeMap<String, Value>,
    status: Status,
    updated_at: String,
) -> StepRecord {
    StepRecord {
        kind: step.kind().to_string(),
        cluster: step.cluster.clone(),
        context: step.target.context.clone(),
        depends_on: graph
            .dependencies(&step.id)
            .into_iter()
            .map(String::from)
            .collect(),
        input_fingerprint: input.fingerprint.clone(),
        input: input.text.clone(),
        outputs,
        status,
        updated_at,
    }
}
