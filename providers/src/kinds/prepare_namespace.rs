//! `R/prepare-namespace`: istio-system in the remote, annotated with the
//! primary that manages it (`topology.istio.io/controlPlaneClusters`).

use crate::rendered::Rendered;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The primary cluster's name.
    pub primary: String,
}

/// The namespace as the guide leaves it: istio-system, annotated.
pub fn render(input: &Input) -> Rendered {
    Rendered {
        documents: vec![json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "istio-system",
                "annotations": {"topology.istio.io/controlPlaneClusters": input.primary},
            }
        })],
        unknown: false,
    }
}

// ---- against a cluster ----

use crate::env::{Applied, Env, Recorded, StepError};
use crate::observe::Observation;
use crate::rendered::Target;
use std::collections::BTreeMap;

const ANNOTATION: &str = "topology.istio.io/controlPlaneClusters";

fn namespace_doc() -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": crate::k8s::ISTIO_NAMESPACE}})
}

/// Creates istio-system if absent, then sets the annotation. `created`
/// remembers whether mesh made the namespace (so destroy only deletes its
/// own), across re-runs too.
pub async fn apply(
    env: &Env,
    step: &str,
    target: &Target,
    input: &Input,
    previous: Option<&Recorded<'_>>,
) -> Result<Applied, StepError> {
    let conn = env.clusters.connect(target).await?;
    let existed = crate::k8s::get(&conn, &namespace_doc()).await?.is_some();
    env.say(
        step,
        &format!(
            "annotating namespace istio-system {ANNOTATION}={}…",
            input.primary
        ),
    );
    // Server-side apply both creates and annotates; mesh owns only the annotation.
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": crate::k8s::ISTIO_NAMESPACE, "annotations": {ANNOTATION: input.primary}}});
    crate::k8s::apply(&conn, &doc).await?;
    let created_before = previous
        .and_then(|p| p.outputs.get("created"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let created = created_before || !existed;
    Ok(Applied {
        outputs: BTreeMap::from([("created".to_string(), Value::from(created))]),
        log: format!(
            "{} namespace istio-system; annotated {ANNOTATION}={}\n",
            if existed { "found" } else { "created" },
            input.primary
        ),
    })
}

/// Drift: the namespace missing, or the annotation removed or changed.
pub async fn read(
    env: &Env,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<Observation, StepError> {
    let conn = env.clusters.connect(target).await?;
    let want = recorded
        .documents()
        .first()
        .and_then(|d| {
            d.pointer("/metadata/annotations")
                .and_then(|a| a.get(ANNOTATION))
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_default();
    let mut obs = Observation::in_sync(recorded.outputs.clone());
    match crate::k8s::get(&conn, &namespace_doc()).await? {
        None => obs.drift.push("namespace istio-system missing".into()),
        Some(ns) => match ns
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION))
        {
            None => obs.drift.push(format!("annotation {ANNOTATION} removed")),
            Some(v) if *v != want => obs.drift.push(format!(
                "annotation {ANNOTATION} is `{v}`, mesh set `{want}`"
            )),
            Some(_) => {}
        },
    }
    Ok(obs)
}

/// Removes the annotation; deletes the namespace if mesh created it.
pub async fn destroy(
    env: &Env,
    _step: &str,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<String, StepError> {
    let conn = env.clusters.connect(target).await?;
    if recorded
        .outputs
        .get("created")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        crate::k8s::delete(&conn, &namespace_doc()).await?;
        return Ok("deleted namespace istio-system (mesh created it)\n".into());
    }
    if crate::k8s::get(&conn, &namespace_doc()).await?.is_some() {
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: null}}});
        crate::k8s::merge_patch(&conn, &namespace_doc(), &patch).await?;
    }
    Ok(format!(
        "removed annotation {ANNOTATION} from namespace istio-system\n"
    ))
}
