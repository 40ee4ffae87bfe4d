//! The real tier: mesh against real Kubernetes API servers (kube-apiserver,
//! etcd, kube-controller-manager, kube-scheduler, kwok's fake nodes) and
//! the real istioctl, all built from pinned Go modules by
//! `tests/realk8s/build.sh` (see docs/testing.md). Each test runs in its own
//! network namespace (see the harness).

#[path = "realk8s/harness.rs"]
mod harness;

use harness::RealClusters;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// The seed's mesh file for the real clusters: their contexts, the real
/// istioctl, and gateways whose pods need no sidecar injection (kwok runs
/// no injector: with Istio's `injectionTemplate: gateway` their pods would
/// wait for a webhook that cannot answer).
fn mesh_toml(tools: &Path, remotes: &[&str], primary_values: &str) -> String {
    let mut s = format!(
        r#"[mesh]
id = "mesh1"

[istioctl]
path = "{istioctl}"
readiness_timeout = "120s"

[[cluster]]
name = "cluster1"
context = "real-cluster1"
network = "network1"
role = "primary"
[cluster.values.gateways.istio-ingressgateway]
injectionTemplate = ""
{primary_values}
[cluster.eastwest_values.gateways.istio-ingressgateway]
injectionTemplate = ""
"#,
        istioctl = tools.join("istioctl").display()
    );
    for r in remotes {
        s += &format!(
            "\n[[cluster]]\nname = \"{r}\"\ncontext = \"real-{r}\"\nnetwork = \"network1\"\nrole = \"remote\"\nprimary = \"cluster1\"\n"
        );
    }
    s
}

struct Run {
    dir: PathBuf,
    set: RealClusters,
}

impl Run {
    fn start(dir: &Path, names: &[&str]) -> Run {
        let t0 = Instant::now();
        let set = RealClusters::start(dir, names);
        eprintln!(
            "real clusters {names:?} healthy in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        Run {
            dir: dir.to_path_buf(),
            set,
        }
    }

    fn write_mesh(&self, toml: &str) {
        std::fs::write(self.dir.join("mesh.toml"), toml).unwrap();
    }

    fn mesh(&self, args: &[&str]) -> Output {
        let t0 = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&self.set.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!(
            "mesh {args:?}: {} in {:.1} s",
            o.status,
            t0.elapsed().as_secs_f64()
        );
        o
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.mesh(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(o.status.success(), "mesh {args:?} failed:\n{text}");
        text
    }

    /// `plan --detailed-exitcode` exits 0: the clusters match.
    fn assert_clean(&self) {
        let o = self.mesh(&["plan", "--detailed-exitcode"]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "plan is not clean:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.join("mesh.state.json")).unwrap())
            .unwrap()
    }
}

#[test]
fn seed_procedure_on_real_clusters() {
    if !harness::in_private_network("seed_procedure_on_real_clusters") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2"]);
    run.write_mesh(&mesh_toml(&run.set.tools, &["cluster2"], ""));
    let out = run.ok(&["apply", "--auto-approve"]);
    assert!(out.contains("Apply complete: 7 created"), "{out}");
    run.assert_clean();
    // Every object of the guide, looked at with kubectl.
    let s = &run.set;
    assert!(s.exists("cluster1", "deployment", Some("istio-system"), "istiod"));
    assert!(s.exists("cluster1", "service", Some("istio-system"), "istio-eastwestgateway"));
    assert!(s.exists("cluster1", "gateway.networking.istio.io", Some("istio-system"), "istiod-gateway"));
    assert!(s.exists("cluster1", "virtualservice.networking.istio.io", Some("istio-system"), "istiod-vs"));
    assert!(s.exists("cluster1", "secret", Some("istio-system"), "istio-remote-secret-cluster2"));
    let ann = s.kubectl_ok(
        "cluster2",
        &["get", "ns", "istio-system", "-o", "jsonpath={.metadata.annotations.topology\\.istio\\.io/controlPlaneClusters}"],
    );
    assert_eq!(ann, "cluster1");
    let addr = run.state()["steps"]["cluster1/eastwest-address"]["outputs"]["address"].clone();
    assert_eq!(addr, Value::from(s.cluster("cluster1").lb_ip.clone()));
}
