//! `C/prepare-namespace`: istio-system made ready before Istio is installed
//! there. In a remote, annotated with the primary that manages it
//! (`topology.istio.io/controlPlaneClusters`); in a multi-network mesh,
//! labelled with the cluster's network (`topology.istio.io/network`), on
//! primaries too.

use crate::rendered::Rendered;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The primary cluster's name, for a remote: the annotation's value.
    pub primary: Option<String>,
    /// The cluster's network, in a multi-network mesh: the label's value.
    pub network: Option<String>,
}

const ANNOTATION: &str = "topology.istio.io/controlPlaneClusters";
const NETWORK_LABEL: &str = "topology.istio.io/network";

/// The namespace as Istio's guides leave it: istio-system, annotated and
/// labelled as the input says.
pub fn render(input: &Input) -> Rendered {
    Rendered {
        documents: vec![json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": metadata(input, false),
        })],
        unknown: false,
    }
}

/// The namespace's metadata as mesh applies it (with the ownership mark
/// when mesh created it).
fn metadata(input: &Input, created: bool) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), Value::from("istio-system"));
    let mut annotations = Map::new();
    if let Some(p) = &input.primary {
        annotations.insert(ANNOTATION.into(), Value::from(p.as_str()));
    }
    if created {
        annotations.insert(CREATED_BY.into(), Value::from(CREATED_BY_VALUE));
    }
    if let Some(n) = &input.network {
        meta.insert("labels".into(), json!({ NETWORK_LABEL: n }));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    Value::Object(meta)
}

// ---- against a cluster ----

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::access::{self, Access, Need};
use crate::kind::{Adoption, Kind, OutputLookup};
use crate::observe::Observation;
use std::collections::BTreeMap;

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

/// Whether the live istio-system carries mesh's creation mark.
async fn marked(cx: Ctx<'_>) -> Result<bool, StepError> {
    let conn = cx.connect().await?;
    Ok(crate::k8s::get(&conn, &namespace_doc())
        .await?
        .as_ref()
        .is_some_and(created_by_mesh))
}

fn namespace_doc() -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": crate::k8s::ISTIO_NAMESPACE}})
}

fn describe(input: &Input) -> String {
    let mut parts = Vec::new();
    if let Some(p) = &input.primary {
        parts.push(format!("{ANNOTATION}={p}"));
    }
    if let Some(n) = &input.network {
        parts.push(format!("{NETWORK_LABEL}={n}"));
    }
    parts.join(", ")
}

/// The kind.
pub struct PrepareNamespace;

impl Kind for PrepareNamespace {
    const NAME: &'static str = "prepare-namespace";
    type Input = Input;

    /// The namespace, created or labelled (cluster-wide objects).
    fn apply_access(_: &Input, _update: bool) -> Vec<Need> {
        access::here(
            ["get", "create", "patch"]
                .into_iter()
                .map(|v| Access::new(v, "", "namespaces", None))
                .collect(),
        )
    }

