//! What a step kind is: the one trait every file of `kinds/` implements.
//!
//! A kind is a type (a unit struct) with an `Input` and six verbs: a pure
//! `render` (the documents it will apply, which the planner diffs and
//! fingerprints), and, against live clusters, `apply`, `read` (refresh),
//! `destroy`, `adopt` (`mesh import`) and `preview` (a look before the first
//! apply); and what its apply and destroy need of a cluster
//! (`apply_access`, `destroy_access`, `RUNS_ISTIOCTL`), which preflight
//! checks before anything runs. Every verb but `render` has a default: a kind that renders
//! Kubernetes objects gets them server-side applied, read back and deleted
//! ([`crate::objects`]); istioctl installs get theirs from
//! `kinds::istioctl_install`.
//!
//! Kinds are registered in one list, `kinds::registry!`, which builds the
//! enums the engine holds ([`crate::StepKind`], [`crate::StepInput`]) and
//! dispatches each verb to its kind. Kinds never import that list: this
//! module is below both.
//!
//! The verbs are associated functions (no `self`): a kind carries no data,
//! its `Input` does. They return `Send` futures because the executor runs
//! steps on tokio's worker threads.

use crate::access::{Access, Need};
use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::observe::Observation;
use crate::rendered::{Known, Rendered};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;

/// Looks up an upstream step's output: `(step id, output key)`.
pub type OutputLookup<'a> = &'a dyn Fn(&str, &str) -> Known<Value>;

/// What `mesh import` found for one step of the mesh file.
#[derive(Debug, Clone, PartialEq)]
pub enum Adoption {
    /// The live objects are what mesh would apply: recorded as applied,
    /// with these outputs (read from the cluster).
    Adopted(BTreeMap<String, Value>),
    /// They are not (missing, or other): the phrases say how.
    Differs(Vec<String>),
}

impl Adoption {
    /// A refresh's view of the step as an adoption: adopted when nothing
    /// drifted.
    pub fn from_observation(obs: Observation) -> Adoption {
        if obs.drift.is_empty() {
            Adoption::Adopted(obs.outputs)
        } else {
            Adoption::Differs(obs.drift)
        }
    }
}

/// Whether a kind's apply and destroy run istioctl ([`Kind::RUNS_ISTIOCTL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunsIstioctl {
    pub apply: bool,
    pub destroy: bool,
}

impl RunsIstioctl {
    pub const NEVER: RunsIstioctl = RunsIstioctl {
        apply: false,
        destroy: false,
    };
    pub const ALWAYS: RunsIstioctl = RunsIstioctl {
        apply: true,
        destroy: true,
    };
}

/// One kind of step. See the module docs; `kinds/` has one file per kind.
pub trait Kind: Send + Sync + 'static {
    /// The second half of a step ID (`cluster1/install-control-plane`).
    const NAME: &'static str;

    /// Whether the step looks at its cluster before it is first applied
    /// ([`Kind::preview`]): what is there may be replaced, and the plan
    /// should say so.
    const PREVIEWS: bool = false;

    /// Whether applying the step, and destroying it, runs istioctl: then
    /// preflight checks that istioctl is there (and the pinned version).
    const RUNS_ISTIOCTL: RunsIstioctl = RunsIstioctl::NEVER;

    /// What the topology gives the step: everything `render` needs.
    type Input: Clone + Debug + PartialEq + Send + Sync;

    /// What applying the step needs of the clusters (`update`: it is
    /// recorded already, so an update may also delete what it no longer
    /// renders): preflight asks one `SelfSubjectAccessReview` each before
    /// a plan is shown or a step runs. No default: a kind says what it
    /// touches, or preflight would pass a plan its credentials cannot apply.
    fn apply_access(input: &Self::Input, update: bool) -> Vec<Need>;

    /// What destroying a recorded step needs, in its own cluster (from the
    /// record alone, as destroy works).
    fn destroy_access() -> Vec<Access>;

    /// The step's canonical input: deterministic documents, pure.
    /// `outputs` supplies upstream outputs (only `install-remote` needs
    /// one: the east-west address).
    fn render(input: &Self::Input, outputs: OutputLookup<'_>) -> Rendered;

    /// What an update from the recorded documents `old` to `new` leaves
    /// behind, one phrase each for the plan's reason (objects the apply
    /// deletes, a revision that stays installed). Pure.
    /// By default, the recorded objects the new documents no longer name.
    fn leftovers(old: &[Value], new: &Rendered) -> Vec<String> {
        crate::objects::deletions(old, new)
    }

    /// What deleting the step removes, in plain words, for the reviewer
    /// (`recorded`: its recorded documents; `holder`: for a step whose
    /// objects live in another cluster than its own, that cluster).
    fn removes(cluster: &str, _holder: Option<&str>, _recorded: &[Value]) -> String {
        format!("what {} applied in {cluster}", Self::NAME)
    }

    /// Makes the cluster match `rendered`. `previous` is the step's record
    /// when it has one (an update). By default, a server-side apply of the
    /// documents, then deletion of what `previous` had and they no longer
    /// name.
    fn apply(
        cx: Ctx<'_>,
        _input: &Self::Input,
        rendered: &Rendered,
        previous: Option<&Recorded<'_>>,
    ) -> impl Future<Output = Result<Applied, StepError>> + Send {
        crate::objects::apply(cx, rendered, previous, &|_| false)
    }

    /// Reads a recorded step back from its cluster: drift, and the outputs
    /// as the cluster has them now. `input` is the step as the mesh file has
    /// it now, when it still has it (some checks need more than the record).
    /// By default, each recorded object present with the spec mesh applied.
    fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        _input: Option<&Self::Input>,
    ) -> impl Future<Output = Result<Observation, StepError>> + Send {
        crate::objects::read(cx, recorded)
    }

    /// Undoes a recorded step. Works from the record alone, so a step
    /// removed from the mesh file can still be destroyed. By default, the
    /// recorded objects are deleted, last first.
    fn destroy(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
    ) -> impl Future<Output = Result<String, StepError>> + Send {
        crate::objects::destroy(cx, recorded)
    }

    /// For `mesh import`: whether the live objects are what mesh would
    /// apply (`text`, the canonical rendered input), with the outputs read
    /// from the cluster. Changes nothing. By default, a read of the step
    /// as if `text` had been recorded with no outputs.
    fn adopt(
        cx: Ctx<'_>,
        input: &Self::Input,
        text: &str,
    ) -> impl Future<Output = Result<Adoption, StepError>> + Send {
        async move {
            let outputs = BTreeMap::new();
            let guess = Recorded {
                input: text,
                outputs: &outputs,
            };
            Ok(Adoption::from_observation(
                Self::read(cx, &guess, Some(input)).await?,
            ))
        }
    }

    /// What a step not yet recorded would replace, as phrases for the
    /// plan's reason. Only called when [`Kind::PREVIEWS`] is set.
    fn preview(
        _cx: Ctx<'_>,
        _input: &Self::Input,
    ) -> impl Future<Output = Result<Vec<String>, StepError>> + Send {
        async { Ok(Vec::new()) }
    }
}
