//! "An istioctl install step", once: the control plane, the east-west
//! gateway and the remote profile are each `istioctl install -y -f -` of one
//! rendered IstioOperator, read back by the objects it owns, and undone by
//! an uninstall or by deleting what carries its labels. Each of those kinds
//! implements [`IstioctlInstall`] (its document, its objects, the values
//! that define the mesh, how it is undone) and gets [`Kind`] from the
//! blanket impl below.
//!
//! Deep drift: after an install, every object istioctl made for the
//! IstioOperator (found by its owner and revision labels) is recorded as the
//! step's output `objects`; a refresh reads each back (one request each), so
//! a deleted Deployment, Service or webhook, or a Deployment scaled to zero,
//! is drift. The values that define the mesh (meshID, clusterName, network,
//! the external-istiod setting, the remote's pilot address and injection
//! path) are compared with the `merged-values` istioctl leaves in ConfigMap
//! `values` (`values-<revision>`), so a re-install by hand with other values
//! is drift too.

use crate::access::{self, Access, Need};
use crate::env::Ctx;
use crate::env::{Applied, Recorded, StepError};
use crate::kind::RunsIstioctl;
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

/// The ingress gateway Istio's default profile installs, one per cluster
/// whatever the revision.
pub const DEFAULT_INGRESS: &str = "istio-ingressgateway";

/// Marks a kept revision's IstioOperator ([`KEPT_ANNOTATION`]) and keeps it
/// off what revisions share, so that re-applying it (a drift repair, a
/// `--replace`) takes nothing from the mesh's revision: no ingress gateway
/// (`istioctl install` relabels a shared gateway for whichever revision
/// ran last, and `uninstall --revision` then deletes it with that
/// revision) and no CRDs (an older istioctl would write its older schemas
/// over the newer ones). Its own prune leaves both, as their labels now
/// name the mesh's revision and Istio never prunes CRDs.
pub fn mark_kept(doc: &mut Value) {
    doc["metadata"]["annotations"][KEPT_ANNOTATION] = Value::from("true");
    doc["spec"]["values"]["base"]["enableCRDTemplates"] = Value::from(false);
    let profile = doc.pointer("/spec/profile").and_then(Value::as_str);
    if matches!(profile, None | Some("default" | "demo")) {
        doc["spec"]["components"]["ingressGateways"] =
            json!([{ "name": DEFAULT_INGRESS, "enabled": false }]);
    }
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
                "Istio revision `{old}` stays installed beside the new one (a canary: listed in \
                 [[mesh.keep_revision]], mesh keeps tracking it, and removing it there uninstalls it)"
            )]
        })
        .unwrap_or_default()
}

pub use crate::k8s::object;

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
const GATEWAY_KINDS: &[(&str, &str)] = &[
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
];

/// The output that records the objects an install made.
pub const OBJECTS: &str = "objects";

/// The kinds istioctl's charts render, where an install's objects are
/// looked for after it ran (`(apiVersion, kind)`).
const ISTIO_KINDS: &[(&str, &str)] = &[
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
    ),
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "DaemonSet"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
];

/// The labels istioctl puts on what it installs for one IstioOperator.
const OWNER_LABEL: &str = "install.operator.istio.io/owning-resource";
use crate::istio::REVISION_LABEL;

/// Every object istioctl made for the IstioOperator `doc`: its owner label,
/// and its revision where the object carries one (two revisions of one
/// named IstioOperator share the owner label). As references, sorted.
async fn installed_objects(
    conn: &crate::cluster::Connection,
    doc: Option<&Value>,
    default_owner: &str,
) -> Result<Vec<Value>, StepError> {
    let owner = doc
        .and_then(|d| d.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .unwrap_or(default_owner);
    let revision = revision_of(doc);
    let listed = crate::k8s::list_labelled(
        conn,
        ISTIO_KINDS,
        crate::k8s::ISTIO_NAMESPACE,
        &format!("{OWNER_LABEL}={owner}"),
    )
    .await?;
    Ok(listed
        .into_iter()
        .filter(|o| {
            let labels = o.pointer("/metadata/labels");
            labels
                .and_then(|l| l.get(REVISION_LABEL))
                .and_then(Value::as_str)
                .is_none_or(|r| r == revision)
                // EndpointSlices copy their Service's labels, but the
                // endpoint controller makes them (under generated names
                // it may replace at any time): not istioctl's.
                && labels
                    .and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
                    .and_then(Value::as_str)
                    .is_none_or(|m| !m.starts_with("endpointslice-controller"))
        })
        .map(|mut o| {
            if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("labels");
            }
            o
        })
        .collect())
}

