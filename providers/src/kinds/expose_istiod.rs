//! `P/expose-istiod`: Gateway `istiod-gateway` and VirtualService `istiod-vs`
//! (or `istiod-vs-<rev>`) in istio-system, server-side applied.

use crate::rendered::Rendered;
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub revision: Option<String>,
    /// Revisions kept installed beside `revision` (a canary): each keeps
    /// its route, so its remotes' sidecars and injection reach it.
    pub kept: Vec<String>,
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
    let mut documents = vec![gateway, virtual_service(input.revision.as_deref())];
    for rev in &input.kept {
        let vs = virtual_service(Some(rev.as_str()).filter(|r| *r != "default"));
        if !documents.contains(&vs) {
            documents.push(vs);
        }
    }
    Rendered {
        documents,
        unknown: false,
    }
}

/// `istiod-vs-<rev>` routing the revision's SNI to its istiod, or for the
/// unrevisioned control plane the catch-all `istiod-vs` (SNI `*`).
fn virtual_service(revision: Option<&str>) -> serde_json::Value {
    let (vs_name, sni, host) = match revision {
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
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": vs_name, "namespace": NAMESPACE},
        "spec": {
            "hosts": ["*"],
            "gateways": ["istiod-gateway"],
            "tls": [route(15012, 15012), route(15017, 443)],
        }
    })
}

const NAMESPACE: &str = "istio-system";

// ---- against a cluster: [`Kind`]'s defaults, but the default route stays ----

use crate::env::{Applied, Ctx, Recorded, StepError};
use crate::access::{self, Access, Need};
use crate::kind::{Kind, OutputLookup};
use serde_json::Value;

/// The catch-all route (SNI `*`) to the default revision's istiod.
const DEFAULT_ROUTE: &str = "istiod-vs";

/// Whether `doc` is the default route: it stays when a revision renames
/// the VirtualService, because default-revision sidecars and the remotes'
/// default injection webhook (failurePolicy Fail) reach istiod through it
/// (Istio issue 47552); the old revision stays installed too. It goes with
/// the control plane's istio-system.
fn is_default_route(doc: &Value) -> bool {
    doc["kind"] == "VirtualService" && doc["metadata"]["name"] == DEFAULT_ROUTE
}

/// The kind: its objects server-side applied, read and deleted by
/// [`Kind`]'s defaults, except that a revision change, which renames the
/// VirtualService, keeps the default route.
pub struct ExposeIstiod;

impl Kind for ExposeIstiod {
    const NAME: &'static str = "expose-istiod";
    type Input = Input;

    /// The Gateway and VirtualService, server-side applied.
    fn apply_access(_: &Input, update: bool) -> Vec<Need> {
        access::here(access::applied(
            "networking.istio.io",
            &["gateways", "virtualservices"],
            update,
        ))
    }

    fn destroy_access() -> Vec<Access> {
        let mut access = access::in_istio(&["delete"], "networking.istio.io", "gateways");
        access.extend(access::in_istio(&["delete"], "networking.istio.io", "virtualservices"));
        access
    }

    fn render(input: &Input, _: OutputLookup<'_>) -> Rendered {
        render(input)
    }

    fn removes(cluster: &str, _: Option<&str>, _: &[Value]) -> String {
        format!(
            "Gateway istiod-gateway and VirtualService istiod-vs in {cluster}: \
             remotes can no longer reach its istiod"
        )
    }

    fn leftovers(old: &[Value], new: &Rendered) -> Vec<String> {
        crate::objects::no_longer_rendered(old, &new.documents)
            .iter()
            .map(|d| {
                if is_default_route(d) {
                    format!(
                        "{} stays: it is the default route (SNI *) that default-revision sidecars \
                         and the remotes' default injection webhook use; it goes with the control \
                         plane",
                        crate::k8s::describe(d)
                    )
                } else {
                    format!("will delete {} (no longer rendered)", crate::k8s::describe(d))
                }
            })
            .collect()
    }

    async fn apply(
        cx: Ctx<'_>,
        _input: &Input,
        rendered: &Rendered,
        previous: Option<&Recorded<'_>>,
    ) -> Result<Applied, StepError> {
        crate::objects::apply(cx, rendered, previous, &is_default_route).await
    }
}
