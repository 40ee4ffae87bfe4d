//! Root rotation: where each primary's `cacerts` stands between the root
//! the mesh had and the root the mesh file names now, and the one phase the
//! next apply takes (pure: from the state and the graph).
//!
//! A root cannot be swapped under a running mesh: workloads trust only the
//! roots they were given, so a workload signed under the new root and one
//! still holding the old root's certificate cannot talk until both are
//! restarted. So a changed `[trust]` root (or `[trust]` added to a running
//! mesh, whose istiod signed with its own self-signed root) is rolled out
//! in three phases, one per apply, each waiting for the workloads to
//! restart before the next:
//!
//! 1. every primary trusts both roots (its intermediate in place is kept);
//! 2. every primary signs with a new intermediate of the new root;
//! 3. the old root is dropped.
//!
//! A plan never jumps a phase: the next phase is the one after the phase
//! the least advanced primary has finished, and a primary already further
//! along stays where it is. From phase 1 on, istiod runs with
//! `ISTIO_MULTIROOT_MESH=true` (and keeps it), so it takes the phases'
//! `root-cert.pem` changes in place.

use crate::topology::StepGraph;
use providers::StepKind;
use providers::kinds::StepInput;
use providers::kinds::plug_ca::{MULTI_ROOT_ENV, OldRoot, Stage, TRUSTED_ROOTS, trusted_roots};
use providers::proxies::{Proxy, XDS_AGENT_ENV as XDS_AGENT};
use serde_json::Value;
use state::{State, StepRecord};
use std::collections::BTreeMap;

/// A root rotation in progress, as the next apply takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    /// The phase the next apply takes: 1, 2 or 3.
    pub phase: u8,
    /// The new root (sha256).
    pub new_root: String,
    /// The old root as the plan shows it.
    pub old_root: String,
    /// The new root's certificate (PEM, public).
    pub new_root_pem: String,
    /// The primaries this phase changes.
    pub primaries: Vec<String>,
    /// What the proxies showed of the phase before (None: not read).
    pub gate: Option<Gate>,
    /// The phase waits: the proxies do not show the one before took
    /// effect, so nothing of it is planned ([`hold`]).
    pub waiting: bool,
    /// Planned although the gate says wait (`--allow rotation-gate`).
    pub overridden: bool,
}

/// What `--allow` calls the rotation's gate.
pub const GATE: &str = "rotation-gate";

/// What the live proxies show of a rotation's phases (from
/// [`providers::proxies`], cluster by cluster): each line names its
/// cluster and namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gate {
    /// How many proxies each cluster has (a cluster not listed was not
    /// read).
    pub proxies: BTreeMap<String, usize>,
    /// What keeps the phase from being planned: `(cluster, line)`.
    pub outstanding: Vec<(String, String)>,
    /// Proxies injected without `PROXY_CONFIG_XDS_AGENT`, which take a
    /// phase only when they restart or renew: `(cluster, line)`.
    pub restart_once: Vec<(String, String)>,
    /// Primaries whose `cacerts` the refresh found not as mesh wrote it
    /// ([`cacerts_off`]): no phase goes on anywhere until each is written
    /// again as recorded. Not overridden by `--allow rotation-gate`.
    pub cacerts_off: Vec<String>,
}

/// The proxies of each cluster, as `providers::proxies::read` found
/// them (Err: the cluster could not be listed).
pub type Evidence = BTreeMap<String, Result<Vec<Proxy>, String>>;

/// What staging found: the rotation, and why the plan must not run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Staged {
    pub rotation: Option<Rotation>,
    pub refused: Vec<String>,
    /// Primaries whose `plug-ca` is replaced (`--replace`), so not staged.
    pub forced: Vec<String>,
    /// The other primaries, where they still sign with the old root (a
    /// rotation not finished there): a forced one breaks mTLS with them.
    pub behind: Vec<String>,
}

impl Staged {
    /// Writes the staging into a converging plan's review (after
    /// `review::plan`, which sets the notes and refusals afresh).
    pub fn review(&self, plan: &mut plans::Plan) {
        plan.notes.extend(self.notes());
        plan.refused.extend(self.refused.iter().cloned());
    }

