//! The kubeconfig for a set of simulated clusters: one context per
//! cluster, named as the caller chose, with CA data and a bearer token.

use base64::Engine as _;
use serde_json::json;
use std::path::{Path, PathBuf};

pub struct Entry<'a> {
    pub context: &'a str,
    pub port: u16,
    pub ca_pem: &'a str,
    pub token: &'a str,
}

/// Where the one-context kubeconfig of `context` is kept beside the
/// kubeconfig at `kubeconfig`: `DIR/kubeconfig.d/<context>`, the name
/// %-escaped but for letters, digits, `-` and `_`. The simulated istioctl
/// reads that instead of every context.
pub fn context_file(kubeconfig: &Path, context: &str) -> PathBuf {
    let mut name = String::new();
    for c in context.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
            name.push(c);
        } else {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                name.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if name.is_empty() {
        // The empty name: `%` alone is no escape of anything else.
        name.push('%');
    }
    contexts_dir(kubeconfig).join(name)
}

/// `DIR/kubeconfig.d`, where the one-context kubeconfigs are kept.
pub fn contexts_dir(kubeconfig: &Path) -> PathBuf {
    kubeconfig.with_file_name("kubeconfig.d")
}

/// The kubeconfig, as JSON (which kubectl and kube-rs read as YAML, and
/// which the simulated istioctl parses fast); the first entry is the
/// current context.
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
    let mut text = serde_json::to_string_pretty(&doc).expect("a JSON value serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_files_have_safe_names() {
        let k = Path::new("/s/kubeconfig");
        assert_eq!(
            context_file(k, "kind-a.1_b"),
            Path::new("/s/kubeconfig.d/kind-a%2E1_b")
        );
        assert_eq!(
            context_file(k, "arn:aws/x"),
            Path::new("/s/kubeconfig.d/arn%3Aaws%2Fx")
        );
        assert_eq!(context_file(k, ".."), Path::new("/s/kubeconfig.d/%2E%2E"));
        assert_eq!(context_file(k, ""), Path::new("/s/kubeconfig.d/%"));
    }

    #[test]
    fn the_kubeconfig_is_json_that_kube_reads_as_json_and_as_yaml() {
        let entries = [Entry {
            context: "c1",
            port: 6443,
            ca_pem: "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
            token: "t",
        }];
        let text = render(&entries);
        let json: kube::config::Kubeconfig = serde_json::from_str(&text).unwrap();
        let yaml = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        for k in [json, yaml] {
            assert_eq!(k.current_context.as_deref(), Some("c1"));
            assert_eq!(k.contexts[0].name, "c1");
            let cluster = k.clusters[0].cluster.as_ref().unwrap();
            assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        }
    }
}
