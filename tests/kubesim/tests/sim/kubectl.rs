//! The real kubectl against `kubesim serve`, and the simulated istioctl
//! (the `kubesim istioctl` binary) against the same clusters. These fail,
//! not skip, when kubectl is missing: .ci/run installs it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

struct Serve {
    child: Child,
    dir: tempfile::TempDir,
}

/// Starts `kubesim serve` on `dir` and waits until it listens.
fn spawn(dir: &Path, clusters: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args([
            "serve",
            "--dir",
            dir.to_str().unwrap(),
            "--clusters",
            clusters,
            "--lb-delay-ms",
            "100",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    loop {
        let line = lines
            .next()
            .expect("kubesim serve printed its addresses")
            .unwrap();
        if line.starts_with("serving") {
            break;
        }
    }
    child
}

fn stop(child: &mut Child) {
    // SIGTERM: kubesim saves and exits.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

impl Serve {
    fn start(clusters: &str) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn(dir.path(), clusters);
        Serve { child, dir }
    }

    fn restart(&mut self) {
        stop(&mut self.child);
        self.child = spawn(self.dir.path(), "");
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubectl(&self, context: &str, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["--context", context, "--cache-dir"])
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .output()
            .expect("kubectl must be installed: .ci/run installs Debian's kubernetes-client")
    }

    fn ok(&self, context: &str, args: &[&str]) -> String {
        let o = self.kubectl(context, args);
        assert!(
            o.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn istioctl(&self, args: &[&str], stdin: &str, log: &Path) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kubesim"))
            .arg("istioctl")
            .args(args)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .env("KUBESIM_ISTIOCTL_LOG", log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

const GATEWAY_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gateways.networking.istio.io
spec:
  group: networking.istio.io
  scope: Namespaced
  names: {kind: Gateway, plural: gateways, singular: gateway, shortNames: [gw]}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

const GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istiod-gateway
  namespace: istio-system
spec:
  selector: {istio: eastwestgateway}
"#;

#[test]
fn kubectl_works_against_kubesim_serve() {
    let s = Serve::start("a,b");
    let ns = s.ok("a", &["get", "ns"]);
    for n in ["default", "kube-system", "kube-public"] {
        assert!(ns.contains(n), "{ns}");
    }
    s.ok("a", &["create", "namespace", "istio-system"]);
    s.ok(
        "a",
        &[
            "annotate",
            "namespace",
            "istio-system",
            "topology.istio.io/controlPlaneClusters=cluster1",
        ],
    );
    let ann = s.ok(
        "a",
        &[
            "get",
            "ns",
            "istio-system",
            "-o",
            "jsonpath={.metadata.annotations.topology\\.istio\\.io/controlPlaneClusters}",
        ],
    );
    assert_eq!(ann, "cluster1");
    // The other cluster is separate.
    assert!(
        !s.kubectl("b", &["get", "ns", "istio-system"])
            .status
            .success()
    );

    // Server-side apply of a Gateway once its CRD exists. kubesim serves no
    // OpenAPI, so client-side validation is off (see the README).
    let dir = s.dir.path().to_path_buf();
    std::fs::write(dir.join("crd.yaml"), GATEWAY_CRD).unwrap();
    std::fs::write(dir.join("gw.yaml"), GATEWAY).unwrap();
    let before = s.kubectl(
        "a",
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            dir.join("gw.yaml").to_str().unwrap(),
        ],
    );
    assert!(!before.status.success(), "no Gateway kind before its CRD");
    s.ok(
        "a",
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            dir.join("crd.yaml").to_str().unwrap(),
        ],
    );
    s.ok(
        "a",
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            dir.join("gw.yaml").to_str().unwrap(),
        ],
    );
    let sel = s.ok(
        "a",
        &[
            "get",
            "gateways.networking.istio.io",
            "-n",
            "istio-system",
            "istiod-gateway",
            "-o",
            "jsonpath={.spec.selector.istio}",
        ],
    );
    assert_eq!(sel, "eastwestgateway");

    // A LoadBalancer Service gets its IP; kubectl wait sees it.
    s.ok(
        "a",
        &[
            "-n",
            "istio-system",
            "create",
            "service",
            "loadbalancer",
            "lb",
            "--tcp=80:80",
        ],
    );
    s.ok(
        "a",
        &[
            "-n",
            "istio-system",
            "wait",
            "--for=jsonpath={.status.loadBalancer.ingress[0].ip}",
            "service/lb",
            "--timeout=20s",
        ],
    );
    let ip = s.ok(
        "a",
        &[
            "-n",
            "istio-system",
            "get",
            "svc",
            "lb",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
    );
    assert!(ip.starts_with("172.18."), "{ip}");

    // Tables as a cluster prints them (server-side printing), and `get all`.
    let deploy = s.dir.path().join("web.yaml");
    std::fs::write(
        &deploy,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: istio-system}\n\
         spec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  \
         template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: x}]}}\n",
    )
    .unwrap();
    s.ok(
        "a",
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "-f",
            deploy.to_str().unwrap(),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let all = loop {
        let all = s.ok("a", &["-n", "istio-system", "get", "all"]);
        if all.contains("1/1") || std::time::Instant::now() > deadline {
            break all;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let header = all.lines().find(|l| l.contains("TYPE")).unwrap_or_default();
    for col in [
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ] {
        assert!(header.contains(col), "{all}");
    }
    let lb_row = all
        .lines()
        .find(|l| l.contains("service/lb"))
        .unwrap_or_default();
    assert!(
        lb_row.contains("LoadBalancer") && lb_row.contains(&ip) && lb_row.contains("80/TCP"),
        "{all}"
    );
    assert!(lb_row.contains("10.96."), "a cluster IP: {all}");
    let deploy_row = all
        .lines()
        .find(|l| l.contains("deployment.apps/web"))
        .unwrap_or_default();
    assert!(deploy_row.contains("1/1"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.contains("READY") && l.contains("UP-TO-DATE") && l.contains("AVAILABLE")),
        "{all}"
    );

    // Deleting the namespace takes its objects; then it is NotFound.
    s.ok(
        "a",
        &[
            "delete",
            "ns",
            "istio-system",
            "--wait=true",
            "--timeout=20s",
        ],
    );
    let gone = s.kubectl("a", &["get", "ns", "istio-system"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
}

#[test]
fn changes_made_with_kubectl_survive_a_restart() {
    let mut s = Serve::start("a");
    s.ok("a", &["create", "namespace", "kept"]);
    let dir = s.dir.path().to_path_buf();
    // Stop (saving), start again on the same folder.
    s.restart();
    assert!(s.ok("a", &["get", "ns"]).contains("kept"));
    // A second server on the same folder is refused.
    let second = Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args(["serve", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already served"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
}

#[test]
fn simulated_istioctl_installs_each_profile_and_uninstalls_it() {
    let s = Serve::start("p,r");
    let log = s.dir.path().join("istioctl.log");
    let primary = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  values:\n    global:\n      meshID: mesh1\n      multiCluster:\n        clusterName: p\n      network: network1\n";
    let o = s.istioctl(
        &["install", "-y", "-f", "-", "--context", "p"],
        primary,
        &log,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (kind, name, ns) in [
        ("deployment", "istiod", Some("istio-system")),
        ("service", "istiod", Some("istio-system")),
        (
            "serviceaccount",
            "istio-reader-service-account",
            Some("istio-system"),
        ),
        ("clusterrole", "istio-reader-clusterrole-istio-system", None),
        (
            "clusterrolebinding",
            "istio-reader-clusterrole-istio-system",
            None,
        ),
        (
            "mutatingwebhookconfiguration",
            "istio-sidecar-injector",
            None,
        ),
        ("crd", "gateways.networking.istio.io", None),
        ("crd", "virtualservices.networking.istio.io", None),
        ("crd", "destinationrules.networking.istio.io", None),
        ("crd", "serviceentries.networking.istio.io", None),
        ("crd", "peerauthentications.security.istio.io", None),
    ] {
        let mut args = vec![
            "get",
            kind,
            name,
            "-o",
            "jsonpath={.metadata.labels.istio\\.io/rev}",
        ];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        assert_eq!(
            s.ok("p", &args),
            "default",
            "{kind}/{name} labelled with the revision"
        );
    }
    let eastwest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../providers/testdata/eastwest-gateway-network1.yaml"
    ))
    .unwrap();
    let o = s.istioctl(
        &["install", "-y", "-f", "-", "--context", "p"],
        &eastwest,
        &log,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s.ok("p", &["-n", "istio-system", "get", "svc", "istio-eastwestgateway", "-o", "jsonpath={.spec.type} {.spec.ports[3].port} {.metadata.labels.topology\\.istio\\.io/network}"]), "LoadBalancer 15017 network1");
    s.ok(
        "p",
        &[
            "-n",
            "istio-system",
            "get",
            "deployment",
            "istio-eastwestgateway",
        ],
    );

    let remote = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nspec:\n  profile: remote\n  values:\n    istiodRemote:\n      injectionPath: /inject/cluster/r/net/network1\n    global:\n      remotePilotAddress: 172.18.0.200\n";
    let o = s.istioctl(
        &["install", "-y", "-f", "-", "--context", "r"],
        remote,
        &log,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        s.ok(
            "r",
            &[
                "get",
                "mutatingwebhookconfiguration",
                "istio-sidecar-injector",
                "-o",
                "jsonpath={.webhooks[0].clientConfig.url}"
            ]
        ),
        "https://172.18.0.200:15017/inject/cluster/r/net/network1"
    );
    s.ok(
        "r",
        &[
            "-n",
            "istio-system",
            "get",
            "sa",
            "istio-reader-service-account",
        ],
    );
    assert!(
        !s.kubectl("r", &["-n", "istio-system", "get", "deployment", "istiod"])
            .status
            .success(),
        "a remote runs no istiod"
    );

    // Bad input fails like istioctl: non-zero, message on stderr.
    let o = s.istioctl(
        &["install", "-y", "-f", "-", "--context", "p"],
        "kind: NotAnOperator\n",
        &log,
    );
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("IstioOperator"));
    let o = s.istioctl(&["install", "--frobnicate"], "", &log);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unknown flag"));

    // Uninstall -f removes what that document installed; --purge the rest.
    let file = s.dir.path().join("eastwest.yaml");
    std::fs::write(&file, &eastwest).unwrap();
    let o = s.istioctl(
        &[
            "uninstall",
            "-y",
            "-f",
            file.to_str().unwrap(),
            "--context",
            "p",
        ],
        "",
        &log,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !s.kubectl(
            "p",
            &["-n", "istio-system", "get", "svc", "istio-eastwestgateway"]
        )
        .status
        .success()
    );
    s.ok("p", &["-n", "istio-system", "get", "deployment", "istiod"]);
    let o = s.istioctl(&["uninstall", "-y", "--purge", "--context", "p"], "", &log);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (kind, name) in [
        ("clusterrole", "istio-reader-clusterrole-istio-system"),
        ("crd", "gateways.networking.istio.io"),
        ("mutatingwebhookconfiguration", "istio-sidecar-injector"),
    ] {
        assert!(
            !s.kubectl("p", &["get", kind, name]).status.success(),
            "{kind}/{name} purged"
        );
    }
    assert!(
        !s.kubectl("p", &["-n", "istio-system", "get", "deployment", "istiod"])
            .status
            .success()
    );

    // The invocation log: argv, stdin and exit code of every run.
    let entries: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 7);
    assert_eq!(entries[0]["argv"][0], "install");
    assert_eq!(entries[0]["stdin"], primary);
    assert_eq!(entries[0]["exit"], 0);
    assert_eq!(entries[3]["exit"], 1);
    assert_eq!(entries[6]["argv"][2], "--purge");
}
