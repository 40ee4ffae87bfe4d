//! `R/install-remote`: `istioctl install` of the remote profile, pointing at
//! the primary's east-west address.

use crate::kinds::OutputLookup;
use crate::rendered::{KNOWN_AFTER_APPLY, Known, Rendered, deep_merge};
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub cluster: String,
    pub network: String,
    /// The primary's name: its `eastwest-address` step gives `remotePilotAddress`.
    pub primary: String,
    pub revision: Option<String>,
    pub values: Map<String, Value>,
    /// `[mesh] istio_version`, recorded in the document (see [`super::iop_metadata`]).
    pub istio_version: Option<String>,
    /// In a multi-network mesh: `values.global.network` is the remote's own.
    pub multi_network: bool,
}

/// The remote profile's IstioOperator name (why it has one: [`super::iop_metadata`]).
pub const NAME: &str = "remote";

/// The seed's cluster2 document: the remote profile, the injection path
/// for this cluster and network, and the primary's east-west address as
/// `remotePilotAddress` (`(known after apply)` until it is known).
pub fn render(input: &Input, outputs: OutputLookup<'_>) -> Rendered {
    let address_step = format!("{}/eastwest-address", input.primary);
    let (address, unknown) = match outputs(&address_step, "address") {
        Known::Known(v) => (v, false),
        Known::AfterApply => (Value::from(KNOWN_AFTER_APPLY), true),
    };
    let mut values = json!({
        "istiodRemote": {"injectionPath": format!("/inject/cluster/{}/net/{}", input.cluster, input.network)},
        "global": {"remotePilotAddress": address},
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    if input.multi_network {
        values["global"]["network"] = Value::from(input.network.as_str());
    }
    deep_merge(&mut values, &input.values);
    let mut spec = Map::new();
    if let Some(rev) = &input.revision {
        spec.insert("revision".into(), Value::from(rev.as_str()));
    }
    spec.insert("profile".into(), Value::from("remote"));
    spec.insert("values".into(), Value::Object(values));
    Rendered {
        documents: vec![json!({
            "apiVersion": "install.istio.io/v1alpha1",
            "kind": "IstioOperator",
            "metadata": super::iop_metadata(NAME, input.istio_version.as_deref()),
            "spec": spec,
        })],
        unknown,
    }
}

// ---- against a cluster ----

use crate::env::{Applied, Env, Recorded, StepError};
use crate::observe::Observation;
use crate::rendered::Target;

/// `istioctl install -y -f -` with the remote profile.
pub async fn apply(
    env: &Env,
    step: &str,
    target: &Target,
    rendered: &Rendered,
) -> Result<Applied, StepError> {
    if rendered.unknown {
        return Err(StepError::Failed(format!(
            "{step} cannot run yet: its input still has values known only after apply (the primary's east-west address)"
        )));
    }
    crate::env::istioctl_install(env, step, target, rendered, "remote profile").await
}

/// Drift: the sidecar injector's webhook missing, or Istio's reader
/// ServiceAccount (which `attach` needs) missing. A reader named by
/// `values.global.readerServiceAccount` is the user's to create, not
/// istioctl's, so it is not looked for here (attach reports it).
pub async fn read(
    env: &Env,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<Observation, StepError> {
    let docs = recorded.documents()?;
    let doc = docs.first();
    let custom_reader = doc
        .and_then(|d| d.pointer("/spec/values/global/readerServiceAccount/name"))
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let mut obs = if custom_reader {
        Observation::default()
    } else {
        crate::env::expect_present(
            env,
            target,
            (
                "v1",
                "ServiceAccount",
                crate::k8s::ISTIO_NAMESPACE,
                "istio-reader-service-account",
            ),
        )
        .await?
    };
    let webhook = match crate::kinds::revision_of(doc).as_str() {
        "default" => "istio-sidecar-injector".to_string(),
        rev => format!("istio-sidecar-injector-{rev}"),
    };
    let conn = env.clusters.connect(target).await?;
    let mwc = serde_json::json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration", "metadata": {"name": webhook}});
    if crate::k8s::get(&conn, &mwc).await?.is_none() {
        obs.drift
            .push(format!("MutatingWebhookConfiguration {webhook} missing"));
    }
    Ok(obs)
}

/// `istioctl uninstall -y --purge` on the remote.
pub async fn destroy(
    env: &Env,
    step: &str,
    target: &Target,
    _recorded: &Recorded<'_>,
) -> Result<String, StepError> {
    env.say(step, "istioctl uninstall --purge (remote)…");
    Ok(env
        .istioctl
        .uninstall_purge(target, env.kubeconfig.as_ref())
        .await?
        .output)
}