    fn destroy_access() -> Vec<Access> {
        ["get", "patch", "delete"]
            .into_iter()
            .map(|v| Access::new(v, "", "namespaces", None))
            .collect()
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    /// A remote's istio-system is mesh's when mesh created it (see
    /// `destroy`): then it goes, whole.
    fn removes(cluster: &str, _: Option<&str>, recorded: &[Value]) -> String {
        let of_a_remote = recorded
            .first()
            .and_then(|d| d.pointer("/metadata/annotations"))
            .and_then(|a| a.get(ANNOTATION))
            .is_some();
        if of_a_remote {
            format!(
                "namespace istio-system in {cluster}, with everything still in it \
                 (when mesh created it; otherwise only mesh's annotation and label come off)"
            )
        } else {
            format!(
                "mesh's network label on namespace istio-system in {cluster} \
                 (the namespace goes with the control plane)"
            )
        }
    }

    /// Creates istio-system if absent (marked [`CREATED_BY`] in the same
    /// request), then applies the annotation and label. `created` (whether mesh
    /// made the namespace, so destroy only deletes its own) is read back from
    /// the mark.
    async fn apply(
        cx: Ctx<'_>,
        input: &Input,
        _rendered: &Rendered,
        previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        let conn = cx.connect().await?;
        let marked =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(input, true)});
        let existed = !crate::k8s::create(&conn, &marked).await?;
        cx.say(&format!(
            "preparing namespace istio-system ({})…",
            describe(input)
        ));
        // States written before the mark existed remember `created` themselves.
        let created_before = previous
            .and_then(|p| p.outputs.get("created"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let live = crate::k8s::get(&conn, &namespace_doc()).await?;
        let created = !existed || created_before || live.as_ref().is_some_and(created_by_mesh);
        // Server-side apply of what mesh owns: the annotation and label, and
        // the mark when the namespace is mesh's (applied too, so that this
        // apply, by the same field manager as the create, never drops it).
        let doc =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(input, created)});
        crate::k8s::apply(&conn, &doc).await?;
        Ok(Applied {
            outputs: BTreeMap::from([("created".to_string(), Value::from(created))]),
            log: format!(
                "{} namespace istio-system; set {}\n",
                if existed { "found" } else { "created" },
                describe(input)
            ),
        })
    }

    /// Drift: the namespace missing, or the annotation or label removed or changed.
    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        _input: Option<&Input>,
    ) -> Result<Observation, StepError> {
        let conn = cx.connect().await?;
        let docs = recorded.documents()?;
        let want = |ptr: &str, key: &str| {
            docs.first()
                .and_then(|d| d.pointer(ptr))
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .map(String::from)
        };
        let want_annotation = want("/metadata/annotations", ANNOTATION);
        let want_label = want("/metadata/labels", NETWORK_LABEL);
        let mut obs = Observation::in_sync(recorded.outputs.clone());
        let Some(ns) = crate::k8s::get(&conn, &namespace_doc()).await? else {
            obs.drift.push("namespace istio-system missing".into());
            return Ok(obs);
        };
        let checks = [
            (
                "annotation",
                ANNOTATION,
                want_annotation,
                ns.metadata.annotations.as_ref(),
            ),
            (
                "label",
                NETWORK_LABEL,
                want_label,
                ns.metadata.labels.as_ref(),
            ),
        ];
        for (what, key, want, live) in checks {
            let Some(want) = want else { continue };
            match live.and_then(|m| m.get(key)) {
                None => obs.drift.push(format!("{what} {key} removed")),
                Some(v) if *v != want => obs.drift.push(format!(
                    "{what} {key} is `{}`, mesh set `{}`",
                    crate::rendered::shown(v),
                    crate::rendered::shown(&want)
                )),
                Some(_) => {}
            }
        }
        Ok(obs)
    }

    /// Removes the annotation and label; in a remote, deletes the namespace
    /// (and waits for it to go) if mesh created it: the live mark says so, or
    /// the record does.
    ///
    /// A primary's istio-system is never deleted here: it holds the control
    /// plane, which its own step removes (with the namespace) on destroy. This
    /// step alone goes when a mesh stops being multi-network and has no trust,
    /// and then only its label goes.
    async fn destroy(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Result<String, StepError> {
        let conn = cx.connect().await?;
        let live = crate::k8s::get(&conn, &namespace_doc()).await?;
        let recorded_created = recorded
            .outputs
            .get("created")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let of_a_remote = recorded
            .documents()?
            .first()
            .and_then(|d| d.pointer("/metadata/annotations"))
            .and_then(|a| a.get(ANNOTATION))
            .is_some();
        if of_a_remote && (recorded_created || live.as_ref().is_some_and(created_by_mesh)) {
            cx.say("deleting namespace istio-system…");
            crate::k8s::delete_and_wait(&conn, &namespace_doc(), cx.env.wait_timeout)
                .await?
                .map_err(StepError::Failed)?;
            return Ok("deleted namespace istio-system (mesh created it)\n".into());
        }
        if live.is_some() {
            let patch = json!({"metadata": {"annotations": {ANNOTATION: null}, "labels": {NETWORK_LABEL: null}}});
            crate::k8s::merge_patch(&conn, &namespace_doc(), &patch).await?;
        }
        Ok(format!(
            "removed {ANNOTATION} and {NETWORK_LABEL} from namespace istio-system\n"
        ))
    }

    /// For `mesh import`: the namespace as mesh would leave it, and `created`
    /// read from the mark (mesh made it only if it carries mesh's mark).
    async fn adopt(cx: Ctx<'_>, input: &Input, text: &str) -> Result<Adoption, StepError> {
        let outputs = BTreeMap::new();
        let guess = Recorded {
            input: text,
            outputs: &outputs,
        };
        Ok(
            match Adoption::from_observation(Self::read(cx, &guess, Some(input)).await?) {
                Adoption::Adopted(_) => Adoption::Adopted(BTreeMap::from([(
                    "created".to_string(),
                    Value::from(marked(cx).await?),
                )])),
                differs => differs,
            },
        )
    }
}
