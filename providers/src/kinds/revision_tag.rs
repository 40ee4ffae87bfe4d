//! `C/revision-tag#T`: Istio revision tag `T` on cluster C, pointing at one
//! installed revision (`istioctl tag set T --revision R`). `default` is the
//! tag `istio-injection=enabled` namespaces use, so moving it moves every
//! such namespace's new pods to the revision: the step of a canary upgrade
//! a reviewer must see.
//!
//! istioctl does the work, as Istio's canary guide does: it copies the
//! revision's injector webhook (its service or URL, path and CA bundle)
//! into `istio-revision-tag-<T>`, and for `default` also writes the
//! validating webhook `istiod-default-validator` and quiets the legacy
//! unrevisioned injector. On a remote the revision's injector is the one
//! its remote profile installed, which calls the primary's istiod of that
//! revision through the east-west gateway (`istiod-vs-<rev>`).

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::access::{self, Access, Need};
use crate::kind::{Kind, OutputLookup, RunsIstioctl};
use crate::observe::Observation;
use crate::rendered::Rendered;
use serde_json::{Value, json};
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub tag: String,
    /// The revision it points at (`default`: the unrevisioned control plane).
    pub revision: String,
    /// The istioctl of that revision when it is a kept one (None: `[istioctl] path`).
    pub istioctl: Option<String>,
}

/// The document the plan shows and records: which tag points where. Not
/// applied as is: istioctl renders the webhooks from the live injector.
pub fn render(input: &Input) -> Rendered {
    Rendered {
        documents: vec![json!({
            "apiVersion": "mesh/v1",
            "kind": "RevisionTag",
            "metadata": {"name": input.tag},
            "spec": {"revision": input.revision},
        })],
        unknown: false,
    }
}

/// The webhook istioctl writes for tag `tag`.
fn webhook(tag: &str) -> Value {
    super::istioctl_install::object(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        None,
        &format!("istio-revision-tag-{tag}"),
    )
}

/// The validating webhook `istioctl tag set default` writes.
const DEFAULT_VALIDATOR: &str = "istiod-default-validator";

/// A reference to the cluster-scoped webhook configuration `kind` `name`.
fn admission(kind: &str, name: &str) -> Value {
    super::istioctl_install::object("admissionregistration.k8s.io/v1", kind, None, name)
}

/// A reference to Service `name` of istio-system.
fn service(name: &str) -> Value {
    super::istioctl_install::object("v1", "Service", Some(crate::istio::NAMESPACE), name)
}

/// The revision's own injector, whose client config a tag copies.
fn injector_name(rev: &str) -> String {
    match rev {
        "default" => "istio-sidecar-injector".into(),
        r => format!("istio-sidecar-injector-{r}"),
    }
}

/// The tag's Service (Istio's `revision-tags-svc.yaml`).
fn tag_service(tag: &str) -> String {
    format!("istiod-revision-tag-{tag}")
}

/// What `istioctl tag set` made for a tag, as it is live (JSON), and
/// which of the Services its webhooks call exist.
struct TagLive {
    webhook: Option<Value>,
    injector: Option<Value>,
    service: Option<Value>,
    validator: Option<Value>,
    services: BTreeSet<String>,
}

