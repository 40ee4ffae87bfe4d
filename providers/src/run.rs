//! One entry point per verb for any step kind: apply, read (refresh) and
//! destroy. The engine calls these without knowing what a kind does.

use crate::env::{Applied, Env, Recorded, StepError};
use crate::kinds::{self, StepInput, StepKind};
use crate::observe::Observation;
use crate::rendered::{Rendered, Target};

/// Applies a step whose input was rendered as `rendered`. `previous` is its
/// record, when it has one (an update).
pub async fn apply(
    env: &Env,
    step: &str,
    target: &Target,
    input: &StepInput,
    rendered: &Rendered,
    previous: Option<&Recorded<'_>>,
) -> Result<Applied, StepError> {
    match input {
        StepInput::InstallControlPlane(_) => {
            kinds::install_control_plane::apply(env, step, target, rendered).await
        }
        StepInput::InstallEastwestGateway(_) => {
            kinds::install_eastwest_gateway::apply(env, step, target, rendered).await
        }
        StepInput::EastwestAddress(i) => kinds::eastwest_address::apply(env, step, target, i).await,
        StepInput::ExposeIstiod(_) => {
            kinds::expose_istiod::apply(env, step, target, rendered, previous).await
        }
        StepInput::PrepareNamespace(i) => {
            kinds::prepare_namespace::apply(env, step, target, i, previous).await
        }
        StepInput::InstallRemote(_) => {
            kinds::install_remote::apply(env, step, target, rendered).await
        }
        StepInput::Attach(i) => kinds::attach::apply(env, step, target, i, rendered).await,
        StepInput::PlugCa(i) => kinds::plug_ca::apply(env, step, target, i, rendered).await,
        StepInput::ExposeServices(_) => {
            kinds::expose_services::apply(env, step, target, rendered).await
        }
    }
}

/// Reads a recorded step back from its cluster. `input` is the step as the
/// mesh file has it now, when it still has it (some checks need more than
/// the record: attach asks the remote whether its token is still current).
pub async fn read(
    env: &Env,
    kind: StepKind,
    target: &Target,
    recorded: &Recorded<'_>,
    input: Option<&StepInput>,
) -> Result<Observation, StepError> {
    match kind {
        StepKind::InstallControlPlane => {
            kinds::install_control_plane::read(env, target, recorded).await
        }
        StepKind::InstallEastwestGateway => {
            kinds::install_eastwest_gateway::read(env, target, recorded).await
        }
        StepKind::EastwestAddress => kinds::eastwest_address::read(env, target, recorded).await,
        StepKind::ExposeIstiod => kinds::expose_istiod::read(env, target, recorded).await,
        StepKind::PrepareNamespace => kinds::prepare_namespace::read(env, target, recorded).await,
        StepKind::InstallRemote => kinds::install_remote::read(env, target, recorded).await,
        StepKind::Attach => {
            let input = match input {
                Some(StepInput::Attach(i)) => Some(i),
                _ => None,
            };
            kinds::attach::read(env, target, recorded, input).await
        }
        StepKind::PlugCa => kinds::plug_ca::read(env, target, recorded).await,
        StepKind::ExposeServices => kinds::expose_services::read(env, target, recorded).await,
    }
}

/// What `mesh import` found for one step of the mesh file.
#[derive(Debug, Clone, PartialEq)]
pub enum Adoption {
    /// The live objects are what mesh would apply: recorded as applied,
    /// with these outputs (read from the cluster).
    Adopted(std::collections::BTreeMap<String, serde_json::Value>),
    /// They are not (missing, or other): the phrases say how.
    Differs(Vec<String>),
}

/// For `mesh import`: whether the step's live objects match what mesh
/// would apply (its `rendered` input, `text` the canonical form), reading
/// its outputs from the cluster (the east-west address, the remote
/// secret's fingerprint, whether mesh made a namespace). Changes nothing.
pub async fn adopt(
    env: &Env,
    target: &Target,
    input: &StepInput,
    text: &str,
) -> Result<Adoption, StepError> {
    let outputs = std::collections::BTreeMap::new();
    let guess = Recorded {
        input: text,
        outputs: &outputs,
    };
    let done = |obs: Observation| {
        if obs.drift.is_empty() {
            Adoption::Adopted(obs.outputs)
        } else {
            Adoption::Differs(obs.drift)
        }
    };
    Ok(match input {
        StepInput::EastwestAddress(_) => kinds::eastwest_address::adopt(env, target).await?,
        StepInput::Attach(i) => kinds::attach::adopt(env, target, i, text).await?,
        StepInput::PlugCa(i) => kinds::plug_ca::adopt(env, target, i).await?,
        StepInput::PrepareNamespace(_) => {
            let obs = kinds::prepare_namespace::read(env, target, &guess).await?;
            match done(obs) {
                Adoption::Adopted(_) => Adoption::Adopted(std::collections::BTreeMap::from([(
                    "created".to_string(),
                    serde_json::Value::from(kinds::prepare_namespace::marked(env, target).await?),
                )])),
                other => other,
            }
        }
        other => done(read(env, other.kind(), target, &guess, Some(other)).await?),
    })
}

/// Looks at what a step not yet recorded would replace, as phrases for the
/// plan's reason (empty for kinds that replace nothing; see
/// [`StepInput::has_preview`]).
pub async fn preview(
    env: &Env,
    target: &Target,
    input: &StepInput,
) -> Result<Vec<String>, StepError> {
    match input {
        StepInput::PlugCa(_) => kinds::plug_ca::preview(env, target).await,
        _ => Ok(Vec::new()),
    }
}

/// Undoes a recorded step. Works from the record alone, so a step removed
/// from the mesh file can still be destroyed.
pub async fn destroy(
    env: &Env,
    step: &str,
    kind: StepKind,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<String, StepError> {
    match kind {
        StepKind::InstallControlPlane => {
            kinds::install_control_plane::destroy(env, step, target, recorded).await
        }
        StepKind::InstallEastwestGateway => {
            kinds::install_eastwest_gateway::destroy(env, step, target, recorded).await
        }
        StepKind::EastwestAddress => {
            kinds::eastwest_address::destroy(env, step, target, recorded).await
        }
        StepKind::ExposeIstiod => kinds::expose_istiod::destroy(env, step, target, recorded).await,
        StepKind::PrepareNamespace => {
            kinds::prepare_namespace::destroy(env, step, target, recorded).await
        }
        StepKind::InstallRemote => {
            kinds::install_remote::destroy(env, step, target, recorded).await
        }
        StepKind::Attach => kinds::attach::destroy(env, step, target, recorded).await,
        StepKind::PlugCa => kinds::plug_ca::destroy(env, step, target, recorded).await,
        StepKind::ExposeServices => {
            kinds::expose_services::destroy(env, step, target, recorded).await
        }
    }
}