/// Waits for Service `service` of istio-system to have a load-balancer
/// address (an IP or a name: whoever reads it decides what it accepts).
async fn wait_for_address(
    cx: Ctx<'_>,
    conn: &crate::cluster::Connection,
    service: &str,
) -> Result<String, StepError> {
    cx.say(&format!(
        "waiting for {service} to get a load-balancer address…"
    ));
    let ar = crate::k8s::resource_of(&json!({"apiVersion": "v1", "kind": "Service"}))
        .expect("a known kind");
    let address = |svc: &kube::api::DynamicObject| {
        let ingress = svc.data.pointer("/status/loadBalancer/ingress/0")?;
        ["ip", "hostname"]
            .iter()
            .find_map(|k| {
                ingress
                    .get(*k)
                    .and_then(Value::as_str)
                    .filter(|a| !a.is_empty())
            })
            .map(|a| Ok(a.to_string()))
    };
    let wait = cx.env.wait_timeout;
    let ns = crate::istio::NAMESPACE;
    match crate::k8s::wait_for(conn, &ar, Some(ns), service, wait, address).await {
        Ok(Ok(a)) => Ok(format!(
            "{service} has load-balancer address {}\n",
            crate::rendered::shown(&a)
        )),
        Ok(Err(why)) => Err(StepError::Failed(why)),
        Err(_) => Err(StepError::Failed(format!(
            "Service {ns}/{service} in cluster `{}` got no load-balancer address within {} s: the \
             other clusters cannot reach this one through it. Does the cluster have a \
             load-balancer implementation (MetalLB on kind)? `kubectl --context {} -n {ns} get \
             svc {service}` shows its state",
            cx.target.cluster,
            wait.as_secs(),
            cx.target.context
        ))),
    }
}

/// The objects recorded by the install, when the record has them (states
/// written before mesh recorded them fall back to `owned`).
fn recorded_objects(recorded: &Recorded<'_>) -> Option<Vec<Value>> {
    recorded
        .outputs
        .get(OBJECTS)?
        .as_array()
        .map(|a| a.iter().filter(|o| o.is_object()).cloned().collect())
}

/// The ConfigMap istioctl leaves with the values it rendered.
fn values_configmap(doc: Option<&Value>) -> String {
    revisioned("values", doc)
}

/// A Deployment scaled to zero replicas (by hand: istioctl's charts leave
/// `replicas` to the autoscaler).
fn scaled_to_zero(live: &kube::api::DynamicObject) -> bool {
    live.data.pointer("/spec/replicas").and_then(Value::as_i64) == Some(0)
}