    /// What the plan says of the staging: the phase's notes, and what a
    /// forced `plug-ca` means.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = self
            .rotation
            .as_ref()
            .map(Rotation::notes)
            .unwrap_or_default();
        if !self.forced.is_empty() {
            let replaced = format!(
                "plug-ca replaced on {}: its cacerts is written from the mesh file's root at once, \
                 with no rotation phases",
                self.forced.join(", ")
            );
            notes.push(if self.behind.is_empty() {
                format!(
                    "{replaced}. If that root is new, workloads still holding certificates of the \
                     old root lose mTLS with the others until they restart"
                )
            } else {
                format!(
                    "{replaced}, so it will trust only the new root while {} still {} with the old \
                     one: mTLS between their workloads fails, restarts or not, until every primary \
                     has the new root. Take the rotation's phases instead (plan without \
                     --replace), or replace every primary's plug-ca in one apply (--replace for \
                     each) and restart every workload",
                    self.behind.join(", "),
                    if self.behind.len() == 1 {
                        "signs"
                    } else {
                        "sign"
                    }
                )
            });
        }
        notes
    }
}

/// How far one primary's `cacerts` is, from the state.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    /// Nothing of it recorded and no control plane: a new primary.
    Fresh,
    /// Phases 0 (not started), 1 or 2 finished, moving away from `old`.
    At(u8, OldRoot),
    /// The new root alone: nothing to rotate.
    Done,
}

