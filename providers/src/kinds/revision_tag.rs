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

    /// Drift: the tag's webhook missing, or pointing at another revision
    /// (its `istio.io/rev` label, which istioctl sets to the revision).
    async fn read(
        cx: Ctx<'_>,
        recorded: &Recorded<'_>,
        _input: Option<&Input>,
    ) -> Result<Observation, StepError> {
        let (tag, rev) = recorded_tag(recorded)?;
        let conn = cx.connect().await?;
        let mut obs = Observation::in_sync(recorded.outputs.clone());
        let wh = webhook(&tag);
        match crate::k8s::get(&conn, &wh).await? {
            None => obs
                .drift
                .push(format!("{} missing", crate::k8s::describe(&wh))),
            Some(live) => {
                let points = live
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::istio::REVISION_LABEL).cloned())
                    .unwrap_or_default();
                if points != rev {
                    obs.drift.push(format!(
                        "revision tag `{tag}` points at revision `{}`, not `{rev}`",
                        crate::rendered::shown(&points)
                    ));
                }
            }
        }
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