/// The drift of the values that define the mesh: each `(pointer, name)` of
/// `defining` the recorded IstioOperator sets, against the live
/// `merged-values`.
fn values_drift(
    doc: Option<&Value>,
    live: &kube::api::DynamicObject,
    defining: &[(&str, &str)],
) -> Vec<String> {
    let name = live.metadata.name.clone().unwrap_or_default();
    let Some(merged) = live
        .data
        .pointer("/data/merged-values")
        .and_then(Value::as_str)
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
    else {
        return vec![format!(
            "ConfigMap istio-system/{name} has no readable merged-values"
        )];
    };
    // `true` and `"true"` are one setting to Istio's charts.
    let text = |v: &Value| {
        v.as_str()
            .map(String::from)
            .unwrap_or_else(|| v.to_string())
    };
    let mut drift = Vec::new();
    for (pointer, what) in defining {
        let Some(want) = doc.and_then(|d| d.pointer(&format!("/spec/values{pointer}"))) else {
            continue;
        };
        let live = merged.pointer(pointer);
        if live.map(text) != Some(text(want)) {
            drift.push(format!(
                "installed with {what} {} (ConfigMap istio-system/{name}), mesh installs {}",
                live.map_or("unset".into(), |v| crate::rendered::shown(&text(v))),
                crate::rendered::shown(&text(want))
            ));
        }
    }
    drift
}

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

    /// The objects whose absence is drift, from the recorded documents:
    /// what a record without its `objects` output is checked against.
    fn owned(recorded: &[Value]) -> Vec<Value>;

    /// The values that define the mesh, as `(pointer into spec.values,
    /// name)`: compared with what the install left in its `values`
    /// ConfigMap. Empty for an install that leaves none.
    const DEFINING: &'static [(&'static str, &'static str)] = &[];

    /// The IstioOperator name when the record has none (old records).
    const OWNER: &'static str;

    /// What deleting the step removes, in plain words ([`Kind::removes`]).
    fn removes(cluster: &str) -> String;

    /// Whether a revision change moves the install in place rather than
    /// installing beside the old revision (the east-west gateway: one
    /// Service, one address, upgraded in place as Istio's guide does).
    const MOVES_WITH_REVISION: bool = false;

    /// A LoadBalancer Service the install makes that other clusters reach
    /// this one through: apply waits (bounded, with progress) until it has
    /// an address, so what `mesh check` checks is there when apply ends.
    const SERVICE_ADDRESS: Option<&'static str> = None;

    /// A kept revision's own istioctl (`[[mesh.keep_revision]]`), which
    /// alone installs and uninstalls it; None: `[istioctl] path`.
    fn istioctl(_input: &Self::Input) -> Option<&str> {
        None
    }
}

/// The recorded output naming a kept revision's istioctl: its destroy is
/// that istioctl's `uninstall --revision`, never a purge.
const KEPT_ISTIOCTL: &str = "istioctl";

/// The annotation of a kept revision's IstioOperator (`[[mesh.keep_revision]]`),
/// so that its record says what deleting it removes.
pub const KEPT_ANNOTATION: &str = "mesh/kept-revision";

impl<T: IstioctlInstall> Kind for T {
    const NAME: &'static str = T::NAME;
    type Input = T::Input;
    /// istioctl installs; a gateway deleted by its labels needs no istioctl.
    const RUNS_ISTIOCTL: RunsIstioctl = RunsIstioctl {
        apply: true,
        destroy: !matches!(T::UNINSTALL, Uninstall::Labelled { .. }),
    };

    /// What `istioctl install` touches: anything in istio-system, and the
    /// cluster-wide objects of Istio's charts.
    fn apply_access(_: &Self::Input, _update: bool) -> Vec<Need> {
        access::here(access::istioctl_access("create"))
    }

    /// `uninstall --purge` deletes what install made; a gateway deleted by
    /// its labels touches istio-system only.
    fn destroy_access() -> Vec<Access> {
        match T::UNINSTALL {
            Uninstall::Labelled { .. } => {
                vec![Access::new("*", "*", "*", Some(crate::istio::NAMESPACE))]
            }
            // A kept revision's uninstall first reads what still uses it.
            Uninstall::Purge | Uninstall::PurgeAndNamespace => {
                let mut access = access::istioctl_access("delete");
                access.extend(crate::revision_use::access());
                access
            }
        }
    }

    fn render(input: &Self::Input, outputs: OutputLookup<'_>) -> Rendered {
        T::render(input, outputs)
    }

    fn leftovers(old: &[Value], new: &Rendered) -> Vec<String> {
        if T::MOVES_WITH_REVISION {
            Vec::new()
        } else {
            revision_stays(old, new)
        }
    }

    fn removes(cluster: &str, _holder: Option<&str>, recorded: &[Value]) -> String {
        let doc = recorded.first();
        if doc
            .and_then(|d| d.pointer("/metadata/annotations"))
            .and_then(|a| a.get(KEPT_ANNOTATION))
            .is_some()
        {
            let rev = revision_of(doc);
            return format!(
                "revision `{rev}`'s {} in {cluster} (`istioctl uninstall --revision {rev}`, by \
                 its own istioctl); the mesh's revision and the CRDs stay",
                T::WHAT
            );
        }
        T::removes(cluster)
    }

