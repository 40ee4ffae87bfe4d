//! Simulated Istio proxies (kubesim runs no containers): what the agent of
//! a pod with an `istio-proxy` container would hold, and its Envoy's
//! config dump on the admin port (15000) through the port-forward, as
//! `istioctl proxy-config secret` reads it.
//!
//! When such a pod is created it starts at once (phase Running) with the
//! roots its cluster's istiod publishes (`istio-ca-root-cert`) and a
//! workload certificate signed by the cluster's `cacerts` intermediate. A
//! proxy whose container has `PROXY_CONFIG_XDS_AGENT=true` takes a newly
//! published bundle and re-requests its certificate, as Istio's agent does
//! on a PCDS push (`secretcache.go`, `UpdateConfigTrustBundle`); one
//! without keeps what it has until the pod is re-created. What a proxy
//! holds is kept in its pod's annotations (the simulator's own record).
//!
//! Not modelled: certificate renewal at half-life, remotes (whose proxies
//! a primary's istiod serves: a pod in a cluster without `cacerts` holds no
//! certificate), ztunnel.

use crate::store::Store;
use base64::Engine as _;
use serde_json::{Value, json};

/// The roots the proxy trusts (PEM), as the simulator records them.
const ROOTS: &str = "kubesim.dev/proxy-roots";
/// The proxy's workload certificate chain (PEM).
const CHAIN: &str = "kubesim.dev/proxy-chain";

/// The container that makes a pod a proxy, if it has one.
fn sidecar(pod: &Value) -> Option<&Value> {
    ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|at| pod.pointer(at).and_then(Value::as_array))
        .flatten()
        .find(|c| c["name"] == "istio-proxy")
}

fn xds_agent(pod: &Value) -> bool {
    sidecar(pod).is_some_and(|c| {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["name"] == "PROXY_CONFIG_XDS_AGENT" && e["value"] == "true")
    })
}

/// A pod written: a proxy not started yet starts, with what its istiod
/// gives now.
pub(crate) fn started(store: &mut Store, pod: &Value) {
    if sidecar(pod).is_none()
        || pod
            .pointer(&format!("/metadata/annotations/{}", esc(CHAIN)))
            .is_some()
    {
        return;
    }
    issue(store, pod);
}

/// istiod published a new bundle: every proxy with the xDS agent takes
/// it and a new certificate.
pub(crate) fn bundle_pushed(store: &mut Store) {
    let pods: Vec<Value> = store
        .all("", "pods")
        .into_iter()
        .filter(|p| sidecar(p).is_some() && xds_agent(p))
        .collect();
    for pod in pods {
        issue(store, &pod);
    }
}

/// Records in `pod` the roots istiod publishes and a certificate of the
/// cluster's intermediate, and marks it Running.
fn issue(store: &mut Store, pod: &Value) {
    let Some(rt) = store.find_type("", "v1", "pods") else {
        return;
    };
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let file = |f: &str| {
        store
            .get_raw("", "secrets", "istio-system", "cacerts")
            .and_then(|s| {
                s.pointer(&format!("/data/{}", esc(f)))
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let roots = store
        .get_raw("", "configmaps", "istio-system", "istio-ca-root-cert")
        .and_then(|c| {
            c.pointer("/data/root-cert.pem")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .or_else(|| file("root-cert.pem"))
        .unwrap_or_default();
    let chain = match (file("ca-cert.pem"), file("ca-key.pem")) {
        (Some(cert), Some(key)) => {
            let leaf = workload_certificate(&cert, &key, ns).unwrap_or_default();
            format!("{leaf}{}", file("cert-chain.pem").unwrap_or(cert))
        }
        _ => String::new(),
    };
    let patch = json!({"metadata": {"annotations": {ROOTS: roots, CHAIN: chain}}});
    let _ = store.controller_patch(&rt, ns, name, &patch, "kubesim-istio-agent", false);
    let status = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    let _ = store.controller_patch(&rt, ns, name, &status, "kubesim-kubelet", true);
}

/// A workload certificate (SPIFFE ID of the namespace's default account)
/// signed by the intermediate `cert`/`key`.
fn workload_certificate(cert: &str, key: &str, ns: &str) -> Option<String> {
    let key = rcgen::KeyPair::from_pem(key).ok()?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(cert, key).ok()?;
    let mine = rcgen::KeyPair::generate().ok()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?;
    params.subject_alt_names = vec![rcgen::SanType::URI(
        format!("spiffe://cluster.local/ns/{ns}/sa/default")
            .try_into()
            .ok()?,
    )];
    Some(params.signed_by(&mine, &issuer).ok()?.pem())
}

/// The Envoy admin's answer for `pod` (a GET of `/config_dump…`): its
/// secrets `default` and `ROOTCA`, the key redacted as Envoy does.
pub fn config_dump(pod: &Value) -> Option<Value> {
    sidecar(pod)?;
    let held = |k: &str| {
        pod.pointer(&format!("/metadata/annotations/{}", esc(k)))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    Some(json!({"configs": [{
        "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        "dynamic_active_secrets": [
            {"name": "default", "secret": {"name": "default", "tls_certificate": {
                "certificate_chain": {"inline_bytes": b64(held(CHAIN))},
                "private_key": {"inline_bytes": b64("[redacted]")}}}},
            {"name": "ROOTCA", "secret": {"name": "ROOTCA", "validation_context": {
                "trusted_ca": {"inline_bytes": b64(held(ROOTS))}}}}]}]}))
}

/// A JSON pointer's escaping of `/` and `~`.
fn esc(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
