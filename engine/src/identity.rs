//! Which cluster each name of the mesh file is, from the identities the
//! live clusters show (`providers::identity`: the UID of `kube-system`)
//! and those the state recorded. A kubeconfig context is a local name, so
//! a changed `context` (or `kubeconfig`) means one of three things, and
//! the plan must say which:
//!
//! - the same cluster under another name: no change at all, nothing runs
//!   again, and the next apply records the new context;
//! - another cluster: a move, refused, since mesh would install there and
//!   orphan what it made in the first (istio-system, the remote's install,
//!   a valid reader token);
//! - a cluster removed from the file and another added on its API server
//!   (a rename): shown, with a warning, since Istio's clusterName is the
//!   cluster's identity and the install is redone.
//!
//! Pure: `src/identity.rs` reads the clusters and passes what it found.

use crate::topology::StepGraph;
use state::{ClusterRecord, State};
use std::collections::{BTreeMap, BTreeSet};

/// What was read: each mesh file cluster's identity through its context
/// now, and each context the state recorded but the mesh file no longer
/// names (Err: why it could not be read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// By cluster name.
    pub now: BTreeMap<String, Result<String, String>>,
    /// By recorded context.
    pub before: BTreeMap<String, Result<String, String>>,
}

/// A cluster reached through another context than recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renamed {
    pub from: String,
    pub to: String,
}

/// What the plan does with what was found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// Contexts that reach the same cluster as the recorded ones: the
    /// planner takes a step whose input differs only by them as unchanged.
    pub renamed: Vec<Renamed>,
    pub refused: Vec<String>,
    pub notes: Vec<String>,
    /// What an apply records (`State::clusters`).
    pub record: BTreeMap<String, ClusterRecord>,
}

impl Verdict {
    /// Writes the verdict into a converging plan's review.
    pub fn review(&self, plan: &mut plans::Plan) {
        plan.notes.extend(self.notes.iter().cloned());
        plan.refused.extend(self.refused.iter().cloned());
    }
}

/// The context through which the state last reached each cluster it
/// records a step of: recorded with its identity, else the context of
/// its own steps (a step's target is its cluster, but for a link, which
/// the graph knows). A cluster whose steps are all gone (removed, or
/// forgotten with `mesh state rm`) is not in it: it is new again,
/// whatever identity is left of it. One pass over the graph and the
/// state, so a fleet's plan does not pay per cluster.
fn recorded_contexts(graph: &StepGraph, state: &State) -> BTreeMap<String, String> {
    let mut own: BTreeMap<&str, &str> = BTreeMap::new();
    for s in graph.in_order() {
        if s.target.cluster == s.cluster
            && let Some(r) = state.steps.get(&s.id)
        {
            own.entry(s.cluster.as_str()).or_insert(r.context.as_str());
        }
    }
    let clusters: BTreeSet<&str> = state.steps.values().map(|r| r.cluster.as_str()).collect();
    clusters
        .into_iter()
        .filter_map(|c| {
            let context = match state.clusters.get(c) {
                Some(rec) => Some(rec.context.clone()),
                None => own.get(c).map(|s| s.to_string()).or_else(|| {
                    state
                        .steps
                        .get(&format!("{c}/prepare-namespace"))
                        .map(|r| r.context.clone())
                }),
            };
            context.map(|ctx| (c.to_string(), ctx))
        })
        .collect()
}

