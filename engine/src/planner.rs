//! The planner: step graph + recorded state (+ refresh) → plan. Pure.
//!
//! For each step of the graph, in dependency order, it renders the step's
//! input with the upstream outputs it knows (from the refresh, else from the
//! state; unknown when the upstream step is about to run) and compares the
//! fingerprint with the recorded one. Steps recorded in the state but no
//! longer in the graph are deleted first, in reverse dependency order.

use crate::graph::{GraphBuilder, Node};
use crate::topology::{Step, StepGraph};
use plans::{Action, Change, Plan};
use providers::{Known, Observation, Rendered, sha256_hex};
use serde_json::Value;
use state::{State, Status, StepRecord};
use std::collections::{BTreeMap, HashMap};

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
                let reason = if rec.status == Status::Tainted {
                    Some("tainted: an earlier apply of this step failed or was interrupted".into())
                } else if rec.input_fingerprint != new.fingerprint {
                    Some(if new.unknown {
                        "input changed (some values are known only after apply)".into()
                    } else {
                        "input changed".into()
                    })
                } else if !drift.is_empty() {
                    Some(format!("drift: {}", drift.join("; ")))
                } else {
                    None
                };
                match reason {
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

/// Delete changes for `ids`, ordered so that a step is removed before the
/// steps it depended on (reverse of the recorded dependency order).
fn delete_changes(
    ids: &[&String],
    recorded: &BTreeMap<String, StepRecord>,
    mode: Mode,
) -> Vec<Change> {
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
    let order: Vec<String> = match b.build() {
        Ok(dag) => dag.in_order().map(|n| n.0.clone()).collect::<Vec<_>>(),
        Err(_) => ids.iter().map(|s| (*s).clone()).collect(),
    };
    order
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