    /// `istioctl install -y -f - --context <ctx>` with the rendered document.
    async fn apply(
        cx: Ctx<'_>,
        input: &Self::Input,
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
        let kept = T::istioctl(input);
        let istioctl = match kept {
            Some(path) => {
                cx.say(&format!(
                    "istioctl install ({}, revision {}, with {path})…",
                    T::WHAT,
                    revision_of(rendered.documents.first())
                ));
                cx.env.istioctl.with_program(path)
            }
            None => {
                cx.say(&format!("istioctl install ({})…", T::WHAT));
                cx.env.istioctl.clone()
            }
        };
        let mut log = istioctl
            .install(cx.target, cx.env.kubeconfig.as_ref(), &rendered.to_yaml())
            .await?
            .output;
        let conn = cx.connect().await?;
        if let Some(service) = T::SERVICE_ADDRESS {
            log.push_str(&wait_for_address(cx, &conn, service).await?);
        }
        let objects = installed_objects(&conn, rendered.documents.first(), T::OWNER).await?;
        // istioctl leaves `replicas` to the autoscaler, so a Deployment
        // scaled to zero by hand stays there through a re-install, and an
        // autoscaler does not scale up from zero: mesh does.
        for doc in objects.iter().filter(|o| o["kind"] == "Deployment") {
            if let Some(live) = crate::k8s::get(&conn, doc).await?
                && scaled_to_zero(&live)
            {
                crate::k8s::merge_patch(&conn, doc, &json!({"spec": {"replicas": 1}})).await?;
                log.push_str(&format!(
                    "scaled {} from 0 to 1 replica (its autoscaler takes over)\n",
                    crate::k8s::describe(doc)
                ));
            }
        }
        let mut outputs: std::collections::BTreeMap<String, Value> =
            [(OBJECTS.to_string(), Value::Array(objects))].into();
        if let Some(path) = kept {
            outputs.insert(KEPT_ISTIOCTL.into(), Value::from(path));
        }
        Ok(Applied { outputs, log })
    }

