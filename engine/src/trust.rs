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
use serde_json::Value;
use state::{State, StepRecord};

/// A root rotation in progress, as the next apply takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    /// The phase the next apply takes: 1, 2 or 3.
    pub phase: u8,
    /// The new root (sha256).
    pub new_root: String,
    /// The old root as the plan shows it.
    pub old_root: String,
    /// The primaries this phase changes.
    pub primaries: Vec<String>,
}

/// What staging found: the rotation, and why the plan must not run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Staged {
    pub rotation: Option<Rotation>,
    pub refused: Vec<String>,
    /// Primaries whose `plug-ca` is replaced (`--replace`), so not staged.
    pub forced: Vec<String>,
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
            notes.push(format!(
                "plug-ca replaced on {}: its cacerts is written from the mesh file's root at once, \
                 with no rotation phases. If that root is new, workloads still holding \
                 certificates of the old root lose mTLS with the others until they restart",
                self.forced.join(", ")
            ));
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
    let least = primaries
        .iter()
        .filter_map(|(_, _, p)| match p {
            Progress::At(n, _) => Some(*n),
            _ => None,
        })
        .min();
    let Some(least) = least else {
        multi_root(graph, state, false);
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
    let mut rotation = Rotation {
        phase,
        new_root: String::new(),
        old_root: String::new(),
        primaries: Vec::new(),
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
        // The least advanced take the next phase; the others keep theirs.
        let target = if at == least { phase } else { at };
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
    multi_root(graph, state, true);
    staged.rotation = Some(rotation);
    staged
}

/// `ISTIO_MULTIROOT_MESH` on every control plane of a primary with a
/// `plug-ca` step: while a rotation runs, and after, where the recorded
/// install has it (so a finished rotation does not restart istiod again).
fn multi_root(graph: &mut StepGraph, state: &State, rotating: bool) {
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
            .is_some_and(|r| r.input.contains(&format!("{MULTI_ROOT_ENV}: true")));
        if let Some(step) = graph.get_mut(&id)
            && let StepInput::InstallControlPlane(input) = &mut step.input
        {
            input.multi_root = rotating || recorded;
        }
    }
}

impl Rotation {
    /// What the plan says of this phase: what it does, what must happen
    /// before the next, and how to tell.
    pub fn notes(&self) -> Vec<String> {
        let new = format!("sha256:{}…", short(&self.new_root));
        let on = self.primaries.join(", ");
        let restart = "restart every workload in every cluster of the mesh (for each namespace \
                       with sidecars or ambient: `kubectl rollout restart deployment,statefulset,daemonset -n NAMESPACE`)";
        match self.phase {
            1 => vec![format!(
                "root rotation, phase 1 of 3 (trust both roots) on {on}: cacerts keeps its intermediate, \
                 signed by the old root {}, and trusts the new root {new} beside it; istiod gets \
                 {MULTI_ROOT_ENV}=true (it restarts in this phase, to load the bundle and the \
                 setting), so later phases restart nothing. Before phase 2, \
                 every workload must trust both roots: {restart}, or wait for their certificates to \
                 renew (half their lifetime: 12 hours by default). Done when \
                 `kubectl get configmap istio-ca-root-cert -n NAMESPACE -o jsonpath='{{.data.root-cert\\.pem}}'` \
                 shows two certificates in every namespace of every cluster; then `mesh apply` takes phase 2",
                self.old_root
            )],
            2 => vec![format!(
                "root rotation, phase 2 of 3 (sign with the new root) on {on}: each primary gets a new \
                 intermediate signed by the new root {new}; both roots stay trusted, and istiod takes the \
                 intermediate in place. Before phase 3, every workload certificate must be re-issued by \
                 the new intermediates: {restart}. Done when `istioctl proxy-config secret POD -n NAMESPACE` \
                 shows each workload's chain ending in the new intermediate; then `mesh apply` takes phase 3"
            )],
            _ => vec![format!(
                "root rotation, phase 3 of 3 (drop the old root) on {on}: cacerts trusts only the new \
                 root {new}. Apply this only after phase 2's restarts in every cluster: a workload \
                 still holding a certificate of the old root {} loses mTLS. Done when `mesh check` \
                 passes `cacerts` and `published root` everywhere",
                self.old_root
            )],
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
}
