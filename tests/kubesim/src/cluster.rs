//! One simulated cluster: its store, credentials, faults, request log and
//! controllers (load balancer, service-account tokens, namespaces).

use crate::store::{Data, EventType, Store};
use crate::tls::Certs;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

/// Faults injected into a cluster's API, changeable while it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Added to every request.
    pub latency: Duration,
    /// The share of requests (0.0–1.0) answered 500 or 429 (with Retry-After).
    pub error_rate: f64,
    /// Watch streams end after a short while, as when a connection drops.
    pub drop_watches: bool,
    /// New connections are closed at once.
    pub refuse_connections: bool,
    /// `(verb, resource)` pairs refused to every token (403), and answered
    /// `allowed: false` by a SelfSubjectAccessReview; `*` matches any.
    /// kubesim has no RBAC: this is how a test takes a permission away.
    pub denied: Vec<(String, String)>,
    /// `(verb, resource)` pairs RBAC allows (a SelfSubjectAccessReview
    /// says yes) but the request is refused (403), as an admission policy
    /// (Gatekeeper, Kyverno) refuses what RBAC allows.
    pub admission_denied: Vec<(String, String)>,
    /// The simulated istiod never takes an updated remote secret: it keeps
    /// the client of the kubeconfig it read first and logs no swap (as
    /// istio/istio#60612). A restarted istiod pod reads the secret anew.
    pub istiod_keeps_old_clients: bool,
    /// Once a list of resource `.0` (plural) with label selector `.1` has
    /// been answered, object `.2` is written (created, or replaced), once:
    /// a team acting between a read of mesh's and what follows it.
    pub after_list: Option<(String, String, Value)>,
}

impl Faults {
    /// Whether a request to `verb` `resource` is refused: by RBAC
    /// ([`Faults::denies`]) or by admission.
    pub fn refuses(&self, verb: &str, resource: &str) -> bool {
        self.denies(verb, resource)
            || self
                .admission_denied
                .iter()
                .any(|(v, r)| (v == "*" || v == verb) && (r == "*" || r == resource))
    }

    /// Whether `verb` on `resource` (either may be `*`: a question about
    /// every verb or resource) meets a denial.
    pub fn denies(&self, verb: &str, resource: &str) -> bool {
        let meets = |rule: &str, asked: &str| rule == "*" || asked == "*" || rule == asked;
        self.denied
            .iter()
            .any(|(v, r)| meets(v, verb) && meets(r, resource))
    }
}

/// What the load-balancer controller gives LoadBalancer Services.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LbMode {
    /// An IP from the cluster's pool (MetalLB on kind).
    #[default]
    Ip,
    /// A hostname and no IP (AWS ELB): the case mesh must refuse.
    Hostname,
}

/// One request, as the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// get, list, watch, create, update, patch, delete, deletecollection,
    /// discovery.
    pub verb: String,
    pub status: u16,
    pub at: SystemTime,
}

/// What is persisted of a cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct Saved {
    pub name: String,
    pub port: u16,
    pub token: String,
    pub certs: Certs,
    /// Its position in the set: picks its address pool.
    pub index: u16,
    pub lb_next: u64,
    pub data: Data,
}

pub struct Cluster {
    pub name: String,
    pub port: u16,
    pub token: String,
    pub certs: Certs,
    pub index: u16,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    lb_mode: Mutex<LbMode>,
    lb_delay: Mutex<Duration>,
    lb_next: AtomicU64,
    requests: Mutex<Vec<RequestRecord>>,
    tokens: Mutex<HashSet<String>>,
    /// What the simulated istiods log of the remote secrets they read.
    istiod_log: Mutex<crate::istiod_log::IstiodLog>,
    /// Set when something changed since the last save.
    pub(crate) dirty: AtomicBool,
}

pub const SA_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const SA_ANNOTATION: &str = "kubernetes.io/service-account.name";