/// The recorded contexts whose identity must be read to decide (no
/// identity recorded for them): the old context of a cluster whose
/// context changed, and that of a cluster gone from the mesh file.
pub fn contexts_to_read(graph: &StepGraph, state: &State) -> Vec<String> {
    let now: BTreeMap<&str, &str> = crate::topology::cluster_targets(graph)
        .into_iter()
        .map(|t| (t.cluster.as_str(), t.context.as_str()))
        .collect();
    recorded_contexts(graph, state)
        .into_iter()
        .filter(|(c, was)| {
            !state.clusters.contains_key(c) && now.get(c.as_str()) != Some(&was.as_str())
        })
        .map(|(_, was)| was)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn short(uid: &str) -> &str {
    &uid[..uid.len().min(8)]
}

/// Decides, for every cluster of `graph`, whether its context reaches the
/// cluster the state knows under its name.
pub fn judge(graph: &StepGraph, state: Option<&State>, found: &Found) -> Verdict {
    let mut v = Verdict::default();
    let empty = State::new("");
    let state = state.unwrap_or(&empty);
    let targets = crate::topology::cluster_targets(graph);
    let recorded = recorded_contexts(graph, state);
    for t in &targets {
        let now = found.now.get(&t.cluster);
        if let Some(Ok(uid)) = now {
            v.record.insert(
                t.cluster.clone(),
                ClusterRecord {
                    uid: uid.clone(),
                    context: t.context.clone(),
                },
            );
        }
        let Some(was) = recorded.get(&t.cluster).cloned() else {
            continue; // a new cluster
        };
        let known = state
            .clusters
            .get(&t.cluster)
            .map(|c| Ok(c.uid.clone()))
            .or_else(|| {
                (was != t.context)
                    .then(|| found.before.get(&was).cloned())
                    .flatten()
            });
        let cluster = &t.cluster;
        match (known, now) {
            (Some(Ok(k)), Some(Ok(n))) if k == *n && was != t.context => {
                v.notes.push(format!(
                    "{cluster} is reached through context `{}` now (`{was}` before): the same \
                     cluster (kube-system uid {}…), so nothing runs again; the next apply \
                     records the new context",
                    t.context,
                    short(n)
                ));
                v.renamed.push(Renamed {
                    from: was,
                    to: t.context.clone(),
                });
            }
            (Some(Ok(k)), Some(Ok(n))) if k == *n => {}
            (Some(Ok(k)), Some(Ok(n))) => v.refused.push(format!(
                "{cluster}: context `{}` reaches another cluster (kube-system uid {}…) than the one \
                 mesh installed as {cluster} (uid {}…, through `{was}`). Applying would install \
                 {cluster} there and leave what mesh made in the first cluster behind. If the \
                 cluster moved, remove {cluster} from the mesh file and apply (it is uninstalled \
                 through `{was}`), then add it back with the new context; if the first cluster is \
                 gone for good, `mesh state rm {cluster}` forgets it. Or set `context` back",
                t.context,
                short(n),
                short(&k)
            )),
            (Some(Err(why)), _) if was != t.context => v.refused.push(format!(
                "{cluster}: its context changed from `{was}` to `{}`, and mesh cannot tell whether \
                 both reach the same cluster: the state records no identity for it and `{was}` \
                 could not be read ({why}). Set `context` back for one apply (it records the \
                 cluster's identity), or, if `{}` is the same cluster, `mesh state rm {cluster}` \
                 then `mesh import` adopts what runs there",
                t.context,
                t.context
            )),
            (_, Some(Err(why))) if was != t.context => v.refused.push(format!(
                "{cluster}: its context changed from `{was}` to `{}`, whose identity could not be \
                 read ({why}): mesh cannot tell whether it is the same cluster. Let the context \
                 get namespace kube-system, or set `context` back",
                t.context
            )),
            _ => {}
        }
    }
    // A cluster gone from the mesh file whose API server a new name
    // reaches: a rename.
    for (gone, was) in &recorded {
        if targets.iter().any(|t| t.cluster == *gone) {
            continue;
        }
        let uid = match state.clusters.get(gone) {
            Some(c) => Some(c.uid.clone()),
            None => found.before.get(was).cloned().and_then(Result::ok),
        };
        let Some(uid) = uid else { continue };
        for t in &targets {
            let new = !recorded.contains_key(&t.cluster);
            if new && found.now.get(&t.cluster) == Some(&Ok(uid.clone())) {
                v.notes.push(format!(
                    "warning: {} is the cluster {gone} was (the same API server: kube-system uid \
                     {}…), so this is a rename. Istio's clusterName is a cluster's identity, so \
                     mesh does not rename in place: it uninstalls {gone} and installs {} anew, \
                     and that cluster's workloads lose their control plane between the two. To \
                     keep it running, keep the name {gone}",
                    t.cluster,
                    short(&uid),
                    t.cluster
                ));
            }
        }
    }
    v
}

/// `text` as it would read with every renamed context back under its
/// recorded name: a step whose input differs only by a renamed context
/// is unchanged.
pub fn as_recorded(text: &str, renamed: &[Renamed]) -> String {
    renamed
        .iter()
        .fold(text.to_string(), |t, r| t.replace(&r.to, &r.from))
}

/// Records in `state` what an apply of `plan` learnt of the clusters:
/// each identity read (`verdict.record`), and for each step left
/// unchanged because its cluster is reached through a renamed context,
/// the new context and input (outputs naming the old context follow).
/// Returns whether anything changed.
pub fn record(state: &mut State, plan: &plans::Plan, graph: &StepGraph, verdict: &Verdict) -> bool {
    let before = state.clone();
    // Identities of clusters with no step left are forgotten.
    let steps = &state.steps;
    state
        .clusters
        .retain(|c, _| steps.values().any(|r| &r.cluster == c));
    state
        .clusters
        .extend(verdict.record.iter().map(|(k, v)| (k.clone(), v.clone())));
    for c in &plan.changes {
        let (Some(after), Some(step)) = (&c.after, graph.get(&c.step)) else {
            continue;
        };
        let Some(rec) = state.steps.get_mut(&c.step) else {
            continue;
        };
        if c.action != plans::Action::NoOp || rec.input == *after {
            continue;
        }
        rec.input = after.clone();
        rec.input_fingerprint = providers::sha256_hex(after.as_bytes());
        rec.context = step.target.context.clone();
        for v in rec.outputs.values_mut() {
            if let Some(r) = verdict.renamed.iter().find(|r| v.as_str() == Some(&r.from)) {
                *v = serde_json::Value::from(r.to.clone());
            }
        }
    }
    *state != before
}
