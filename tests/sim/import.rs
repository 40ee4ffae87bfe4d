//! `mesh import` on a mesh installed by hand, step by step as Istio's guide
//! does it (the simulated istioctl with the guide's own documents, kubectl's
//! verbs through the API, a remote secret made as `istioctl
//! create-remote-secret` makes it), on kubesim (the project's simulator).

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const SEED: &str = include_str!("../../examples/primary-remote.toml");

use crate::support::{World, repo, text};

/// Istio's own documents (providers/testdata, credited there).
fn testdata(name: &str) -> String {
    std::fs::read_to_string(repo().join("providers/testdata").join(name)).unwrap()
}

/// Istio's guide, done by hand against the simulated clusters.
trait ByHand {
    fn istioctl_install(&self, context: &str, document: &str);
    fn install_by_hand(&self, with_secret: bool);
}

impl ByHand for World {
    /// `istioctl install -y -f - --context CTX` (the simulated istioctl).
    fn istioctl_install(&self, context: &str, document: &str) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .args([
                "__sandbox-istioctl",
                "install",
                "-y",
                "-f",
                "-",
                "--context",
                context,
                "--kubeconfig",
            ])
            .arg(self.set().kubeconfig_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(document.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// Istio's primary-remote guide, by hand; `with_secret: false` stops
    /// before the last command (the remote secret).
    fn install_by_hand(&self, with_secret: bool) {
        let c1 = self.client("kind-cluster1");
        let c2 = self.client("kind-cluster2");
        // cluster1: the control plane with external istiod, the east-west
        // gateway, its address, istiod exposed.
        let mut cp = testdata("cluster1.yaml");
        cp.push_str("    pilot:\n      env:\n        EXTERNAL_ISTIOD: true\n");
        self.istioctl_install("kind-cluster1", &cp);
        self.istioctl_install("kind-cluster1", &testdata("eastwest-gateway-network1.yaml"));
        let svcs: Api<Service> = Api::namespaced(c1.clone(), "istio-system");
        let address = self.rt.block_on(async {
            for _ in 0..200 {
                if let Some(ip) = svcs
                    .get("istio-eastwestgateway")
                    .await
                    .unwrap()
                    .status
                    .and_then(|s| s.load_balancer)
                    .and_then(|l| l.ingress)
                    .and_then(|i| i.first().and_then(|x| x.ip.clone()))
                {
                    return ip;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("no address")
        });
        let pp = PatchParams::apply("kubectl").force();
        for doc in serde_saphyr::from_multiple::<Value>(&testdata("expose-istiod.yaml")).unwrap() {
            let ar = kube::api::ApiResource::from_gvk_with_plural(
                &kube::api::GroupVersionKind::gvk(
                    "networking.istio.io",
                    "v1",
                    doc["kind"].as_str().unwrap(),
                ),
                if doc["kind"] == "Gateway" {
                    "gateways"
                } else {
                    "virtualservices"
                },
            );
            let api: Api<kube::api::DynamicObject> =
                Api::namespaced_with(c1.clone(), "istio-system", &ar);
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            self.rt
                .block_on(api.patch(&name, &pp, &Patch::Apply(&doc)))
                .unwrap();
        }
        // cluster2: istio-system annotated, the remote profile.
        let nss: Api<Namespace> = Api::all(c2.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "istio-system",
            "annotations": {"topology.istio.io/controlPlaneClusters": "cluster1"}}}))
        .unwrap();
        self.rt
            .block_on(nss.create(&PostParams::default(), &ns))
            .unwrap();
        self.istioctl_install(
            "kind-cluster2",
            &testdata("cluster2.yaml").replace("${DISCOVERY_ADDRESS}", &address),
        );
        if !with_secret {
            return;
        }
        // istioctl create-remote-secret --context kind-cluster2 --name cluster2 | kubectl apply -f - --context kind-cluster1
        let secrets2: Api<Secret> = Api::namespaced(c2.clone(), "istio-system");
        let token_secret: Secret = serde_json::from_value(json!({"metadata": {
            "name": "istio-reader-service-account-istio-remote-secret-token", "namespace": "istio-system",
            "annotations": {"kubernetes.io/service-account.name": "istio-reader-service-account"}},
            "type": "kubernetes.io/service-account-token"}))
        .unwrap();
        self.rt
            .block_on(secrets2.create(&PostParams::default(), &token_secret))
            .unwrap();
        let (token, ca) = self.rt.block_on(async {
            for _ in 0..200 {
                let s = secrets2
                    .get("istio-reader-service-account-istio-remote-secret-token")
                    .await
                    .unwrap();
                if let Some(d) = s.data
                    && let (Some(t), Some(c)) = (d.get("token"), d.get("ca.crt"))
                {
                    return (String::from_utf8(t.0.clone()).unwrap(), c.0.clone());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("no token")
        });
        let server = self.cluster("kind-cluster2").server();
        let b64 = base64::engine::general_purpose::STANDARD;
        let kubeconfig = format!(
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: cluster2\n\
             contexts:\n- context:\n    cluster: cluster2\n    user: cluster2\n  name: cluster2\ncurrent-context: cluster2\n\
             kind: Config\npreferences: {{}}\nusers:\n- name: cluster2\n  user:\n    token: {token}\n",
            b64.encode(&ca)
        );
        let remote_secret: Secret = serde_json::from_value(json!({"metadata": {
            "name": "istio-remote-secret-cluster2", "namespace": "istio-system",
            "labels": {"istio/multiCluster": "true"},
            "annotations": {"networking.istio.io/cluster": "cluster2"}},
            "stringData": {"cluster2": kubeconfig}}))
        .unwrap();
        let secrets1: Api<Secret> = Api::namespaced(c1, "istio-system");
        self.rt
            .block_on(secrets1.create(&PostParams::default(), &remote_secret))
            .unwrap();
    }
}

#[test]
fn a_mesh_installed_by_hand_is_adopted_whole_and_plans_clean() {
    let w = World::new(SEED, &["kind-cluster1", "kind-cluster2"]);
    w.install_by_hand(true);
    let o = w.mesh(&["import"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("Imported 7 of 7 steps"), "{t}");
    // The remote secret istioctl made holds the reader token every link
    // would share: the plan gives the link its own, and nothing else.
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = text(&o);
    assert!(
        plan.contains("~ cluster2/attach (update)")
            && plan.contains("holds the reader token the links to `cluster2` share")
            && plan.contains("Plan: 0 to create, 1 to update, 0 to delete."),
        "{plan}"
    );
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(w.exists(
        "kind-cluster2",
        "",
        "secrets",
        "istio-system",
        "istio-reader-token-cluster1"
    ));
    // cluster1 held the shared token alone: it is revoked.
    assert!(!w.exists(
        "kind-cluster2",
        "",
        "secrets",
        "istio-system",
        "istio-reader-service-account-istio-remote-secret-token"
    ));
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // It changed nothing, and a second import is refused.
    let o = w.mesh(&["import"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("already records 7 steps") && text(&o).contains("--force"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_half_installed_mesh_records_only_what_is_there() {
    let w = World::new(SEED, &["kind-cluster1", "kind-cluster2"]);
    w.install_by_hand(false);
    let o = w.mesh(&["import"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("Imported 6 of 7 steps"), "{t}");
    assert!(
        t.contains(
            "differs cluster2/attach: Secret istio-system/istio-remote-secret-cluster2 missing"
        ),
        "{t}"
    );
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));
    let plan = text(&o);
    assert!(plan.contains("+ cluster2/attach (create)"), "{plan}");
    assert!(
        plan.contains("Plan: 1 to create, 0 to update, 0 to delete."),
        "{plan}"
    );
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
