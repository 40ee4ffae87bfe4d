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
/// Set on istio-system when mesh creates it, in the same request: whether
/// mesh owns the namespace is then read from the cluster, so a state write
/// lost to a crash or a full disk cannot make destroy leave it behind.
pub const CREATED_BY: &str = "mesh/created-by";
const CREATED_BY_VALUE: &str = "mesh";

fn created_by_mesh(ns: &kube::api::DynamicObject) -> bool {
    ns.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CREATED_BY))
        .is_some_and(|v| v == CREATED_BY_VALUE)
}

fn namespace_doc() -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": crate::k8s::ISTIO_NAMESPACE}})
}

/// Creates istio-system if absent (marked [`CREATED_BY`] in the same
/// request), then sets the annotation. `created` (whether mesh made the
/// namespace, so destroy only deletes its own) is read back from the mark.
pub async fn apply(
    env: &Env,
    step: &str,
    target: &Target,
    input: &Input,
    previous: Option<&Recorded<'_>>,
) -> Result<Applied, StepError> {
    let conn = env.clusters.connect(target).await?;
    let marked = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": crate::k8s::ISTIO_NAMESPACE,
                     "annotations": {CREATED_BY: CREATED_BY_VALUE, ANNOTATION: input.primary}}});
    let existed = !crate::k8s::create(&conn, &marked).await?;
    env.say(
        step,
        &format!(
            "annotating namespace istio-system {ANNOTATION}={}…",
            input.primary
        ),
    );
    // States written before the mark existed remember `created` themselves.
    let created_before = previous
        .and_then(|p| p.outputs.get("created"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let live = crate::k8s::get(&conn, &namespace_doc()).await?;
    let created = !existed || created_before || live.as_ref().is_some_and(created_by_mesh);
    // Server-side apply of what mesh owns: the annotation, and the mark when
    // the namespace is mesh's (applied too, so that this apply, by the same
    // field manager as the create, never drops it).
    let mut annotations = serde_json::json!({ ANNOTATION: input.primary });
    if created {
        annotations[CREATED_BY] = Value::from(CREATED_BY_VALUE);
    }
    let doc = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": crate::k8s::ISTIO_NAMESPACE, "annotations": annotations}});
    crate::k8s::apply(&conn, &doc).await?;
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
        .documents()?
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
                "annotation {ANNOTATION} is `{}`, mesh set `{}`",
                crate::rendered::shown(v),
                crate::rendered::shown(&want)
            )),
            Some(_) => {}
        },
    }
    Ok(obs)
}

/// Removes the annotation; deletes the namespace (and waits for it to go)
/// if mesh created it: the live mark says so, or the record does.
pub async fn destroy(
    env: &Env,
    step: &str,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<String, StepError> {
    let conn = env.clusters.connect(target).await?;
    let live = crate::k8s::get(&conn, &namespace_doc()).await?;
    let recorded_created = recorded
        .outputs
        .get("created")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if recorded_created || live.as_ref().is_some_and(created_by_mesh) {
        env.say(step, "deleting namespace istio-system…");
        crate::k8s::delete_and_wait(&conn, &namespace_doc(), env.wait_timeout)
            .await?
            .map_err(StepError::Failed)?;
        return Ok("deleted namespace istio-system (mesh created it)\n".into());
    }
    if live.is_some() {
        let patch = serde_json::json!({"metadata": {"annotations": {ANNOTATION: null}}});
        crate::k8s::merge_patch(&conn, &namespace_doc(), &patch).await?;
    }
    Ok(format!(
        "removed annotation {ANNOTATION} from namespace istio-system\n"
    ))
}
