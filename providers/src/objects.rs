//! The default verbs of a step kind ([`crate::kind::Kind`]): a kind that
//! renders Kubernetes objects (`expose-istiod`, `expose-services`) gets them
//! server-side applied, deleted when an update no longer renders them, read
//! back (present, and the spec mesh applied still contained in the live
//! one) and deleted on destroy.

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::observe::Observation;
use crate::rendered::Rendered;
use serde_json::Value;

use crate::k8s::describe as what;

/// The recorded objects the new documents no longer name (e.g.
/// `istiod-vs` after a revision is set, which renames it `istiod-vs-<rev>`).
pub fn no_longer_rendered(old: &[Value], new: &[Value]) -> Vec<Value> {
    old.iter()
        .filter(|o| !new.iter().any(|n| crate::k8s::same_object(o, n)))
        .cloned()
        .collect()
}

/// The plan's phrases for [`no_longer_rendered`].
pub fn deletions(old: &[Value], new: &Rendered) -> Vec<String> {
    no_longer_rendered(old, &new.documents)
        .iter()
        .map(|d| format!("will delete {} (no longer rendered)", what(d)))
        .collect()
}

/// Server-side apply of every document, then deletion of what the previous
/// apply made and this one no longer renders, except what `kept` says
/// stays.
pub async fn apply(
    cx: Ctx<'_>,
    rendered: &Rendered,
    previous: Option<&Recorded<'_>>,
    kept: &(dyn Fn(&Value) -> bool + Sync),
) -> Result<Applied, StepError> {
    let conn = cx.connect().await?;
    let mut log = String::new();
    for doc in &rendered.documents {
        cx.say(&format!(
            "applying {} {}…",
            doc["kind"].as_str().unwrap_or(""),
            doc["metadata"]["name"].as_str().unwrap_or("")
        ));
        crate::k8s::apply(&conn, doc).await?;
        log.push_str(&format!("applied {}\n", what(doc)));
    }
    if let Some(prev) = previous {
        for doc in no_longer_rendered(&prev.documents()?, &rendered.documents) {
            if kept(&doc) {
                continue;
            }
            cx.say(&format!("deleting {}…", what(&doc)));
            crate::k8s::delete(&conn, &doc).await?;
            log.push_str(&format!("deleted {} (no longer rendered)\n", what(&doc)));
        }
    }
    Ok(Applied {
        outputs: Default::default(),
        log,
    })
}

/// Drift: an object missing, or its spec no longer what mesh applied.
pub async fn read(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Result<Observation, StepError> {
    let conn = cx.connect().await?;
    let mut obs = Observation::default();
    for doc in recorded.documents()? {
        match crate::k8s::get(&conn, &doc).await? {
            None => obs.drift.push(format!("{} missing", what(&doc))),
            Some(live) => {
                if !crate::k8s::contains(&live.data, &doc["spec"])
                    && !crate::k8s::contains(
                        live.data.get("spec").unwrap_or(&Value::Null),
                        &doc["spec"],
                    )
                {
                    obs.drift.push(format!("{} changed", what(&doc)));
                }
            }
        }
    }
    Ok(obs)
}

/// Deletes every recorded object, last first.
pub async fn destroy(cx: Ctx<'_>, recorded: &Recorded<'_>) -> Result<String, StepError> {
    let conn = cx.connect().await?;
    let mut log = String::new();
    for doc in recorded.documents()?.iter().rev() {
        crate::k8s::delete(&conn, doc).await?;
        log.push_str(&format!("deleted {}\n", what(doc)));
    }
    Ok(log)
}