impl Cluster {
    pub(crate) fn new(saved: Saved, lb_delay: Duration, lb_mode: LbMode) -> Arc<Cluster> {
        let store = Store::new(saved.data);
        let b64 = base64::engine::general_purpose::STANDARD;
        let tokens: HashSet<String> = store
            .all("", "secrets")
            .iter()
            .filter(|s| s["type"] == SA_TOKEN_TYPE)
            .filter_map(|s| s.pointer("/data/token").and_then(Value::as_str))
            .filter_map(|t| b64.decode(t).ok())
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .collect();
        let istiod_log = crate::istiod_log::IstiodLog::new(&store.all("", "secrets"));
        Arc::new(Cluster {
            name: saved.name,
            port: saved.port,
            token: saved.token,
            certs: saved.certs,
            index: saved.index,
            store: Mutex::new(store),
            faults: Mutex::new(Faults::default()),
            lb_mode: Mutex::new(lb_mode),
            lb_delay: Mutex::new(lb_delay),
            lb_next: AtomicU64::new(saved.lb_next),
            requests: Mutex::new(Vec::new()),
            tokens: Mutex::new(tokens),
            istiod_log: Mutex::new(istiod_log),
            dirty: AtomicBool::new(false),
        })
    }

    pub(crate) fn saved(&self) -> Saved {
        let store = self.store();
        let data = serde_json::to_value(store.data())
            .and_then(serde_json::from_value)
            .unwrap_or_default();
        Saved {
            name: self.name.clone(),
            port: self.port,
            token: self.token.clone(),
            certs: self.certs.clone(),
            index: self.index,
            lb_next: self.lb_next.load(Ordering::SeqCst),
            data,
        }
    }

