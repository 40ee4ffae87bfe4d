//! "An istioctl install step", once: the control plane, the east-west
//! gateway and the remote profile are each `istioctl install -y -f -` of one
//! rendered IstioOperator, read back by the objects it owns, and undone by
//! an uninstall or by deleting what carries its labels. Each of those kinds
//! implements [`IstioctlInstall`] (its document, its objects, how it is
//! undone) and gets [`Kind`] from the blanket impl below.

use crate::env::Ctx;
use crate::env::{Applied, Recorded, StepError};
use crate::kind::{Kind, OutputLookup};
use crate::observe::Observation;
use crate::rendered::Rendered;
use serde_json::{Value, json};
use std::fmt::Debug;

/// The annotation that carries `[mesh] istio_version` into the install
/// steps' IstioOperators: istioctl ignores it, but it is part of the
/// step's input, so changing the version shows as an update of every
/// install (an upgrade in the plan) and re-runs them.
pub const ISTIO_VERSION_ANNOTATION: &str = "mesh/istio-version";

/// An IstioOperator's `metadata`: its name, and the Istio version when the
/// mesh file pins one. The name matters: `istioctl install` prunes every
/// object of its revision that carries its owner labels, and an unnamed
/// IstioOperator's owner labels match other IstioOperators' objects too,
/// so re-installing an unnamed control plane deletes the east-west gateway
/// (Istio issues 29634 and 36982). Each install of mesh's has its own name.
pub fn iop_metadata(name: &str, istio_version: Option<&str>) -> Value {
    let mut meta = json!({ "name": name });
    if let Some(v) = istio_version {
        meta["annotations"] = json!({ ISTIO_VERSION_ANNOTATION: v });
    }
    meta
}

