//! The kubeconfig for a set of simulated clusters: one context per
//! cluster, named as the caller chose, with CA data and a bearer token.

use base64::Engine as _;
use serde_json::json;

pub struct Entry<'a> {
    pub context: &'a str,
    pub port: u16,
    pub ca_pem: &'a str,
    pub token: &'a str,
}

/// The kubeconfig YAML; the first entry is the current context.
pub fn render(entries: &[Entry<'_>]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": entries.first().map(|e| e.context).unwrap_or_default(),
        "clusters": entries.iter().map(|e| json!({
            "name": e.context,
            "cluster": {
                "server": format!("https://127.0.0.1:{}", e.port),
                "certificate-authority-data": b64.encode(e.ca_pem),
            }
        })).collect::<Vec<_>>(),
        "users": entries.iter().map(|e| json!({
            "name": e.context,
            "user": {"token": e.token}
        })).collect::<Vec<_>>(),
        "contexts": entries.iter().map(|e| json!({
            "name": e.context,
            "context": {"cluster": e.context, "user": e.context}
        })).collect::<Vec<_>>(),
    });
    serde_saphyr::to_string(&doc).expect("a JSON value serialises as YAML")
}