    /// The store, for direct inspection by tests (and the server).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn faults(&self) -> Faults {
        self.faults.lock().expect("faults").clone()
    }

    pub fn set_faults(&self, f: Faults) {
        *self.faults.lock().expect("faults") = f;
    }

    pub fn set_lb_mode(&self, mode: LbMode) {
        *self.lb_mode.lock().expect("lb") = mode;
    }

    pub fn set_lb_delay(&self, d: Duration) {
        *self.lb_delay.lock().expect("lb") = d;
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.requests.lock().expect("requests").clone()
    }

    pub fn clear_requests(&self) {
        self.requests.lock().expect("requests").clear();
    }

    pub(crate) fn record(&self, r: RequestRecord) {
        self.requests.lock().expect("requests").push(r);
    }

    /// Whether a bearer token may use the API: the cluster's admin token, or
    /// a service-account token the token controller issued.
    pub fn authorised(&self, token: &str) -> bool {
        token == self.token || self.tokens.lock().expect("tokens").contains(token)
    }

    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::SeqCst);
    }

    /// The controllers: run until the store's event stream ends.
    pub(crate) async fn run_controllers(self: Arc<Self>) {
        let mut rx = self.store().subscribe();
        // Objects that were waiting when the cluster (re)started.
        self.settle_all();
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    self.mark_dirty();
                    if ev.kind == EventType::Deleted {
                        if ev.key.0.is_empty() && ev.key.1 == "serviceaccounts" {
                            self.clone().tokens_of_deleted(&ev.object);
                        }
                        if ev.key.0.is_empty() && ev.key.1 == "secrets" {
                            self.token_revoked(&ev.object);
                            self.istiod_reads_remote_secrets(&ev.object);
                        }
                        if ev.key.0 == "apps" && ev.key.1 == "deployments" {
                            self.istiod_pod(&ev.object, true);
                        }
                        // An object held by finalizers going (its last
                        // finalizer removed) may let its terminating
                        // namespace go.
                        if ev.object.pointer("/metadata/deletionTimestamp").is_some()
                            && let Some(ns) = ev
                                .object
                                .pointer("/metadata/namespace")
                                .and_then(Value::as_str)
                        {
                            let (me, ns) = (self.clone(), ns.to_string());
                            tokio::spawn(async move {
                                let mut store = me.store();
                                let terminating =
                                    store.get_raw("", "namespaces", "", &ns).is_some_and(|n| {
                                        n.pointer("/metadata/deletionTimestamp").is_some()
                                    });
                                if terminating {
                                    store.reap_namespaces();
                                }
                            });
                        }
                        continue;
                    }
                    match (ev.key.0.as_str(), ev.key.1.as_str()) {
                        ("", "services") => {
                            self.cluster_ip(&ev.object);
                            self.eastwest_addressed(&ev.object);
                            self.clone().load_balancer(&ev.object)
                        }
                        ("gateway.networking.k8s.io", "gateways") => {
                            self.eastwest_deployed(&ev.object)
                        }
                        ("apps", "daemonsets") => self.daemonset_ready(&ev.object),
                        ("apps", "deployments") => {
                            self.deployment_ready(&ev.object);
                            self.istiod_started(&ev.object);
                            self.istiod_pod(&ev.object, false);
                        }
                        ("", "pods") => crate::proxies::started(&mut self.store(), &ev.object),
                        ("", "configmaps")
                            if ns_and_name(&ev.object)
                                == ("istio-system", "istio-ca-root-cert") =>
                        {
                            crate::proxies::bundle_pushed(&mut self.store())
                        }
                        ("", "secrets") => {
                            self.istiod_reloads(&ev.object);
                            self.istiod_reads_remote_secrets(&ev.object);
                            self.clone().token(&ev.object)
                        }
                        ("", "namespaces")
                            if ev.object.pointer("/metadata/deletionTimestamp").is_some() =>
                        {
                            let me = self.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(Duration::from_millis(30)).await;
                                me.store().reap_namespaces();
                            });
                        }
                        _ => {
                            // A finalizer removed from an object in a
                            // terminating namespace lets the namespace go.
                            if ev.object.pointer("/metadata/namespace").is_some() {
                                let me = self.clone();
                                tokio::spawn(async move {
                                    me.store().reap_namespaces();
                                });
                            }
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.settle_all(),
                Err(_) => return,
            }
        }
    }

    /// A Service without a cluster IP gets one from 10.96.0.0/16, as the
    /// API server allocates it (no traffic goes there: nothing routes it).
    fn cluster_ip(&self, svc: &Value) {
        if svc
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .is_some_and(|ip| !ip.is_empty())
        {
            return;
        }
        let (ns, name) = ns_and_name(svc);
        // Stable per name, so a restart or a re-create gives the same one.
        let h = name.bytes().chain(ns.bytes()).fold(2166136261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16777619)
        });
        let ip = format!("10.96.{}.{}", (h >> 8) % 256, (h % 254) + 1);
        let mut store = self.store();
        if let Some(rt) = store.find_type("", "v1", "services") {
            let patch = json!({"spec": {"clusterIP": ip, "clusterIPs": [ip]}});
            let _ = store.controller_patch(
                &rt,
                ns,
                name,
                &patch,
                "kubesim-service-ip-allocator",
                false,
            );
        }
    }

    /// What a (re)started istiod does with a plug-in CA (kubesim runs no
    /// istiod): when istio-system has Secret `cacerts`, the root it
    /// publishes as ConfigMap `istio-ca-root-cert` is cacerts' root. The
    /// simulated istioctl publishes it on install; this covers a restart
    /// (`kubectl rollout restart`, which changes the pod template).
    fn istiod_started(&self, d: &Value) {
        let name = d
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if d.pointer("/metadata/namespace").and_then(Value::as_str) != Some("istio-system")
            || !name.starts_with("istiod")
        {
            return;
        }
        let mut store = self.store();
        let Some(root) = store
            .get_raw("", "secrets", "istio-system", "cacerts")
            .and_then(|s| s.pointer("/data/root-cert.pem"))
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
        else {
            return;
        };
        let published = store
            .get_raw("", "configmaps", "istio-system", "istio-ca-root-cert")
            .and_then(|c| c.pointer("/data/root-cert.pem"))
            .and_then(Value::as_str)
            .map(String::from);
        if published.is_none() || published.as_deref() == Some(root.as_str()) {
            return;
        }
        publish_root(&mut store, &root);
    }

    /// What a running istiod does when its mounted `cacerts` changes
    /// (Istio's `istio_ca.go` handleEvent): the same roots, it reloads
    /// the intermediate; roots added or dropped (one set holding the
    /// other), it publishes the new `root-cert.pem` only when it runs with
    /// `ISTIO_MULTIROOT_MESH=true`; anything else waits for a restart.
    fn istiod_reloads(&self, secret: &Value) {
        if secret
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            != Some("istio-system")
            || secret.pointer("/metadata/name").and_then(Value::as_str) != Some("cacerts")
        {
            return;
        }
        let mut store = self.store();
        let multi_root = store
            .all("apps", "deployments")
            .iter()
            .filter(|d| {
                d.pointer("/metadata/namespace").and_then(Value::as_str) == Some("istio-system")
            })
            .filter(|d| {
                d.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with("istiod"))
            })
            .any(|d| {
                d.to_string()
                    .contains("\"ISTIO_MULTIROOT_MESH\",\"value\":\"true\"")
            });
        let Some(root) = secret
            .pointer("/data/root-cert.pem")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
        else {
            return;
        };
        let Some(published) = store
            .get_raw("", "configmaps", "istio-system", "istio-ca-root-cert")
            .and_then(|c| {
                c.pointer("/data/root-cert.pem")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
        else {
            return;
        };
        let certs = |p: &str| -> Vec<String> {
            p.split("-----END CERTIFICATE-----")
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        };
        let (new, old) = (certs(&root), certs(&published));
        let holds = |a: &[String], b: &[String]| b.iter().all(|x| a.contains(x));
        if new == old || !multi_root || !(holds(&new, &old) || holds(&old, &new)) {
            return;
        }
        publish_root(&mut store, &root);
    }

    /// istiod's pod, which `mesh check` asks for `/debug/clusterz` through
    /// the pod proxy (no other pod is simulated): one Running, Ready pod
    /// per istiod Deployment of istio-system with replicas, carrying the
    /// template's labels; gone with its Deployment or at 0 replicas.
    /// Written only when missing or no longer wanted, so a read-only
    /// client sees no change.
    fn istiod_pod(&self, d: &Value, deleted: bool) {
        let (ns, name) = ns_and_name(d);
        if ns != "istio-system" || !(name == "istiod" || name.starts_with("istiod-")) {
            return;
        }
        let pod = format!("{name}-kubesim");
        let wanted = !deleted
            && d.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                > 0
            && d.pointer("/metadata/deletionTimestamp").is_none();
        let mut store = self.store();
        let Some(rt) = store.find_type("", "v1", "pods") else {
            return;
        };
        // A changed template (`kubectl rollout restart`) replaces the pod.
        let template = d
            .pointer("/spec/template")
            .map(Value::to_string)
            .unwrap_or_default();
        let hash = format!(
            "{:x}",
            template.bytes().fold(2166136261u32, |h, b| {
                (h ^ u32::from(b)).wrapping_mul(16777619)
            })
        );
        let live_hash = store.get_raw("", "pods", ns, &pod).map(|p| {
            p.pointer("/metadata/annotations/kubesim~1template")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        });
        if !wanted || live_hash.as_ref().is_some_and(|h| *h != hash) {
            if live_hash.is_some() {
                let _ = store.delete(&rt, ns, &pod);
            }
            if !wanted {
                return;
            }
        } else if live_hash.is_some() {
            return;
        }
        let labels = d
            .pointer("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({"app": "istiod"}));
        let containers = d
            .pointer("/spec/template/spec/containers")
            .cloned()
            .unwrap_or_else(
                || json!([{"name": "discovery", "image": "docker.io/istio/pilot:simulated"}]),
            );
        let obj = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": ns, "labels": labels,
                "annotations": {"kubesim/template": hash}},
            "spec": {"nodeName": "kubesim-node", "containers": containers}});
        // Whole seconds, as the kubelet reports them.
        let started = crate::store::now();
        let statuses: Vec<Value> = containers
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                json!({"name": c["name"], "ready": true, "restartCount": 0,
                "image": c["image"], "imageID": "", "started": true,
                "state": {"running": {"startedAt": started}}})
            })
            .collect();
        if store
            .create(&rt, ns, obj, "kubesim-deployment-controller")
            .is_ok()
        {
            let status = json!({"status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "startTime": started, "containerStatuses": statuses,
                "podIP": format!("10.244.0.{}", 2 + self.index % 250)}});
            let _ = store.controller_patch(
                &rt,
                ns,
                &pod,
                &status,
                "kubesim-deployment-controller",
                true,
            );
        }
    }

    /// A remote secret of istio-system written or deleted (`secret`): what
    /// the simulated istiods log of it ([`crate::istiod_log`]).
    fn istiod_reads_remote_secrets(&self, secret: &Value) {
        if secret
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            != Some("istio-system")
            || secret
                .pointer("/metadata/labels/istio~1multiCluster")
                .is_none()
        {
            return;
        }
        let secrets = self.store().all("", "secrets");
        let keeps_old = self.faults().istiod_keeps_old_clients;
        self.istiod_log
            .lock()
            .expect("istiod log")
            .remote_secrets_changed(&secrets, keeps_old);
    }

    /// `GET pods/<pod>/log` (query `q`): an istiod pod's log since it
    /// started; kubesim runs no other container.
    pub fn pod_log(
        &self,
        ns: &str,
        pod: &str,
        q: &HashMap<String, String>,
    ) -> Result<String, (u16, String)> {
        let started = {
            let store = self.store();
            let Some(p) = store.get_raw("", "pods", ns, pod) else {
                return Err((404, format!("pods \"{pod}\" not found")));
            };
            if p.pointer("/metadata/labels/app").and_then(Value::as_str) != Some("istiod") {
                return Err((
                    400,
                    format!("kubesim runs no containers: pod {pod} has no log"),
                ));
            }
            p.pointer("/status/startTime")
                .and_then(Value::as_str)
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(k8s_openapi::jiff::Timestamp::now)
        };
        self.istiod_log
            .lock()
            .expect("istiod log")
            .pod_log(started, q)
    }

    /// As kube-apiserver's legacy token authenticator: a service-account
    /// token stops authenticating when its token Secret is deleted.
    fn token_revoked(&self, secret: &Value) {
        if secret["type"] != SA_TOKEN_TYPE {
            return;
        }
        if let Some(t) = secret
            .pointer("/data/token")
            .and_then(Value::as_str)
            .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
            .and_then(|t| String::from_utf8(t).ok())
        {
            self.tokens.lock().expect("tokens").remove(&t);
        }
    }

    /// As kwok's fake nodes make it on a real cluster: a Deployment's pods
    /// are at once ready, so its status says every replica is available.
    /// (No pods are simulated; `kubectl get deploy` shows READY 1/1.)
    /// What an ambient istiod's gateway controller does with a Gateway of
    /// class `istio-east-west` (kubesim runs no istiod): it deploys the
    /// gateway, whose LoadBalancer Service is named after it, and, once
    /// that Service has an address, programs the Gateway with it
    /// ([`Self::eastwest_addressed`]); a Gateway whose Service is there
    /// already is programmed at once. Only where an ambient istiod runs.
    fn eastwest_deployed(&self, gw: &Value) {
        if gw.pointer("/spec/gatewayClassName").and_then(Value::as_str) != Some("istio-east-west")
            || gw.pointer("/metadata/deletionTimestamp").is_some()
        {
            return;
        }
        let (ns, name) = ns_and_name(gw);
        let mut store = self.store();
        let ambient = store.all("apps", "deployments").iter().any(|d| {
            d.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
                && d.to_string()
                    .contains(r#"{"name":"PILOT_ENABLE_AMBIENT","value":"true"}"#)
        });
        let Some(rt) = store.find_type("", "v1", "services") else {
            return;
        };
        if !ambient {
            return;
        }
        // Already deployed (the Gateway re-created, or changed): istiod
        // programs it with the Service's address it has.
        if let Ok(svc) = store.get(&rt, ns, name) {
            drop(store);
            self.eastwest_addressed(&svc);
            return;
        }
        let network = gw
            .pointer("/metadata/labels/topology.istio.io~1network")
            .cloned()
            .unwrap_or(Value::Null);
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns,
                "labels": {"gateway.networking.k8s.io/gateway-name": name, "topology.istio.io/network": network}},
            "spec": {"type": "LoadBalancer", "selector": {"gateway.networking.k8s.io/gateway-name": name},
                "ports": [{"name": "status-port", "port": 15021}, {"name": "mesh", "port": 15008}]}});
        let _ = store.create(&rt, ns, svc, "istiod");
    }

    /// The east-west gateway's Service got its address: istiod writes it
    /// into the Gateway's status and marks it Programmed.
    fn eastwest_addressed(&self, svc: &Value) {
        let Some(gateway) = svc
            .pointer("/metadata/labels/gateway.networking.k8s.io~1gateway-name")
            .and_then(Value::as_str)
        else {
            return;
        };
        let Some(ingress) = svc.pointer("/status/loadBalancer/ingress/0") else {
            return;
        };
        let address = match (ingress["ip"].as_str(), ingress["hostname"].as_str()) {
            (Some(ip), _) => json!({"type": "IPAddress", "value": ip}),
            (None, Some(h)) => json!({"type": "Hostname", "value": h}),
            _ => return,
        };
        let (ns, _) = ns_and_name(svc);
        let mut store = self.store();
        let Some(rt) = store.find_type("gateway.networking.k8s.io", "v1", "gateways") else {
            return;
        };
        let status = json!({"status": {"addresses": [address], "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted"},
            {"type": "Programmed", "status": "True", "reason": "Programmed"}]}});
        // Programmed already: no write, so no event to answer again.
        if store
            .get(&rt, ns, gateway)
            .ok()
            .and_then(|g| g.get("status").cloned())
            == Some(status["status"].clone())
        {
            return;
        }
        let _ = store.controller_patch(&rt, ns, gateway, &status, "istiod", true);
    }

    /// What the DaemonSet controller and the kubelets report: one node,
    /// its pod scheduled and ready (istioctl waits for it).
    fn daemonset_ready(&self, d: &Value) {
        let generation = d
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let status = json!({
            "observedGeneration": generation,
            "currentNumberScheduled": 1,
            "desiredNumberScheduled": 1,
            "numberAvailable": 1,
            "numberMisscheduled": 0,
            "numberReady": 1,
            "updatedNumberScheduled": 1,
        });
        if d.get("status") == Some(&status) {
            return;
        }
        let (ns, name) = ns_and_name(d);
        let mut store = self.store();
        if let Some(rt) = store.find_type("apps", "v1", "daemonsets") {
            let patch = json!({"status": status});
            let _ =
                store.controller_patch(&rt, ns, name, &patch, "kubesim-daemonset-controller", true);
        }
    }

    fn deployment_ready(&self, d: &Value) {
        let replicas = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = d
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let status = json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
        });
        if d.get("status") == Some(&status) {
            return;
        }
        let (ns, name) = ns_and_name(d);
        let mut store = self.store();
        if let Some(rt) = store.find_type("apps", "v1", "deployments") {
            let patch = json!({"status": status});
            let _ = store.controller_patch(
                &rt,
                ns,
                name,
                &patch,
                "kubesim-deployment-controller",
                true,
            );
        }
    }

    fn settle_all(self: &Arc<Self>) {
        let (services, secrets, deployments) = {
            let s = self.store();
            (
                s.all("", "services"),
                s.all("", "secrets"),
                s.all("apps", "deployments"),
            )
        };
        for d in deployments {
            self.istiod_pod(&d, false);
        }
        for svc in services {
            self.clone().load_balancer(&svc);
        }
        for sec in secrets {
            self.clone().token(&sec);
        }
        self.store().reap_namespaces();
    }

    /// MetalLB-like: a LoadBalancer Service without an address gets one
    /// after the configured delay.
    fn load_balancer(self: Arc<Self>, svc: &Value) {
        if svc.pointer("/spec/type").and_then(Value::as_str) != Some("LoadBalancer")
            || svc.pointer("/status/loadBalancer/ingress/0").is_some()
        {
            return;
        }
        let (ns, name) = ns_and_name(svc);
        let (ns, name) = (ns.to_string(), name.to_string());
        let delay = *self.lb_delay.lock().expect("lb");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let ingress = match *self.lb_mode.lock().expect("lb") {
                LbMode::Ip => {
                    let n = self.lb_next.fetch_add(1, Ordering::SeqCst);
                    json!({"ip": format!("172.18.{}.{}", 100 + self.index % 100, 200 + n % 50)})
                }
                LbMode::Hostname => {
                    json!({"hostname": format!("{name}-{:08x}.elb.us-east-1.amazonaws.com", rand::random::<u32>())})
                }
            };
            let mut store = self.store();
            let Some(rt) = store.find_type("", "v1", "services") else {
                return;
            };
            let Ok(current) = store.get(&rt, &ns, &name) else {
                return;
            };
            if current.pointer("/status/loadBalancer/ingress/0").is_some() {
                return;
            }
            let patch = json!({"status": {"loadBalancer": {"ingress": [ingress]}}});
            let _ = store.controller_patch(&rt, &ns, &name, &patch, "kubesim-lb", true);
        });
    }

    /// The token controller: fills token, ca.crt and namespace into
    /// service-account-token Secrets whose ServiceAccount exists.
    /// As Kubernetes' token controller: the token Secrets of a deleted
    /// ServiceAccount are deleted, and their tokens stop authenticating. A
    /// ServiceAccount re-created under the same name gets new tokens.
    fn tokens_of_deleted(self: Arc<Self>, sa: &Value) {
        let (ns, name) = ns_and_name(sa);
        let (ns, name) = (ns.to_string(), name.to_string());
        let mut store = self.store();
        let Some(rt) = store.find_type("", "v1", "secrets") else {
            return;
        };
        let doomed: Vec<(String, Option<String>)> = store
            .all("", "secrets")
            .into_iter()
            .filter(|s| {
                s["type"] == SA_TOKEN_TYPE
                    && s.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns.as_str())
                    && s.pointer(&format!(
                        "/metadata/annotations/{}",
                        SA_ANNOTATION.replace('/', "~1")
                    ))
                    .and_then(Value::as_str)
                        == Some(name.as_str())
            })
            .map(|s| {
                let secret = s
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let token = s
                    .pointer("/data/token")
                    .and_then(Value::as_str)
                    .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
                    .and_then(|t| String::from_utf8(t).ok());
                (secret, token)
            })
            .collect();
        for (secret, token) in doomed {
            let _ = store.delete(&rt, &ns, &secret);
            if let Some(t) = token {
                self.tokens.lock().expect("tokens").remove(&t);
            }
        }
    }

    fn token(self: Arc<Self>, secret: &Value) {
        if secret["type"] != SA_TOKEN_TYPE || secret.pointer("/data/token").is_some() {
            return;
        }
        let (ns, name) = ns_and_name(secret);
        let (ns, name) = (ns.to_string(), name.to_string());
        let Some(sa) = secret
            .pointer(&format!(
                "/metadata/annotations/{}",
                SA_ANNOTATION.replace('/', "~1")
            ))
            .and_then(Value::as_str)
        else {
            return;
        };
        let sa = sa.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let token = {
                let b: [u8; 24] = rand::random();
                format!(
                    "kubesim-sa.{}",
                    b.iter().map(|x| format!("{x:02x}")).collect::<String>()
                )
            };
            let mut store = self.store();
            if store.get_raw("", "serviceaccounts", &ns, &sa).is_none() {
                return;
            }
            let Some(rt) = store.find_type("", "v1", "secrets") else {
                return;
            };
            let b64 = base64::engine::general_purpose::STANDARD;
            let patch = json!({"data": {
                "token": b64.encode(&token),
                "ca.crt": b64.encode(&self.certs.ca_pem),
                "namespace": b64.encode(&ns),
            }});
            if store
                .patch(
                    &rt,
                    &ns,
                    &name,
                    crate::store::PatchType::Merge,
                    patch.to_string().as_bytes(),
                    "kubesim-token-controller",
                    false,
                    false,
                )
                .is_ok()
            {
                self.tokens.lock().expect("tokens").insert(token);
            }
        });
    }
}

/// An object's namespace (`default` when it has none, as a namespaced
/// create without one gets) and name.
fn ns_and_name(obj: &Value) -> (&str, &str) {
    let field = |p: &str| obj.pointer(p).and_then(Value::as_str);
    (
        field("/metadata/namespace").unwrap_or("default"),
        field("/metadata/name").unwrap_or_default(),
    )
}

/// What istiod does with the roots it trusts: ConfigMap
/// `istio-system/istio-ca-root-cert`, key `root-cert.pem`.
fn publish_root(store: &mut crate::store::Store, root: &str) {
    if let Some(rt) = store.find_type("", "v1", "configmaps") {
        let patch = json!({"data": {"root-cert.pem": root}});
        let _ = store.controller_patch(
            &rt,
            "istio-system",
            "istio-ca-root-cert",
            &patch,
            "istiod",
            false,
        );
    }
}
