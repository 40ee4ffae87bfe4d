//! `P/expose-istiod`: Gateway `istiod-gateway` and VirtualService `istiod-vs`
//! (or `istiod-vs-<rev>`) in istio-system, server-side applied.

use crate::rendered::Rendered;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub revision: Option<String>,
}

/// samples/multicluster/expose-istiod.yaml, or with a revision the
/// expose-istiod-rev.yaml.tmpl with `{{.Revision}}` filled in; both with
/// `metadata.namespace: istio-system`, where the guide applies them.
pub fn render(input: &Input) -> Rendered {
    let gateway = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "istiod-gateway", "namespace": NAMESPACE},
        "spec": {
            "selector": {"istio": "eastwestgateway"},
            "servers": [
                {"port": {"name": "tls-istiod", "number": 15012, "protocol": "tls"},
                 "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]},
                {"port": {"name": "tls-istiodwebhook", "number": 15017, "protocol": "tls"},
                 "tls": {"mode": "PASSTHROUGH"}, "hosts": ["*"]},
            ]
        }
    });
    let (vs_name, sni, host) = match input.revision.as_deref() {
        Some(rev) if !rev.is_empty() => (
            format!("istiod-vs-{rev}"),
            vec![
                format!("istiod-{rev}.istio-system.svc"),
                format!("istiod-{rev}.istio-system.svc.cluster.local"),
            ],
            format!("istiod-{rev}.istio-system.svc.cluster.local"),
        ),
        _ => (
            "istiod-vs".to_string(),
            vec!["*".to_string()],
            "istiod.istio-system.svc.cluster.local".to_string(),
        ),
    };
    let route = |port: u16, target: u16| {
        json!({
            "match": [{"port": port, "sniHosts": sni}],
            "route": [{"destination": {"host": host, "port": {"number": target}}}],
        })
    };
    let virtual_service = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": vs_name, "namespace": NAMESPACE},
        "spec": {
            "hosts": ["*"],
            "gateways": ["istiod-gateway"],
            "tls": [route(15012, 15012), route(15017, 443)],
        }
    });
    Rendered {
        documents: vec![gateway, virtual_service],
        unknown: false,
    }
}

const NAMESPACE: &str = "istio-system";

// ---- against a cluster ----

use crate::env::{Applied, Env, Recorded, StepError};
use crate::observe::Observation;
use crate::rendered::Target;

/// The recorded objects the new documents no longer name (e.g.
/// `istiod-vs` after a revision is set, which renames it `istiod-vs-<rev>`).
pub fn no_longer_rendered(old: &[Value], new: &[Value]) -> Vec<Value> {
    old.iter()
        .filter(|o| !new.iter().any(|n| crate::k8s::same_object(o, n)))
        .cloned()
        .collect()
}

/// Server-side apply of the Gateway and the VirtualService, then deletion
/// of what the previous apply made and this one no longer renders.
pub async fn apply(
    env: &Env,
    step: &str,
    target: &Target,
    rendered: &Rendered,
    previous: Option<&Recorded<'_>>,
) -> Result<Applied, StepError> {
    let conn = env.clusters.connect(target).await?;
    let mut log = String::new();
    for doc in &rendered.documents {
        env.say(
            step,
            &format!(
                "applying {} {}…",
                doc["kind"].as_str().unwrap_or(""),
                doc["metadata"]["name"].as_str().unwrap_or("")
            ),
        );
        crate::k8s::apply(&conn, doc).await?;
        log.push_str(&format!(
            "applied {} istio-system/{}\n",
            doc["kind"].as_str().unwrap_or(""),
            doc["metadata"]["name"].as_str().unwrap_or("")
        ));
    }
    if let Some(prev) = previous {
        for doc in no_longer_rendered(&prev.documents()?, &rendered.documents) {
            env.say(step, &format!("deleting {}…", crate::k8s::describe(&doc)));
            crate::k8s::delete(&conn, &doc).await?;
            log.push_str(&format!(
                "deleted {} (no longer rendered)\n",
                crate::k8s::describe(&doc)
            ));
        }
    }
    Ok(Applied {
        outputs: Default::default(),
        log,
    })
}

/// Drift: either object missing, or its spec no longer what mesh applied.
pub async fn read(
    env: &Env,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<Observation, StepError> {
    let conn = env.clusters.connect(target).await?;
    let mut obs = Observation::default();
    for doc in recorded.documents()? {
        let what = format!(
            "{} istio-system/{}",
            doc["kind"].as_str().unwrap_or(""),
            doc["metadata"]["name"].as_str().unwrap_or("")
        );
        match crate::k8s::get(&conn, &doc).await? {
            None => obs.drift.push(format!("{what} missing")),
            Some(live) => {
                if !crate::k8s::contains(&live.data, &doc["spec"])
                    && !crate::k8s::contains(
                        live.data.get("spec").unwrap_or(&Value::Null),
                        &doc["spec"],
                    )
                {
                    obs.drift.push(format!("{what} changed"));
                }
            }
        }
    }
    Ok(obs)
}

/// Deletes both objects.
pub async fn destroy(
    env: &Env,
    _step: &str,
    target: &Target,
    recorded: &Recorded<'_>,
) -> Result<String, StepError> {
    let conn = env.clusters.connect(target).await?;
    let mut log = String::new();
    for doc in recorded.documents()?.iter().rev() {
        crate::k8s::delete(&conn, doc).await?;
        log.push_str(&format!(
            "deleted {} istio-system/{}\n",
            doc["kind"].as_str().unwrap_or(""),
            doc["metadata"]["name"].as_str().unwrap_or("")
        ));
    }
    Ok(log)
}