    /// Drift: an object the install made that is missing, a Deployment of
    /// it scaled to zero, a value that defines the mesh that is not what
    /// mesh installed (see the module docs). One request per object.
    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        _input: Option<&Self::Input>,
    ) -> Result<Observation, StepError> {
        let docs = recorded.documents()?;
        let doc = docs.first();
        let mut objects = recorded_objects(recorded).unwrap_or_else(|| T::owned(&docs));
        let values = values_configmap(doc);
        let is_values = |o: &Value| o["kind"] == "ConfigMap" && o["metadata"]["name"] == values;
        if !T::DEFINING.is_empty() && !objects.iter().any(is_values) {
            objects.push(object(
                "v1",
                "ConfigMap",
                Some(crate::k8s::ISTIO_NAMESPACE),
                &values,
            ));
        }
        let conn = cx.connect().await?;
        let mut obs = Observation::in_sync(recorded.outputs.clone());
        for o in &objects {
            match crate::k8s::get(&conn, o).await? {
                None => obs
                    .drift
                    .push(format!("{} missing", crate::k8s::describe(o))),
                Some(live) if o["kind"] == "Deployment" && scaled_to_zero(&live) => obs
                    .drift
                    .push(format!("{} scaled to 0 replicas", crate::k8s::describe(o))),
                Some(live) if is_values(o) => {
                    obs.drift.extend(values_drift(doc, &live, T::DEFINING))
                }
                Some(_) => {}
            }
        }
        Ok(obs)
    }

    /// For `mesh import`: a read of the step as mesh would record it (its
    /// owned objects present, the values that define the mesh equal); the
    /// objects the install made are then recorded.
    async fn adopt(
        cx: Ctx<'_>,
        input: &Self::Input,
        text: &str,
    ) -> Result<crate::kind::Adoption, StepError> {
        let outputs = Default::default();
        let guess = Recorded {
            input: text,
            outputs: &outputs,
        };
        let obs = Self::read(cx, &guess, Some(input)).await?;
        if !obs.drift.is_empty() {
            return Ok(crate::kind::Adoption::Differs(obs.drift));
        }
        let docs = guess.documents()?;
        let conn = cx.connect().await?;
        let objects = installed_objects(&conn, docs.first(), T::OWNER).await?;
        Ok(crate::kind::Adoption::Adopted(
            [(OBJECTS.to_string(), Value::Array(objects))].into(),
        ))
    }

    async fn destroy(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Result<String, StepError> {
        let (env, target) = (cx.env, cx.target);
        // A kept revision: only it goes, by the istioctl that installed it.
        if let Some(path) = recorded.outputs.get(KEPT_ISTIOCTL).and_then(Value::as_str) {
            return destroy_kept::<T>(cx, recorded, path).await;
        }
        match T::UNINSTALL {
            Uninstall::Purge | Uninstall::PurgeAndNamespace => {
                cx.say(&format!("istioctl uninstall --purge ({})…", T::WHAT));
                let log = env
                    .istioctl
                    .uninstall_purge(target, env.kubeconfig.as_ref())
                    .await?;
                let conn = cx.connect().await?;
                if T::UNINSTALL == Uninstall::PurgeAndNamespace {
                    let ns = object("v1", "Namespace", None, crate::k8s::ISTIO_NAMESPACE);
                    cx.say("deleting namespace istio-system…");
                    crate::k8s::delete_and_wait(&conn, &ns, env.wait_timeout)
                        .await?
                        .map_err(StepError::Failed)?;
                }
                // The uninstall deletes Istio's CRDs, which go only once the
                // API server has removed their objects: destroy is complete
                // when they are gone, so a destroy followed at once by an
                // apply (or a check that nothing is left) never meets them.
                let crds: Vec<Value> = recorded_objects(recorded)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| o["kind"] == "CustomResourceDefinition")
                    .collect();
                if !crds.is_empty() {
                    cx.say(&format!("waiting for {} Istio CRDs to go…", crds.len()));
                }
                for crd in &crds {
                    crate::k8s::wait_gone(&conn, crd, env.wait_timeout)
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

/// A kept revision's uninstall (`istioctl uninstall --revision R`, by the
/// istioctl that installed it, `path`), only once nothing in its cluster
/// uses the revision any more.
async fn destroy_kept<T: IstioctlInstall>(
    cx: Ctx<'_>,
    recorded: &Recorded<'_>,
    path: &str,
) -> Result<String, StepError> {
    let (env, target) = (cx.env, cx.target);
    let docs = recorded.documents()?;
    let rev = revision_of(docs.first());
    // Gone already (a destroy purged the mesh's control plane
    // first): istioctl would refuse a revision it cannot find.
    let conn = cx.connect().await?;
    let webhooks = crate::k8s::list_labelled(
        &conn,
        &[(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
        )],
        crate::k8s::ISTIO_NAMESPACE,
        &format!("{REVISION_LABEL}={rev},!istio.io/tag"),
    )
    .await?;
    if webhooks.is_empty() {
        return Ok(format!("revision {rev} is already uninstalled\n"));
    }
    // The plan checked every cluster; a namespace labelled, a
    // workload or a tag pointed at the revision since then stops
    // the uninstall here, right before it.
    cx.say(&format!("checking what still uses revision {rev}…"));
    let uses = crate::revision_use::of(&conn, &rev).await?;
    if !uses.is_empty() {
        let why: Vec<String> = uses
            .iter()
            .map(|u| crate::revision_use::refusal(u, &target.cluster, &target.context, &rev))
            .collect();
        return Err(StepError::Failed(format!(
            "revision {rev} was not uninstalled: since the plan, {}",
            why.join("; ")
        )));
    }
    cx.say(&format!(
        "istioctl uninstall --revision {rev} ({}, with {path})…",
        T::WHAT
    ));
    let log = match env
        .istioctl
        .with_program(path)
        .uninstall_revision(target, env.kubeconfig.as_ref(), &rev)
        .await
    {
        Ok(log) => log,
        // Not `[istioctl] path`'s advice: this revision goes only
        // by the istioctl that installed it.
        Err(crate::istioctl::IstioctlError::NotFound { program }) => {
            return Err(StepError::NotRun(format!(
                "revision {rev} was not uninstalled: the istioctl that installed it (`{}`, \
                 recorded when it was kept) is not there. mesh uninstalls a kept revision only \
                 with its own istioctl: put Istio {}'s istioctl back at that path and run `mesh \
                 apply` again",
                crate::rendered::shown(&program),
                crate::rendered::shown(
                    docs.first()
                        .and_then(|d| d.pointer("/metadata/annotations"))
                        .and_then(|a| a.get(ISTIO_VERSION_ANNOTATION))
                        .and_then(Value::as_str)
                        .unwrap_or("(its release)")
                ),
            )));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(log.output)
}