fn progress(plug: Option<&StepRecord>, running: bool, new: &str) -> Result<Progress, String> {
    let signer = plug
        .and_then(|r| r.outputs.get("root_sha256"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    // No record, or one with no root (a first apply of the step that
    // failed or was killed): what istiod signs with now, if it runs.
    let (Some(rec), Some(signer)) = (plug, signer) else {
        return Ok(if running {
            Progress::At(0, OldRoot::Live)
        } else {
            Progress::Fresh
        });
    };
    let signer = signer.to_string();
    let trusted: Vec<String> = match trusted_roots(&rec.outputs) {
        Ok(Some(l)) => l,
        Ok(None) => vec![signer.clone()],
        // `damaged` stops a command that reads such a state first; this
        // says the same to any other caller.
        Err(why) => {
            let id = crate::topology::step_id(&rec.cluster, StepKind::PlugCa);
            return Err(format!(
                "{id}: the state's record is damaged: {why}. Restore the state from its \
                 `.backup`, or `mesh state rm {id}`, then `mesh import --force`"
            ));
        }
    };
    let trusts_new = trusted.iter().any(|s| s == new);
    let other = trusted.iter().find(|s| **s != new).cloned();
    Ok(match (signer == new, trusted.len(), trusts_new) {
        (true, 1, true) => Progress::Done,
        // Not started: the roots cacerts trusts, the new one not among them.
        (false, 1, false) => Progress::At(0, OldRoot::Recorded(signer)),
        // Phase 1 done: the new root trusted beside the old ones.
        (false, n, true) if n > 1 && trusted.contains(&signer) => {
            Progress::At(1, OldRoot::Recorded(signer))
        }
        // Phase 2 done: signed by the new root, the old ones still trusted.
        (true, n, true) if n > 1 => Progress::At(2, OldRoot::Recorded(other.unwrap_or_default())),
        _ => {
            return Err(format!(
                "{}: its cacerts is part way through a root rotation (it trusts {}) and the mesh \
                 file now names yet another root, sha256:{}…. Finish one rotation before starting \
                 the next: restore [trust] to the root the rotation was moving to, apply until the \
                 plan shows no phase, then change the root",
                rec.cluster,
                trusted
                    .iter()
                    .map(|s| format!("sha256:{}…", short(s)))
                    .collect::<Vec<_>>()
                    .join(" and "),
                short(new)
            ));
        }
    })
}

fn short(s: &str) -> &str {
    &s[..16.min(s.len())]
}

/// The records of `state` mesh cannot use as they are (a hand-edited or
/// damaged state), one line each naming the step and the key: a
/// `plug-ca`'s `trusted_roots` that is not a non-empty list of sha256
/// fingerprints. Empty when there are none.
pub fn damaged(state: &State) -> Vec<String> {
    state
        .steps
        .iter()
        .filter(|(_, rec)| rec.kind == StepKind::PlugCa.as_str())
        .filter_map(|(id, rec)| {
            let why = trusted_roots(&rec.outputs).err()?;
            Some(format!("step `{id}`, key `outputs.{TRUSTED_ROOTS}`: {why}"))
        })
        .collect()
}

/// Sets each primary's `plug-ca` stage, and `ISTIO_MULTIROOT_MESH` on its
/// control planes, for the phase the next apply takes. Without `[trust]`,
/// or with nothing recorded, the graph is left as compiled. A `plug-ca`
/// step in `replace` (`--replace`) is not staged: it writes the mesh
/// file's root at once, and the plan says what that breaks.
pub fn stage(graph: &mut StepGraph, state: Option<&State>, replace: &[String]) -> Staged {
    stage_to(graph, state, replace, true)
}

/// Stages the graph as [`stage`] does, but without taking the next
/// phase where the proxies say the one before has not taken effect yet
/// (`gate` has outstanding lines): every primary's `cacerts` stays as
/// recorded, so nothing of the rotation is planned, and the plan says
/// what it waits for. Phase 1 waits for nothing.
pub fn hold(
    graph: &mut StepGraph,
    state: Option<&State>,
    replace: &[String],
    gate: Gate,
) -> Staged {
    let mut staged = stage_to(graph, state, replace, false);
    if let Some(r) = &mut staged.rotation {
        r.waiting = r.phase > 1;
        r.gate = Some(gate);
    }
    staged
}

/// The primaries whose recorded `plug-ca` the refresh found drifted
/// (their `cacerts` not as mesh wrote it), in graph order; a `cacerts`
/// mesh has not written yet is a create's preview, not drift, and a
/// tainted one is a write an earlier apply began (killed or failed), which
/// this apply finishes at the phase it was taking. During a rotation no
/// phase may go on while one is off: a primary still trusting only the
/// old root cannot reach workloads signed under the next phase.
pub fn cacerts_off(
    graph: &StepGraph,
    state: Option<&State>,
    refresh: &crate::planner::Refresh,
) -> Vec<String> {
    graph
        .in_order()
        .filter(|s| matches!(s.input, StepInput::PlugCa(_)))
        .filter(|s| {
            state
                .and_then(|st| st.steps.get(&s.id))
                .is_some_and(|r| r.status == state::Status::Applied)
        })
        .filter(|s| refresh.get(&s.id).is_some_and(|o| !o.drift.is_empty()))
        .map(|s| s.cluster.clone())
        .collect()
}

/// Holds the phase `staged` takes where the refresh found a primary's
/// `cacerts` not as mesh wrote it ([`cacerts_off`]): the graph is staged
/// again as recorded, so the plan writes that `cacerts` back and changes
/// no other primary, whatever `--allow rotation-gate` says. A rotation
/// that would start over such a `cacerts` is refused instead: its phase
/// 1 keeps the intermediate in place, and that one is not mesh's.
/// Returns the staging and whether it held the phase (then nothing was
/// overridden).
pub fn hold_where_cacerts_off(
    graph: &mut StepGraph,
    state: Option<&State>,
    mut staged: Staged,
    replace: &[String],
    refresh: &crate::planner::Refresh,
) -> (Staged, bool) {
    let Some(rotation) = &staged.rotation else {
        return (staged, false);
    };
    let off = cacerts_off(graph, state, refresh);
    if off.is_empty() {
        return (staged, false);
    }
    if rotation.phase == 1 {
        staged.refused.push(format!(
            "the cacerts of {} is not as mesh wrote it (its plug-ca step shows the drift), and a \
             root rotation starts only from each primary's cacerts as recorded: phase 1 keeps the \
             intermediate in place. Repair it first: set [trust] back to the root in place and \
             `mesh apply` (it writes that cacerts again), then change the root",
            off.join(", ")
        ));
        return (staged, false);
    }
    let mut gate = rotation.gate.clone().unwrap_or_default();
    gate.cacerts_off = off;
    (hold(graph, state, replace, gate), true)
}

/// Whether the gate of `rotation`'s phase must read the proxies' Envoys
/// (phases 2 and 3), or only list them (phase 1: which proxies lack
/// `PROXY_CONFIG_XDS_AGENT`).
pub fn reads_secrets(rotation: &Rotation) -> bool {
    rotation.phase > 1
}

/// The primaries still moving away from an old root.
fn behind(primaries: &[(String, String, Progress)]) -> Vec<String> {
    primaries
        .iter()
        .filter(|(_, _, p)| matches!(p, Progress::At(..)))
        .map(|(_, c, _)| c.clone())
        .collect()
}

fn stage_to(
    graph: &mut StepGraph,
    state: Option<&State>,
    replace: &[String],
    advance: bool,
) -> Staged {
    let mut staged = Staged::default();
    let Some(state) = state else {
        return staged;
    };
    let ambient = graph
        .in_order()
        .any(|s| matches!(&s.input, StepInput::InstallControlPlane(i) if i.ambient.is_some()));
    // Each primary's progress.
    let mut primaries: Vec<(String, String, Progress)> = Vec::new();
    for step in graph.in_order() {
        let StepInput::PlugCa(input) = &step.input else {
            continue;
        };
        let cp = format!("{}/install-control-plane", step.cluster);
        let running = state.steps.contains_key(&cp);
        if replace.contains(&step.id) {
            staged.forced.push(step.cluster.clone());
            continue;
        }
        match progress(state.steps.get(&step.id), running, &input.root_sha256) {
            Ok(p) => primaries.push((step.id.clone(), step.cluster.clone(), p)),
            Err(why) => staged.refused.push(why),
        }
    }
    if !staged.forced.is_empty() {
        staged.behind = behind(&primaries);
    }
    let least = primaries
        .iter()
        .filter_map(|(_, _, p)| match p {
            Progress::At(n, _) => Some(*n),
            _ => None,
        })
        .min();
    let Some(least) = least else {
        multi_root(graph, state, false, false);
        return staged;
    };
    // A root rotation without downtime is unproven in Istio's ambient
    // mode: ztunnel has taken root bundles since ztunnel#1510 and
    // istio/istio#55835, but no Istio test rotates a root under a running
    // ambient mesh, so mesh does not stage one.
    if ambient {
        staged.refused.push(
            "the mesh file names another root of trust than the ambient mesh runs with, and a root \
             rotation without downtime is unproven in Istio's ambient mode (ztunnel takes a bundle \
             of roots since ztunnel#1510 and istio/istio#55835, but Istio tests no rotation of a \
             running ambient mesh), so mesh does not stage one. Restore [trust] to the root in \
             place; or swap it at once, accepting that mTLS across clusters may break until every \
             ztunnel and workload restarts: `mesh apply --replace P/plug-ca` for every primary P"
                .to_string(),
        );
        return staged;
    }
    let phase = least + 1;
    // Phase 1 waits for nothing: nothing took effect before it.
    let advance = advance || least == 0;
    let mut rotation = Rotation {
        phase,
        new_root: String::new(),
        old_root: String::new(),
        new_root_pem: String::new(),
        primaries: Vec::new(),
        gate: None,
        waiting: false,
        overridden: false,
    };
    for (id, cluster, p) in &primaries {
        let (at, old) = match p {
            Progress::Fresh => {
                staged.refused.push(format!(
                    "{cluster}: a new primary while the mesh's root rotation is at phase {phase} of \
                     3. Its workloads would trust only the new root and could not reach workloads \
                     still signed by the old one. Finish the rotation first (`mesh apply` once per \
                     phase), then add {cluster}; or remove it from the mesh file for now"
                ));
                continue;
            }
            Progress::Done => continue,
            Progress::At(n, old) => (*n, old.clone()),
        };
        // The least advanced take the next phase (unless held); the
        // others keep theirs.
        let target = if at == least && advance { phase } else { at };
        if at == least {
            rotation.primaries.push(cluster.clone());
        }
        let Some(step) = graph.get_mut(id) else {
            continue;
        };
        let StepInput::PlugCa(input) = &mut step.input else {
            continue;
        };
        rotation.new_root = input.root_sha256.clone();
        rotation.new_root_pem = input.root_cert_pem.clone();
        rotation.old_root = match &old {
            OldRoot::Recorded(sha) => format!("sha256:{}…", short(sha)),
            OldRoot::Live => "the root istiod signs with now".into(),
        };
        input.stage = match target {
            1 => Stage::TrustBoth { old },
            2 => Stage::NewIntermediate { old },
            _ => Stage::Plain,
        };
    }
    // The proxies' agent setting comes with the phase that starts a
    // rotation; a held or later phase keeps what is recorded.
    multi_root(graph, state, true, phase == 1 && advance);
    staged.rotation = Some(rotation);
    staged
}

/// What the proxies of `evidence` show of the phase before `rotation`'s
/// (pure): before phase 2, every proxy's Envoy trusts the new root;
/// before phase 3, every proxy's workload certificate is issued under
/// it. These are what Istio's own rotation test waits for (its workload
/// certificates re-issued), read as `istioctl proxy-config secret` reads
/// them. A cluster or proxy that could not be read is outstanding too: a
/// gate that cannot look never opens by default.
pub fn gate(rotation: &Rotation, evidence: &Evidence) -> Gate {
    let mut gate = Gate::default();
    for (cluster, found) in evidence {
        let proxies = match found {
            Ok(p) => p,
            Err(why) => {
                gate.outstanding.push((
                    cluster.clone(),
                    format!("{cluster}: its proxies could not be listed ({why})"),
                ));
                continue;
            }
        };
        gate.proxies.insert(cluster.clone(), proxies.len());
        let mut by_ns: BTreeMap<&str, InNamespace> = BTreeMap::new();
        for p in proxies {
            let ns = by_ns.entry(&p.namespace).or_default();
            ns.all += 1;
            if !p.xds_agent {
                ns.no_agent.push(&p.pod);
            }
            if !reads_secrets(rotation) {
                continue;
            }
            match &p.held {
                Some(Ok(held)) if took_effect(rotation, held) => {}
                Some(Ok(_)) => ns.late.push(&p.pod),
                Some(Err(why)) => ns.unread.push(format!("{} ({why})", p.pod)),
                None => ns.unread.push(format!("{} (not read)", p.pod)),
            }
        }
        let behind = if rotation.phase == 2 {
            "do not trust the new root yet"
        } else {
            "hold a certificate not issued under the new root yet"
        };
        for (
            ns,
            InNamespace {
                all,
                late,
                unread,
                no_agent,
            },
        ) in by_ns
        {
            let at = format!("{cluster}, namespace {ns}");
            if !late.is_empty() {
                gate.outstanding.push((
                    cluster.clone(),
                    format!(
                        "{at}: {} of {all} proxies {behind}: {}",
                        late.len(),
                        names(&late)
                    ),
                ));
            }
            if !unread.is_empty() {
                let unread: Vec<&str> = unread.iter().map(String::as_str).collect();
                gate.outstanding.push((
                    cluster.clone(),
                    format!(
                        "{at}: {} of {all} proxies could not be read: {}",
                        unread.len(),
                        names(&unread)
                    ),
                ));
            }
            if !no_agent.is_empty() {
                gate.restart_once.push((
                    cluster.clone(),
                    format!(
                        "{at}: {} of {all} proxies: {}",
                        no_agent.len(),
                        names(&no_agent)
                    ),
                ));
            }
        }
    }
    gate
}

/// The proxies of one namespace, as the gate sorts them.
#[derive(Default)]
struct InNamespace<'a> {
    all: usize,
    /// Read, and not showing the phase before.
    late: Vec<&'a str>,
    /// Not read, each with why.
    unread: Vec<String>,
    /// Without `PROXY_CONFIG_XDS_AGENT`.
    no_agent: Vec<&'a str>,
}

/// Whether one proxy shows the phase before `rotation`'s took effect.
fn took_effect(rotation: &Rotation, held: &providers::proxies::Held) -> bool {
    if rotation.phase == 2 {
        held.roots.contains(&rotation.new_root)
    } else {
        providers::ca::signed_under(&held.chain, &rotation.new_root_pem)
    }
}

/// At most five names, then how many more.
fn names(all: &[&str]) -> String {
    let mut shown = all.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if all.len() > 5 {
        shown.push_str(&format!(" and {} more", all.len() - 5));
    }
    shown
}

/// `ISTIO_MULTIROOT_MESH` on every control plane of a primary with a
/// `plug-ca` step: while a rotation runs, and after, where the recorded
/// install has it (so a finished rotation does not restart istiod again);
/// and `PROXY_CONFIG_XDS_AGENT` for the proxies when this apply starts a
/// rotation (`starting`), or where the recorded install has it, so a
/// plan that holds a phase, or an install recorded before mesh set it,
/// changes nothing.
fn multi_root(graph: &mut StepGraph, state: &State, rotating: bool, starting: bool) {
    let ids: Vec<String> = graph
        .in_order()
        .filter(|s| matches!(s.input, StepInput::InstallControlPlane(_)))
        .filter(|s| graph.contains(&format!("{}/plug-ca", s.cluster)))
        .map(|s| s.id.clone())
        .collect();
    for id in ids {
        let recorded = state
            .steps
            .get(&id)
            .map(|r| r.input.as_str())
            .unwrap_or_default();
        let has_multi_root = recorded.contains(&format!("{MULTI_ROOT_ENV}: true"));
        let has_agent = recorded.contains(XDS_AGENT);
        if let Some(step) = graph.get_mut(&id)
            && let StepInput::InstallControlPlane(input) = &mut step.input
        {
            input.multi_root = rotating || has_multi_root;
            input.xds_agent = starting || has_agent;
        }
    }
}

impl Rotation {
    /// What the plan says of this phase: what it does, what the proxies
    /// showed of the phase before, and what the next one waits for.
    pub fn notes(&self) -> Vec<String> {
        let new = format!("sha256:{}…", short(&self.new_root));
        let on = self.primaries.join(", ");
        let what = match self.phase {
            1 => "trust both roots",
            2 => "sign with the new root",
            _ => "drop the old root",
        };
        let before = match self.phase {
            2 => "every proxy trusts the new root",
            _ => "every proxy's workload certificate is issued under the new root",
        };
        let mut notes = Vec::new();
        let gate = self.gate.clone().unwrap_or_default();
        let outstanding = || {
            gate.outstanding
                .iter()
                .map(|(_, l)| format!(" {l};"))
                .collect::<String>()
                .trim_end_matches(';')
                .to_string()
        };
        if self.waiting {
            if !gate.cacerts_off.is_empty() {
                notes.push(format!(
                    "root rotation, phase {} of 3 ({what}) waits: the cacerts of {} is not as mesh \
                     wrote it (its plug-ca step shows the drift), and no phase goes on anywhere while a primary's \
                     cacerts is off, since its workloads could not reach those signed under the \
                     next phase. This plan writes it there again as recorded; plan again after \
                     this apply. `--allow {GATE}` does not override this",
                    self.phase,
                    gate.cacerts_off.join(", "),
                ));
            }
            if !gate.outstanding.is_empty() {
                let allow = if gate.cacerts_off.is_empty() {
                    format!(
                        "; `--allow {GATE}` plans phase {} now, and the plan records it",
                        self.phase
                    )
                } else {
                    String::new()
                };
                notes.push(format!(
                    "root rotation, phase {} of 3 ({what}) waits: phase {} has not taken effect \
                     everywhere, so nothing of the rotation is planned. It is planned when {before}, \
                     as each proxy's Envoy shows it (`istioctl proxy-config secret POD -n NAMESPACE`); \
                     outstanding:{}. Proxies with {XDS_AGENT}=true take what istiod sends within \
                     seconds; the others when they restart (`kubectl rollout restart \
                     deployment,statefulset,daemonset -n NAMESPACE`) or renew their certificate (12 \
                     hours by default). Plan again then{allow}",
                    self.phase,
                    self.phase - 1,
                    outstanding(),
                ));
            }
        } else {
            if self.overridden {
                notes.push(format!(
                    "root rotation, phase {} of 3 is planned by `--allow {GATE}` although phase {} \
                     has not taken effect everywhere (not yet {before}):{}",
                    self.phase,
                    self.phase - 1,
                    outstanding()
                ));
            } else if self.phase > 1
                && let Some(g) = &self.gate
            {
                let n: usize = g.proxies.values().sum();
                notes.push(if n == 0 {
                    format!(
                        "root rotation: phase {} took effect (no proxy runs in the mesh's {} clusters)",
                        self.phase - 1,
                        g.proxies.len()
                    )
                } else {
                    format!(
                        "root rotation: phase {} took effect: {before}, all {n} proxies of {} clusters",
                        self.phase - 1,
                        g.proxies.len()
                    )
                });
            }
            notes.push(self.phase_note(what, &on, &new));
        }
        if !gate.restart_once.is_empty() {
            notes.push(format!(
                "proxies injected without {XDS_AGENT}=true take each phase only when they restart or \
                 renew their certificate (12 hours by default); restart them once{} so that they \
                 take the later phases in place:{}",
                if self.phase == 1 && !self.waiting { " after this apply" } else { "" },
                gate.restart_once
                    .iter()
                    .map(|(_, l)| format!(" {l};"))
                    .collect::<String>()
                    .trim_end_matches(';')
            ));
        }
        notes
    }

    /// What the phase does, once it is planned.
    fn phase_note(&self, what: &str, on: &str, new: &str) -> String {
        let phase = self.phase;
        match phase {
            1 => format!(
                "root rotation, phase 1 of 3 ({what}) on {on}: cacerts keeps its intermediate, \
                 signed by the old root {}, and trusts the new root {new} beside it; istiod gets \
                 {MULTI_ROOT_ENV}=true (it restarts in this phase, to load the bundle and the \
                 setting) and the mesh's proxies {XDS_AGENT}=true (meshConfig.defaultConfig.\
                 proxyMetadata), so that they take the bundle and later certificates from istiod \
                 without restarts. `mesh plan` plans phase 2 once every proxy of every cluster \
                 trusts the new root",
                self.old_root
            ),
            2 => format!(
                "root rotation, phase 2 of 3 ({what}) on {on}: each primary gets a new \
                 intermediate signed by the new root {new}; root-cert.pem trusts both roots, the \
                 new one first: the changed bundle makes istiod push it to the proxies, whose \
                 agents request new certificates at once. `mesh plan` plans phase 3 once every \
                 proxy's workload certificate is issued under the new root"
            ),
            _ => format!(
                "root rotation, phase 3 of 3 ({what}) on {on}: cacerts trusts only the new root \
                 {new}; a workload still holding a certificate of the old root {} would lose \
                 mTLS, which is why this phase waited for every proxy. Done when `mesh check` \
                 passes `cacerts` and `published root` everywhere",
                self.old_root
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn rec(cluster: &str, signer: &str, trusted: Option<&[&str]>) -> StepRecord {
        let mut outputs = BTreeMap::from([("root_sha256".to_string(), json!(signer))]);
        if let Some(t) = trusted {
            outputs.insert(TRUSTED_ROOTS.into(), json!(t));
        }
        StepRecord {
            kind: "plug-ca".into(),
            cluster: cluster.into(),
            context: cluster.into(),
            depends_on: vec![],
            input_fingerprint: String::new(),
            input: String::new(),
            outputs,
            status: state::Status::Applied,
            updated_at: String::new(),
        }
    }

    /// Roots as the state records them: sha256, 64 lowercase hex digits.
    const OLD: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const NEW: &str = "0202020202020202020202020202020202020202020202020202020202020202";
    const OTHER: &str = "0303030303030303030303030303030303030303030303030303030303030303";

    #[test]
    fn progress_is_read_from_the_roots_a_cacerts_trusts_and_signs_with() {
        let p = |r: Option<StepRecord>, running| progress(r.as_ref(), running, NEW);
        assert_eq!(p(None, false), Ok(Progress::Fresh));
        assert_eq!(p(None, true), Ok(Progress::At(0, OldRoot::Live)));
        // A first apply that failed recorded no root: as if none.
        assert_eq!(p(Some(rec("c", "", None)), false), Ok(Progress::Fresh));
        assert_eq!(
            p(Some(rec("c", "", None)), true),
            Ok(Progress::At(0, OldRoot::Live))
        );
        // A hand-made bundle kept in phase 1.
        assert_eq!(
            p(Some(rec("c", OLD, Some(&[OLD, OTHER, NEW]))), true),
            Ok(Progress::At(1, OldRoot::Recorded(OLD.into())))
        );
        assert_eq!(p(Some(rec("c", NEW, None)), true), Ok(Progress::Done));
        assert_eq!(
            p(Some(rec("c", NEW, Some(&[NEW]))), true),
            Ok(Progress::Done)
        );
        let old = || OldRoot::Recorded(OLD.into());
        assert_eq!(
            p(Some(rec("c", OLD, None)), true),
            Ok(Progress::At(0, old()))
        );
        assert_eq!(
            p(Some(rec("c", OLD, Some(&[OLD, NEW]))), true),
            Ok(Progress::At(1, old()))
        );
        assert_eq!(
            p(Some(rec("c", NEW, Some(&[OLD, NEW]))), true),
            Ok(Progress::At(2, old()))
        );
        // Mid-rotation towards another root than the file names now.
        let e = p(Some(rec("c", OLD, Some(&[OLD, OTHER]))), true).unwrap_err();
        assert!(e.contains("Finish one rotation"), "{e}");
    }

    /// Hardening III, 4: `trusted_roots: []` or `[5]` read as "trusts
    /// nothing" (a plan said "No changes", then "(it trusts )"). Now the
    /// record is damaged, named by step and key.
    #[test]
    fn a_trusted_roots_that_is_not_a_list_of_fingerprints_is_damage() {
        let with = |v: Value| {
            let mut r = rec("c1", OLD, None);
            r.outputs.insert(TRUSTED_ROOTS.into(), v);
            r
        };
        for (bad, says) in [
            (json!([]), "is an empty list"),
            (json!([5]), "item 1 is a number"),
            (
                json!([OLD, "old"]),
                "item 2 is a string that is not 64 lowercase hex digits",
            ),
            (json!(["AB".repeat(32)]), "item 1 is a string"),
            (json!(OLD), "is a string"),
            (json!(null), "is null"),
            (json!({"a": 1}), "is an object"),
        ] {
            let e = progress(Some(&with(bad.clone())), true, NEW).unwrap_err();
            assert!(
                e.starts_with("c1/plug-ca: the state's record is damaged"),
                "{e}"
            );
            assert!(
                e.contains(says) && e.contains("`mesh state rm c1/plug-ca`"),
                "{bad}: {e}"
            );
            let mut st = State::new("m");
            st.steps.insert("c1/plug-ca".into(), with(bad.clone()));
            let found = damaged(&st);
            assert_eq!(found.len(), 1, "{bad}: {found:?}");
            assert!(
                found[0].starts_with(
                    "step `c1/plug-ca`, key `outputs.trusted_roots`: `trusted_roots` is "
                ),
                "{}",
                found[0]
            );
            assert!(found[0].contains(says), "{bad}: {}", found[0]);
        }
        let mut st = State::new("m");
        st.steps
            .insert("c1/plug-ca".into(), with(json!([OLD, NEW])));
        st.steps.insert("c2/plug-ca".into(), rec("c2", OLD, None));
        assert!(damaged(&st).is_empty());
    }

    /// The gate's verdict: a proxy behind, one unread and a cluster that
    /// could not be listed are each outstanding, named by cluster and
    /// namespace; proxies without the agent are named to restart once.
    #[test]
    fn the_gate_names_every_proxy_that_does_not_show_the_phase_before() {
        use providers::proxies::{Held, Proxy};
        let proxy =
            |ns: &str, pod: &str, agent: bool, roots: Option<Result<&[&str], &str>>| Proxy {
                namespace: ns.into(),
                pod: pod.into(),
                xds_agent: agent,
                held: roots.map(|r| {
                    r.map(|r| Held {
                        roots: r.iter().map(|s| s.to_string()).collect(),
                        chain: String::new(),
                    })
                    .map_err(String::from)
                }),
            };
        let rotation = Rotation {
            phase: 2,
            new_root: NEW.into(),
            old_root: String::new(),
            new_root_pem: String::new(),
            primaries: vec!["c1".into()],
            gate: None,
            waiting: false,
            overridden: false,
        };
        let evidence: Evidence = BTreeMap::from([
            (
                "c1".to_string(),
                Ok(vec![
                    proxy("a", "ok", true, Some(Ok(&[OLD, NEW]))),
                    proxy("a", "late", false, Some(Ok(&[OLD]))),
                    proxy("b", "gone", true, Some(Err("port-forward refused"))),
                ]),
            ),
            ("c2".to_string(), Err("connection refused".to_string())),
        ]);
        let g = gate(&rotation, &evidence);
        let lines: Vec<&str> = g.outstanding.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            lines,
            [
                "c1, namespace a: 1 of 2 proxies do not trust the new root yet: late",
                "c1, namespace b: 1 of 1 proxies could not be read: gone (port-forward refused)",
                "c2: its proxies could not be listed (connection refused)",
            ]
        );
        assert_eq!(
            g.restart_once,
            [(
                "c1".to_string(),
                "c1, namespace a: 1 of 2 proxies: late".to_string()
            )]
        );
        assert_eq!(g.proxies, BTreeMap::from([("c1".to_string(), 3)]));
        // Phase 3 asks of each certificate that it be issued under the
        // new root.
        let (old_pem, old_key) = providers::ca::new_root("old").unwrap();
        let (new_pem, new_key) = providers::ca::new_root("new").unwrap();
        let under = |pem: &str, key| {
            providers::ca::intermediate(pem, key, "c1", 30)
                .unwrap()
                .chain_pem
        };
        let with_chain = |pod: &str, chain: String| Proxy {
            held: Some(Ok(Held {
                roots: vec![],
                chain,
            })),
            ..proxy("a", pod, true, None)
        };
        let third = Rotation {
            phase: 3,
            new_root_pem: new_pem.clone(),
            ..rotation.clone()
        };
        let chains: Evidence = BTreeMap::from([(
            "c1".to_string(),
            Ok(vec![
                with_chain("new", under(&new_pem, &new_key)),
                with_chain("old", under(&old_pem, &old_key)),
            ]),
        )]);
        let lines: Vec<String> = gate(&third, &chains)
            .outstanding
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        assert_eq!(
            lines,
            [
                "c1, namespace a: 1 of 2 proxies hold a certificate not issued under the new root yet: old"
            ]
        );
        // Phase 1 reads no Envoy: nothing outstanding, the agents still named.
        let first = Rotation {
            phase: 1,
            ..rotation
        };
        let g = gate(&first, &evidence);
        assert_eq!(g.outstanding.len(), 1, "only the unlisted cluster: {g:?}");
        assert_eq!(g.restart_once.len(), 1);
    }
}
