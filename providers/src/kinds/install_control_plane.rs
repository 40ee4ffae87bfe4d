//! `P/install-control-plane`: `istioctl install` of the primary's control plane.

use crate::rendered::{Rendered, deep_merge};
use serde_json::{Map, Value, json};

/// The control plane's IstioOperator name (why it has one: [`super::iop_metadata`]).
pub const NAME: &str = "control-plane";

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub mesh_id: String,
    pub cluster: String,
    pub network: String,
    pub revision: Option<String>,
    /// `values.pilot.env.EXTERNAL_ISTIOD: true`: set when the primary has remotes.
    pub external_istiod: bool,
    /// `[mesh] istio_version`, recorded in the document (see [`super::iop_metadata`]).
    pub istio_version: Option<String>,
    /// The cluster's `[cluster.values]`, deep-merged into `spec.values`.
    pub values: Map<String, Value>,
}

/// The seed's cluster1 document (`apiVersion`, `kind`, `spec.values.global`
/// with meshID, clusterName and network), `EXTERNAL_ISTIOD` folded in so it
/// shows in plans, the revision, then the user's values on top.
pub fn render(input: &Input) -> Rendered {
    let mut values = json!({
        "global": {
            "meshID": input.mesh_id,
            "multiCluster": {"clusterName": input.cluster},
            "network": input.network,
        }
    });
    if input.external_istiod {
        values["pilot"] = json!({"env": {"EXTERNAL_ISTIOD": true}});
    }
    let mut values = values.as_object().cloned().unwrap_or_default();
    deep_merge(&mut values, &input.values);
    let mut spec = Map::new();
    if let Some(rev) = &input.revision {
        spec.insert("revision".into(), Value::from(rev.as_str()));
    }
    spec.insert("values".into(), Value::Object(values));
    Rendered {
        documents: vec![json!({
            "apiVersion": "install.istio.io/v1alpha1",
            "kind": "IstioOperator",
            "metadata": super::iop_metadata(NAME, input.istio_version.as_deref()),
            "spec": spec,
        })],
        unknown: false,
    }
}

// ---- against a cluster ----

use crate::env::{Applied, Env, Recorded, StepError};
use crate::observe::Observation;
use crate::rendered::Target;

/// The istiod Deployment's name for a revision.
fn istiod_name(revision: Option<&str>) -> String {
    match revision {
        Some(r) if !r.is_empty() => format!("istiod-{r}"),
        _ => "istiod".into(),
    }
}

fn recorded_revision(recorded: &Recorded<'_>) -> Result<Option<String>, StepError> {
    Ok(recorded
        .documents()?
        .first()
        .and_then(|d| d.pointer("/spec/revision"))
        .and_then(Value::as_str)
        .map(String::from))
}

/// `istioctl install -y -f - --context <ctx>` with the rendered document.
pub async fn apply(
    env: &Env,
    step: &str,
    target: &Target,
    rendered: &Rendered,
) -> Result<Applied, StepError> {
    crate::env::istioctl_install(env, step, target, rendered, "control plane").await
}

/// Drift: istiod's Deployment missing.
pub async fn read(
    env: &Env,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<Observation, StepError> {
    let name = istiod_name(recorded_revision(recorded)?.as_deref());
    crate::env::expect_present(
        env,
        target,
        ("apps/v1", "Deployment", crate::k8s::ISTIO_NAMESPACE, &name),
    )
    .await
}

/// `istioctl uninstall -y --purge`, then the istio-system namespace is
/// deleted and waited for: an apply right after must not meet a
/// terminating namespace (it would refuse to create objects in it).
pub async fn destroy(
    env: &Env,
    step: &str,
    target: &Target,
    _recorded: &Recorded<'_>,
) -> Result<String, StepError> {
    env.say(step, "istioctl uninstall --purge…");
    let log = env
        .istioctl
        .uninstall_purge(target, env.kubeconfig.as_ref())
        .await?;
    let conn = env.clusters.connect(target).await?;
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": crate::k8s::ISTIO_NAMESPACE}});
    env.say(step, "deleting namespace istio-system…");
    crate::k8s::delete_and_wait(&conn, &ns, env.wait_timeout)
        .await?
        .map_err(StepError::Failed)?;
    Ok(log.output)
}
