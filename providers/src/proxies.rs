//! The mesh's proxies as they are: every running pod with an `istio-proxy`
//! (sidecars, gateways, waypoints), and what its Envoy holds of the
//! mesh's trust: the roots it trusts (`ROOTCA`) and the workload
//! certificate it presents (`default`).
//!
//! Why: a root rotation's phase has taken effect only when the proxies
//! show it, not when istiod publishes it (istiod writes
//! `istio-ca-root-cert` at once; a proxy trusts what its agent gave
//! Envoy). This reads the proxies the way `istioctl proxy-config secret`
//! does: Envoy's admin port through the pod's port-forward, the secrets
//! of its config dump. Private keys are never read: Envoy redacts them,
//! and only the certificate chain and the trusted roots are kept.

use crate::cluster::Connection;
use serde_json::Value;

/// Envoy's admin port in an Istio proxy (istioctl's `--proxy-admin-port`).
pub const ADMIN_PORT: u16 = 15000;

/// The config dump's secrets, as `istioctl proxy-config secret` asks.
pub const SECRETS_PATH: &str = "/config_dump?mask=dynamic_active_secrets,dynamic_warming_secrets";

/// The proxy's env that makes its agent take the mesh's trust bundle
/// from istiod over xDS (PCDS) and re-request its certificate when the
/// bundle changes, without a restart (Istio's `proxyMetadata`, injected
/// as env when the pod is created).
pub const XDS_AGENT_ENV: &str = "PROXY_CONFIG_XDS_AGENT";

/// How many proxies of one cluster are read at once.
const READ_AT_ONCE: usize = 8;

/// One running pod with an Istio proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    pub namespace: String,
    pub pod: String,
    /// Its proxy runs with `PROXY_CONFIG_XDS_AGENT=true`.
    pub xds_agent: bool,
    /// What its Envoy holds; None when not read (only the pods were
    /// listed), `Err` when it could not be read.
    pub held: Option<Result<Held, String>>,
}

/// What one Envoy holds of the mesh's trust.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Held {
    /// sha256 of each root `ROOTCA` trusts.
    pub roots: Vec<String>,
    /// The `default` certificate chain (PEM: the workload certificate,
    /// then its intermediates); empty when the proxy has none yet.
    pub chain: String,
}

/// The proxies of `pods` (a pod list's items): running pods with a
/// container named `istio-proxy` (a native sidecar is an init
/// container), in the list's order.
pub fn of_pods(pods: &[Value]) -> Vec<Proxy> {
    pods.iter()
        .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
        .filter_map(|p| {
            let sidecar = ["/spec/containers", "/spec/initContainers"]
                .iter()
                .filter_map(|at| p.pointer(at).and_then(Value::as_array))
                .flatten()
                .find(|c| c["name"] == "istio-proxy")?;
            let xds_agent = sidecar["env"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| e["name"] == XDS_AGENT_ENV && e["value"] == "true");
            Some(Proxy {
                namespace: p.pointer("/metadata/namespace")?.as_str()?.to_string(),
                pod: p.pointer("/metadata/name")?.as_str()?.to_string(),
                xds_agent,
                held: None,
            })
        })
        .collect()
}

/// What an Envoy config dump's secrets say (the answer to
/// [`SECRETS_PATH`]): `ROOTCA`'s trusted roots and `default`'s chain, of
/// the active secrets. Anything else in it is ignored.
pub fn parse_secrets(dump: &str) -> Result<Held, String> {
    let dump: Value =
        serde_json::from_str(dump).map_err(|e| format!("its config dump is not JSON ({e})"))?;
    let mut held = Held::default();
    let secrets = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            c["@type"]
                .as_str()
                .is_some_and(|t| t.ends_with("SecretsConfigDump"))
        })
        .filter_map(|c| c["dynamic_active_secrets"].as_array())
        .flatten();
    for s in secrets {
        let bytes = |at: &str| {
            s.pointer(at)
                .and_then(Value::as_str)
                .and_then(|b| {
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
                })
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        match s["name"].as_str() {
            Some("ROOTCA") => {
                let roots = bytes("/secret/validation_context/trusted_ca/inline_bytes")
                    .ok_or("its ROOTCA secret has no trusted roots")?;
                held.roots = crate::ca::bundle(&roots)
                    .into_iter()
                    .map(|(sha, _)| sha)
                    .collect();
            }
            Some("default") => {
                held.chain = bytes("/secret/tls_certificate/certificate_chain/inline_bytes")
                    .unwrap_or_default();
            }
            _ => {}
        }
    }
    Ok(held)
}