/// The istio-system Services the tag's webhooks (and validator) call.
fn called_services(live: &TagLive) -> BTreeSet<String> {
    [&live.webhook, &live.validator]
        .into_iter()
        .flatten()
        .flat_map(|w| w["webhooks"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| h.pointer("/clientConfig/service/name")?.as_str().map(String::from))
        .collect()
}

/// The drift of tag `tag` recorded as pointing at `rev` (pure): its webhook
/// missing or labelled for another revision; a webhook calling a Service
/// that is not there (with `failurePolicy: Fail`, pod creation fails in
/// the namespaces it selects); a client config that is not the revision's
/// injector's (another Service or URL, a stale CA bundle); the tag's
/// Service missing or selecting another revision's istiod; for `default`,
/// Istio's validator missing or calling a missing Service.
fn tag_drift(tag: &str, rev: &str, live: &TagLive) -> Vec<String> {
    let mut drift = Vec::new();
    let Some(wh) = &live.webhook else {
        return vec![format!("{} missing", crate::k8s::describe(&webhook(tag)))];
    };
    let points = wh
        .pointer("/metadata/labels")
        .and_then(|l| l.get(crate::istio::REVISION_LABEL))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if points != rev {
        drift.push(format!(
            "revision tag `{tag}` points at revision `{}`, not `{rev}`",
            crate::rendered::shown(points)
        ));
    }
    let calls = |w: &Value, what: &str, drift: &mut Vec<String>| {
        for name in w["webhooks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.pointer("/clientConfig/service/name")?.as_str())
        {
            if !live.services.contains(name) {
                drift.push(format!(
                    "{what} calls Service istio-system/{name}, which is not there: admission \
                     through it fails"
                ));
            }
        }
    };
    calls(wh, &format!("revision tag `{tag}`'s webhook"), &mut drift);
    // The client config the tag copied from the revision's injector.
    let target = |w: &Value| {
        let c = w.pointer("/webhooks/0/clientConfig").cloned().unwrap_or_default();
        (
            c.pointer("/service/name").cloned(),
            c.get("url").cloned(),
            c.get("caBundle").cloned(),
        )
    };
    if let Some(injector) = &live.injector
        && target(injector) != target(wh)
    {
        drift.push(format!(
            "revision tag `{tag}`'s webhook does not call istiod as revision `{rev}`'s injector \
             ({}) does: another Service or URL, or a stale CA bundle",
            injector_name(rev)
        ));
    }
    match &live.service {
        None => drift.push(format!("Service istio-system/{} missing", tag_service(tag))),
        Some(svc) => {
            let selects = svc
                .pointer("/spec/selector")
                .and_then(|s| s.get(crate::istio::REVISION_LABEL))
                .and_then(Value::as_str)
                .unwrap_or("default");
            if selects != rev {
                drift.push(format!(
                    "Service istio-system/{} selects revision `{selects}`'s istiod, not `{rev}`'s",
                    tag_service(tag)
                ));
            }
        }
    }
    if tag == "default" {
        match &live.validator {
            None => drift.push(format!(
                "ValidatingWebhookConfiguration {DEFAULT_VALIDATOR} missing: Istio configuration \
                 is no longer validated"
            )),
            Some(v) => calls(v, &format!("ValidatingWebhookConfiguration {DEFAULT_VALIDATOR}"), &mut drift),
        }
    }
    drift
}

/// The recorded tag and revision.
fn recorded_tag(recorded: &Recorded<'_>) -> Result<(String, String), StepError> {
    let docs = recorded.documents()?;
    let doc = docs.first().cloned().unwrap_or_default();
    let tag = doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let rev = doc["spec"]["revision"].as_str().unwrap_or_default().to_string();
    if tag.is_empty() {
        return Err(StepError::Failed(
            "the recorded revision tag names no tag (the state was edited by hand?)".into(),
        ));
    }
    Ok((tag, rev))
}

/// The kind.
pub struct RevisionTag;

impl Kind for RevisionTag {
    const NAME: &'static str = "revision-tag";
    type Input = Input;

    /// `istioctl tag set` and `tag remove`.
    const RUNS_ISTIOCTL: RunsIstioctl = RunsIstioctl::ALWAYS;

    fn apply_access(_: &Input, _update: bool) -> Vec<Need> {
        access::here(access::tag_access())
    }

    fn destroy_access() -> Vec<Access> {
        access::tag_access()
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn leftovers(_old: &[Value], _new: &Rendered) -> Vec<String> {
        Vec::new()
    }

    fn removes(cluster: &str, _holder: Option<&str>, recorded: &[Value]) -> String {
        let tag = recorded
            .first()
            .and_then(|d| d["metadata"]["name"].as_str())
            .unwrap_or("?");
        format!(
            "revision tag `{tag}` in {cluster} (`istioctl tag remove {tag}`): new pods of \
             namespaces labelled `istio.io/rev={tag}`{} are no longer injected",
            if tag == "default" {
                " or `istio-injection=enabled`"
            } else {
                ""
            }
        )
    }

    /// `istioctl tag set T --revision R --overwrite -y`, with the
    /// revision's own istioctl.
    async fn apply(
        cx: Ctx<'_>,
        input: &Input,
        _rendered: &Rendered,
        _previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        let istioctl = match &input.istioctl {
            Some(p) => cx.env.istioctl.with_program(p),
            None => cx.env.istioctl.clone(),
        };
        cx.say(&format!(
            "istioctl tag set {} --revision {}…",
            input.tag, input.revision
        ));
        let log = istioctl
            .tag_set(cx.target, cx.env.kubeconfig.as_ref(), &input.tag, &input.revision)
            .await?;
        let mut outputs = std::collections::BTreeMap::new();
        if let Some(p) = &input.istioctl {
            outputs.insert("istioctl".to_string(), Value::from(p.as_str()));
        }
        Ok(Applied {
            outputs,
            log: log.output,
        })
    }

    /// Drift: everything `istioctl tag set` made for the tag, as it must
    /// be for the revision ([`tag_drift`]), read live.
    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        _input: Option<&Input>,
    ) -> Result<Observation, StepError> {
        let (tag, rev) = recorded_tag(recorded)?;
        let conn = cx.connect().await?;
        let mut obs = Observation::in_sync(recorded.outputs.clone());
        let get = |doc: Value| {
            let conn = &conn;
            async move {
                Ok::<_, StepError>(
                    crate::k8s::get(conn, &doc)
                        .await?
                        .and_then(|o| serde_json::to_value(o).ok()),
                )
            }
        };
        let live = TagLive {
            webhook: get(webhook(&tag)).await?,
            injector: get(admission("MutatingWebhookConfiguration", &injector_name(&rev))).await?,
            service: get(service(&tag_service(&tag))).await?,
            validator: match tag.as_str() {
                "default" => get(admission("ValidatingWebhookConfiguration", DEFAULT_VALIDATOR)).await?,
                _ => None,
            },
            services: BTreeSet::new(),
        };
        // The Services its webhooks call, as they are.
        let mut services = BTreeSet::new();
        for name in called_services(&live) {
            if get(service(&name)).await?.is_some() {
                services.insert(name);
            }
        }
        obs.drift = tag_drift(&tag, &rev, &TagLive { services, ..live });
        Ok(obs)
    }

    /// `istioctl tag remove T -y`, with the istioctl that set it.
    async fn destroy(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Result<String, StepError> {
        let (tag, _) = recorded_tag(recorded)?;
        let istioctl = match recorded.outputs.get("istioctl").and_then(Value::as_str) {
            Some(p) => cx.env.istioctl.with_program(p),
            None => cx.env.istioctl.clone(),
        };
        // Gone already (removed by hand, or with its revision): done.
        let conn = cx.connect().await?;
        if crate::k8s::get(&conn, &webhook(&tag)).await?.is_none() {
            return Ok(format!("revision tag `{tag}` is already gone\n"));
        }
        cx.say(&format!("istioctl tag remove {tag}…"));
        let log = istioctl
            .tag_remove(cx.target, cx.env.kubeconfig.as_ref(), &tag)
            .await?;
        Ok(log.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(rev: &str, svc: &str, ca: &str) -> Value {
        json!({"metadata": {"labels": {"istio.io/rev": rev}},
            "webhooks": [{"clientConfig": {"service": {"name": svc, "namespace": "istio-system", "path": "/inject"}, "caBundle": ca}}]})
    }

    /// A tag as `istioctl tag set default --revision canary` leaves it.
    fn set() -> TagLive {
        TagLive {
            webhook: Some(hook("canary", "istiod-canary", "CA")),
            injector: Some(hook("canary", "istiod-canary", "CA")),
            service: Some(json!({"spec": {"selector": {"app": "istiod", "istio.io/rev": "canary"}}})),
            validator: Some(hook("canary", "istiod-canary", "CA")),
            services: BTreeSet::from(["istiod-canary".to_string()]),
        }
    }

    #[test]
    fn a_tag_as_istioctl_sets_it_has_no_drift() {
        assert_eq!(tag_drift("default", "canary", &set()), Vec::<String>::new());
    }

    #[test]
    fn each_part_of_a_tag_that_is_off_is_drift() {
        let drift = |live: TagLive| tag_drift("default", "canary", &live).join("\n");
        // Its webhook calls a Service that is gone (the revision removed).
        let d = drift(TagLive { services: BTreeSet::new(), ..set() });
        assert!(d.contains("revision tag `default`'s webhook calls Service istio-system/istiod-canary, which is not there"), "{d}");
        assert!(d.contains("ValidatingWebhookConfiguration istiod-default-validator calls Service istio-system/istiod-canary"), "{d}");
        // A stale CA bundle: not what the revision's injector has.
        let d = drift(TagLive { webhook: Some(hook("canary", "istiod-canary", "OLD")), ..set() });
        assert!(d.contains("does not call istiod as revision `canary`'s injector (istio-sidecar-injector-canary) does"), "{d}");
        // The tag's Service selecting another revision, or gone.
        let d = drift(TagLive {
            service: Some(json!({"spec": {"selector": {"app": "istiod", "istio.io/rev": "stable"}}})),
            ..set()
        });
        assert!(d.contains("Service istio-system/istiod-revision-tag-default selects revision `stable`'s istiod, not `canary`'s"), "{d}");
        let d = drift(TagLive { service: None, ..set() });
        assert!(d.contains("Service istio-system/istiod-revision-tag-default missing"), "{d}");
        // The validator gone: Istio's configuration no longer validated.
        let d = drift(TagLive { validator: None, ..set() });
        assert!(d.contains("istiod-default-validator missing"), "{d}");
        // Labelled for another revision.
        let d = drift(TagLive { webhook: Some(hook("stable", "istiod-canary", "CA")), ..set() });
        assert!(d.contains("points at revision `stable`, not `canary`"), "{d}");
    }
}