/// The revision of an IstioOperator document (`default` when it has none).
pub fn revision_of(doc: Option<&Value>) -> String {
    doc.and_then(|d| d.pointer("/spec/revision"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .unwrap_or("default")
        .to_string()
}

/// An object's name for an IstioOperator document's revision: `base` for
/// the default revision, `base-<revision>` otherwise (`istiod-canary`).
pub fn revisioned(base: &str, doc: Option<&Value>) -> String {
    match revision_of(doc).as_str() {
        "default" => base.to_string(),
        rev => format!("{base}-{rev}"),
    }
}

/// The recorded revision, when the new document installs another one.
pub fn revision_change(old: &[Value], new: &[Value]) -> Option<String> {
    let (was, now) = (revision_of(old.first()), revision_of(new.first()));
    (!old.is_empty() && was != now).then_some(was)
}

/// The plan's phrase for a revision an update leaves installed: a canary
/// upgrade keeps the old control plane until workloads moved; removing it
/// is the user's call.
pub fn revision_stays(old: &[Value], new: &Rendered) -> Vec<String> {
    revision_change(old, &new.documents)
        .map(|old| {
            vec![format!(
                "Istio revision `{old}` stays installed beside the new one: once workloads \
                 have moved, remove it with `istioctl uninstall --revision {old}`"
            )]
        })
        .unwrap_or_default()
}

/// A reference to one object by `apiVersion`, `kind`, namespace and name,
/// as [`crate::k8s::get`] takes it.
pub fn object(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Value {
    let mut doc = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
    if let Some(ns) = namespace {
        doc["metadata"]["namespace"] = Value::from(ns);
    }
    doc
}

/// How an install step is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uninstall {
    /// `istioctl uninstall -y --purge`, then istio-system is deleted and
    /// waited for: an apply right after must not meet a terminating
    /// namespace (it would refuse to create objects in it).
    PurgeAndNamespace,
    /// `istioctl uninstall -y --purge` alone (a remote: its istio-system is
    /// its prepare-namespace step's).
    Purge,
    /// Deleting the objects istioctl labelled as this IstioOperator's
    /// `component`, of the kinds Istio's gateway chart renders.
    ///
    /// Not `istioctl uninstall -f <document>`, which is what Istio's guide
    /// would suggest: every install on the default revision regenerates the
    /// default tag's webhooks (`istio-revision-tag-default`,
    /// `istiod-default-validator`) and labels them as its own, so
    /// uninstalling the gateway's IstioOperator deletes them and sidecar
    /// injection stops in the whole cluster.
    Labelled {
        component: &'static str,
        /// The IstioOperator's name when the record has none.
        owner: &'static str,
    },
}

/// The kinds Istio's gateway chart renders (what [`Uninstall::Labelled`]
/// deletes).
const GATEWAY_KINDS: &[(&str, &str, &str)] = &[
    ("apps/v1", "Deployment", "deployments"),
    ("v1", "Service", "services"),
    ("v1", "ServiceAccount", "serviceaccounts"),
    ("rbac.authorization.k8s.io/v1", "Role", "roles"),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
    ),
    ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
];

/// A step that is one `istioctl install` of a rendered IstioOperator.
pub trait IstioctlInstall: Send + Sync + 'static {
    /// The second half of the step ID.
    const NAME: &'static str;
    /// What is installed, for progress lines ("control plane").
    const WHAT: &'static str;
    /// How the step is undone.
    const UNINSTALL: Uninstall;

    type Input: Clone + Debug + PartialEq + Send + Sync;

    /// The IstioOperator (pure).
    fn render(input: &Self::Input, outputs: OutputLookup<'_>) -> Rendered;

    /// The objects whose absence is drift, from the recorded documents.
    fn owned(recorded: &[Value]) -> Vec<Value>;
}

impl<T: IstioctlInstall> Kind for T {
    const NAME: &'static str = T::NAME;
    type Input = T::Input;

    fn render(input: &Self::Input, outputs: OutputLookup<'_>) -> Rendered {
        T::render(input, outputs)
    }

    fn leftovers(old: &[Value], new: &Rendered) -> Vec<String> {
        revision_stays(old, new)
    }

    /// `istioctl install -y -f - --context <ctx>` with the rendered document.
    async fn apply(
        cx: Ctx<'_>,
        _input: &Self::Input,
        rendered: &Rendered,
        _previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        if rendered.unknown {
            return Err(StepError::Failed(format!(
                "{} cannot run yet: its input still has values known only after apply \
                 (outputs of the steps it depends on)",
                cx.step
            )));
        }
        cx.say(&format!("istioctl install ({})…", T::WHAT));
        let log = cx
            .env
            .istioctl
            .install(cx.target, cx.env.kubeconfig.as_ref(), &rendered.to_yaml())
            .await?;
        Ok(Applied {
            outputs: Default::default(),
            log: log.output,
        })
    }

    /// Drift: one line per owned object that is missing.
    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        _input: Option<&Self::Input>,
    ) -> Result<Observation, StepError> {
        let owned = T::owned(&recorded.documents()?);
        let conn = cx.connect().await?;
        let mut obs = Observation::default();
        for doc in owned {
            if crate::k8s::get(&conn, &doc).await?.is_none() {
                obs.drift
                    .push(format!("{} missing", crate::k8s::describe(&doc)));
            }
        }
        Ok(obs)
    }

    async fn destroy(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Result<String, StepError> {
        let (env, target) = (cx.env, cx.target);
        match T::UNINSTALL {
            Uninstall::Purge | Uninstall::PurgeAndNamespace => {
                cx.say(&format!("istioctl uninstall --purge ({})…", T::WHAT));
                let log = env
                    .istioctl
                    .uninstall_purge(target, env.kubeconfig.as_ref())
                    .await?;
                if T::UNINSTALL == Uninstall::PurgeAndNamespace {
                    let conn = cx.connect().await?;
                    let ns = object("v1", "Namespace", None, crate::k8s::ISTIO_NAMESPACE);
                    cx.say("deleting namespace istio-system…");
                    crate::k8s::delete_and_wait(&conn, &ns, env.wait_timeout)
                        .await?
                        .map_err(StepError::Failed)?;
                }
                Ok(log.output)
            }
            Uninstall::Labelled { component, owner } => {
                let docs = recorded.documents()?;
                let owner = docs
                    .first()
                    .and_then(|d| d.pointer("/metadata/name"))
                    .and_then(Value::as_str)
                    .unwrap_or(owner);
                let selector = format!(
                    "install.operator.istio.io/owning-resource={owner},operator.istio.io/component={component}"
                );
                cx.say(&format!("deleting the {} ({selector})…", T::WHAT));
                let conn = cx.connect().await?;
                let deleted = crate::k8s::delete_labelled(
                    &conn,
                    GATEWAY_KINDS,
                    crate::k8s::ISTIO_NAMESPACE,
                    &selector,
                )
                .await?;
                Ok(deleted.iter().map(|d| format!("deleted {d}\n")).collect())
            }
        }
    }
}