/// The proxies of one cluster, each one's Envoy read when `secrets`
/// (else only the pods are listed). A proxy that cannot be read is kept
/// with its error: a gate that cannot look never passes by it.
pub async fn read(conn: &Connection, secrets: bool) -> Result<Vec<Proxy>, String> {
    use futures::StreamExt;
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(conn.client.clone());
    let lp = kube::api::ListParams::default();
    let list = conn
        .call("listing pods", || pods.list(&lp))
        .await
        .map_err(|e| e.to_string())?;
    let items: Vec<Value> = list
        .items
        .iter()
        .filter_map(|p| serde_json::to_value(p).ok())
        .collect();
    let proxies = of_pods(&items);
    if !secrets {
        return Ok(proxies);
    }
    Ok(futures::stream::iter(proxies)
        .map(|mut p| async move {
            let answer =
                crate::k8s::port_forward::get(conn, &p.namespace, &p.pod, ADMIN_PORT, SECRETS_PATH)
                    .await;
            p.held = Some(answer.and_then(|dump| parse_secrets(&dump)));
            p
        })
        .buffered(READ_AT_ONCE)
        .collect()
        .await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str, containers: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "sample"},
               "spec": {"containers": containers}, "status": {"phase": phase}})
    }

    #[test]
    fn a_proxy_is_a_running_pod_with_istio_proxy_and_says_whether_it_has_the_xds_agent() {
        let with = json!([{"name": "app"}, {"name": "istio-proxy",
            "env": [{"name": "PROXY_CONFIG_XDS_AGENT", "value": "true"}]}]);
        let without = json!([{"name": "istio-proxy", "env": [{"name": "X", "value": "true"}]}]);
        let mut native = pod("native", "Running", json!([{"name": "app"}]));
        native["spec"]["initContainers"] = json!([{"name": "istio-proxy"}]);
        let pods = [
            pod("a", "Running", with),
            pod("b", "Running", without.clone()),
            pod("pending", "Pending", without),
            pod("plain", "Running", json!([{"name": "app"}])),
            native,
        ];
        let found: Vec<(String, bool)> = of_pods(&pods)
            .into_iter()
            .map(|p| (p.pod, p.xds_agent))
            .collect();
        assert_eq!(
            found,
            [
                ("a".into(), true),
                ("b".into(), false),
                ("native".into(), false)
            ]
        );
    }

    #[test]
    fn the_secrets_of_a_config_dump_are_its_roots_and_chain_and_nothing_else() {
        let (root, _) = crate::ca::new_root("one").unwrap();
        let (other, _) = crate::ca::new_root("two").unwrap();
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
        let dump = json!({"configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"},
            {"@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
             "dynamic_active_secrets": [
                {"name": "default", "secret": {"name": "default", "tls_certificate": {
                    "certificate_chain": {"inline_bytes": b64(&root)},
                    "private_key": {"inline_bytes": b64("[redacted]")}}}},
                {"name": "ROOTCA", "secret": {"name": "ROOTCA", "validation_context": {
                    "trusted_ca": {"inline_bytes": b64(&format!("{root}{other}"))}}}}]}]});
        let held = parse_secrets(&dump.to_string()).unwrap();
        let sha = |p: &str| crate::ca::inspect(p).unwrap().sha256;
        assert_eq!(held.roots, [sha(&root), sha(&other)]);
        assert_eq!(
            crate::ca::certificates(&held.chain),
            crate::ca::certificates(&root)
        );
        assert!(parse_secrets("not json").unwrap_err().contains("not JSON"));
    }
}
