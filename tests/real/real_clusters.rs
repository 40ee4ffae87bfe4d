//! The real tier: mesh against real Kubernetes API servers (kube-apiserver,
//! etcd, kube-controller-manager, kube-scheduler, kwok's fake nodes) and
//! the real istioctl, all built from pinned Go modules by
//! `tests/realk8s/build.sh` (see docs/testing.md). Each test runs in its own
//! network namespace (see the harness).

use crate::harness::{self, RealClusters};
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

    /// `mesh --kubeconfig KUBECONFIG ARGS…` in the run's folder, not yet run.
    fn command(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mesh"));
        c.current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn mesh(&self, args: &[&str]) -> Output {
        let t0 = Instant::now();
        let o = self.command(&self.set.kubeconfig, args).output().unwrap();
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
    assert!(s.exists(
        "cluster1",
        "service",
        Some("istio-system"),
        "istio-eastwestgateway"
    ));
    assert!(s.exists(
        "cluster1",
        "gateway.networking.istio.io",
        Some("istio-system"),
        "istiod-gateway"
    ));
    assert!(s.exists(
        "cluster1",
        "virtualservice.networking.istio.io",
        Some("istio-system"),
        "istiod-vs"
    ));
    assert!(s.exists(
        "cluster1",
        "secret",
        Some("istio-system"),
        "istio-remote-secret-cluster2"
    ));
    let ann = s.kubectl_ok(
        "cluster2",
        &[
            "get",
            "ns",
            "istio-system",
            "-o",
            "jsonpath={.metadata.annotations.topology\\.istio\\.io/controlPlaneClusters}",
        ],
    );
    assert_eq!(ann, "cluster1");
    let addr = run.state()["steps"]["cluster1/eastwest-address"]["outputs"]["address"].clone();
    assert_eq!(addr, Value::from(s.cluster("cluster1").lb_ip.clone()));
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap()
}

#[test]
fn the_remote_secret_works_matches_istioctl_and_a_real_istiod_syncs_through_it() {
    if !harness::in_private_network(
        "the_remote_secret_works_matches_istioctl_and_a_real_istiod_syncs_through_it",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2"]);
    run.write_mesh(&mesh_toml(&run.set.tools, &["cluster2"], ""));
    run.ok(&["apply", "--auto-approve"]);
    let s = &run.set;

    // The kubeconfig mesh wrote into the primary reaches cluster2's real
    // API server with the reader's rights, and no more.
    let secret: Value = serde_json::from_str(&s.kubectl_ok(
        "cluster1",
        &[
            "get",
            "secret",
            "-n",
            "istio-system",
            "istio-remote-secret-cluster2",
            "-o",
            "json",
        ],
    ))
    .unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let kubeconfig = String::from_utf8(
        b64.decode(secret["data"]["cluster2"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let kc_path = tmp.path().join("remote-secret.kubeconfig");
    std::fs::write(&kc_path, &kubeconfig).unwrap();
    let reader = |args: &[&str]| {
        Command::new(s.tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&kc_path)
            .args(args)
            .output()
            .unwrap()
    };
    for what in ["pods", "services", "endpointslices"] {
        let o = reader(&["get", what, "--all-namespaces"]);
        assert!(
            o.status.success(),
            "the remote secret cannot list {what}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = reader(&[
        "create",
        "secret",
        "generic",
        "x",
        "-n",
        "default",
        "--from-literal=a=b",
    ]);
    assert!(!o.status.success(), "the reader may create Secrets");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Forbidden")
            || String::from_utf8_lossy(&o.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Differential: the real `istioctl create-remote-secret` makes the same
    // Secret, field by field, all but the token.
    let o = Command::new(s.tool("istioctl"))
        .args(["create-remote-secret", "--kubeconfig"])
        .arg(&s.kubeconfig)
        .args([
            "--context",
            "real-cluster2",
            "--name",
            "cluster2",
            "-n",
            "istio-system",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "istioctl create-remote-secret: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&o.stdout)).unwrap();
    let theirs = docs
        .into_iter()
        .find(|d| d["kind"] == "Secret")
        .expect("a Secret");
    assert_eq!(theirs["metadata"]["name"], secret["metadata"]["name"]);
    assert_eq!(
        theirs["metadata"]["namespace"],
        secret["metadata"]["namespace"]
    );
    for (k, v) in theirs["metadata"]["labels"].as_object().unwrap() {
        assert_eq!(&secret["metadata"]["labels"][k], v, "label {k}");
    }
    for (k, v) in theirs["metadata"]["annotations"].as_object().unwrap() {
        assert_eq!(&secret["metadata"]["annotations"][k], v, "annotation {k}");
    }
    let their_keys: Vec<&String> = theirs["stringData"].as_object().unwrap().keys().collect();
    assert_eq!(their_keys, ["cluster2"], "their data key");
    let mine = yaml(&kubeconfig);
    let their_kc = yaml(theirs["stringData"]["cluster2"].as_str().unwrap());
    for ptr in [
        "/clusters/0/name",
        "/clusters/0/cluster/server",
        "/clusters/0/cluster/certificate-authority-data",
        "/contexts/0/name",
        "/contexts/0/context/cluster",
        "/contexts/0/context/user",
        "/current-context",
        "/users/0/name",
    ] {
        assert_eq!(mine.pointer(ptr), their_kc.pointer(ptr), "{ptr} differs");
        assert!(mine.pointer(ptr).is_some(), "{ptr} missing");
    }
    assert!(their_kc.pointer("/users/0/user/token").is_some());

    // A real istiod (pilot-discovery as a local process, with the
    // primary's kubeconfig) reads mesh's remote secret and syncs cluster2.
    let c1 = s.cluster("cluster1");
    let work = tmp.path().join("istiod");
    std::fs::create_dir_all(&work).unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (http, grpc, mon, ctrlz) = (free(), free(), free(), free());
    let istiod = harness::Proc::start(
        "pilot-discovery",
        &s.tool("pilot-discovery"),
        &[
            "discovery".into(),
            "--kubeconfig".into(),
            c1.kubeconfig.display().to_string(),
            "--clusterID".into(),
            "cluster1".into(),
            format!("--httpAddr=127.0.0.1:{http}"),
            format!("--grpcAddr=127.0.0.1:{grpc}"),
            format!("--monitoringAddr=127.0.0.1:{mon}"),
            format!("--ctrlz_port={ctrlz}"),
            "--secureGRPCAddr=".into(),
            "--httpsAddr=".into(),
        ],
        work.join("pilot-discovery.log"),
        &[
            ("POD_NAMESPACE", "istio-system"),
            ("POD_NAME", "mesh-test-istiod"),
            ("ENABLE_CA_SERVER", "false"),
            ("INJECTION_WEBHOOK_CONFIG_NAME", ""),
            ("VALIDATION_WEBHOOK_CONFIG_NAME", ""),
            ("INJECT_ENABLED", "false"),
            ("ENABLE_LEADER_ELECTION", "false"),
        ],
    );
    let deadline = Instant::now() + std::time::Duration::from_secs(90);
    let synced = loop {
        if let Some(body) = harness::http_get("127.0.0.1", http, "/debug/clusterz")
            && let Ok(v) = serde_json::from_str::<Value>(&body)
            && let Some(c2) = v
                .as_array()
                .and_then(|a| a.iter().find(|c| c["id"] == "cluster2"))
            && c2["syncStatus"] == "synced"
        {
            break c2.clone();
        }
        assert!(
            Instant::now() < deadline,
            "pilot-discovery did not sync cluster2 within 90 s. Its log:\n{}",
            istiod.tail(40)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(
        synced["secretName"],
        "istio-system/istio-remote-secret-cluster2"
    );
    eprintln!("pilot-discovery: {synced}");
}

/// The east-west gateway and its address, as the seed left them: what every
/// later apply must keep (a control-plane re-install must not prune it).
fn assert_gateway_intact(run: &Run) {
    let s = &run.set;
    assert!(
        s.exists(
            "cluster1",
            "deployment",
            Some("istio-system"),
            "istio-eastwestgateway"
        ),
        "the east-west gateway's Deployment is gone"
    );
    let ip = s.kubectl_ok(
        "cluster1",
        &[
            "get",
            "svc",
            "-n",
            "istio-system",
            "istio-eastwestgateway",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
    );
    assert_eq!(
        ip,
        s.cluster("cluster1").lb_ip,
        "the east-west address changed"
    );
    assert_eq!(
        run.state()["steps"]["cluster1/eastwest-address"]["outputs"]["address"],
        Value::from(ip)
    );
}

#[test]
fn every_kind_of_change_re_applies_cleanly_and_destroy_leaves_nothing() {
    if !harness::in_private_network(
        "every_kind_of_change_re_applies_cleanly_and_destroy_leaves_nothing",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut run = Run::start(tmp.path(), &["cluster1", "cluster2", "cluster3"]);
    let tools = run.set.tools.clone();
    run.write_mesh(&mesh_toml(&tools, &["cluster2"], ""));
    run.ok(&["apply", "--auto-approve"]);
    assert_gateway_intact(&run);

    // A value changed on the primary: the control plane is re-installed by
    // the real istioctl, whose prune must leave the east-west gateway.
    run.write_mesh(&mesh_toml(
        &tools,
        &["cluster2"],
        "[cluster.values.global.logging]\nlevel = \"default:debug\"\n",
    ));
    let out = run.ok(&["apply", "--auto-approve"]);
    assert!(
        out.contains("cluster1/install-control-plane: updated"),
        "{out}"
    );
    run.assert_clean();
    assert_gateway_intact(&run);

    // A remote added, then removed.
    let values = "[cluster.values.global.logging]\nlevel = \"default:debug\"\n";
    run.write_mesh(&mesh_toml(&tools, &["cluster2", "cluster3"], values));
    let out = run.ok(&["apply", "--auto-approve"]);
    assert!(out.contains("3 created"), "{out}");
    run.assert_clean();
    assert!(run.set.exists(
        "cluster1",
        "secret",
        Some("istio-system"),
        "istio-remote-secret-cluster3"
    ));
    run.write_mesh(&mesh_toml(&tools, &["cluster2"], values));
    let out = run.ok(&["apply", "--auto-approve"]);
    assert!(out.contains("3 destroyed"), "{out}");
    run.assert_clean();
    assert!(!run.set.exists(
        "cluster1",
        "secret",
        Some("istio-system"),
        "istio-remote-secret-cluster3"
    ));
    assert!(
        !run.set
            .exists("cluster3", "namespace", None, "istio-system"),
        "cluster3 keeps istio-system"
    );
    assert_gateway_intact(&run);

    // Drift, repaired: the annotation removed, the remote secret deleted,
    // istiod's Deployment deleted.
    run.set.kubectl_ok(
        "cluster2",
        &[
            "annotate",
            "ns",
            "istio-system",
            "topology.istio.io/controlPlaneClusters-",
        ],
    );
    run.set.kubectl_ok(
        "cluster1",
        &[
            "delete",
            "secret",
            "-n",
            "istio-system",
            "istio-remote-secret-cluster2",
        ],
    );
    run.set.kubectl_ok(
        "cluster1",
        &["delete", "deployment", "-n", "istio-system", "istiod"],
    );
    let o = run.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "drift not seen");
    let plan = String::from_utf8_lossy(&o.stdout).into_owned();
    for step in [
        "cluster2/prepare-namespace",
        "cluster2/attach",
        "cluster1/install-control-plane",
    ] {
        assert!(
            plan.contains(&format!("{step} (update)")),
            "{step} not updated:\n{plan}"
        );
    }
    run.ok(&["apply", "--auto-approve"]);
    run.assert_clean();
    assert_gateway_intact(&run);
    assert!(
        run.set
            .exists("cluster1", "deployment", Some("istio-system"), "istiod")
    );

    // Deep drift with the real istioctl's objects: the east-west gateway's
    // Deployment, istiod's Service and the remote's injector webhook
    // deleted, istiod scaled to zero. Each is seen, each comes back.
    run.set.kubectl_ok(
        "cluster1",
        &[
            "delete",
            "deployment",
            "-n",
            "istio-system",
            "istio-eastwestgateway",
        ],
    );
    run.set.kubectl_ok(
        "cluster1",
        &["delete", "service", "-n", "istio-system", "istiod"],
    );
    run.set.kubectl_ok(
        "cluster1",
        &[
            "scale",
            "deployment",
            "-n",
            "istio-system",
            "istiod",
            "--replicas=0",
        ],
    );
    let o = run.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "deep drift not seen");
    let plan = String::from_utf8_lossy(&o.stdout).into_owned();
    for seen in [
        "Deployment istio-system/istio-eastwestgateway missing",
        "Service istio-system/istiod missing",
        "Deployment istio-system/istiod scaled to 0 replicas",
    ] {
        assert!(plan.contains(seen), "{seen} not in the plan:\n{plan}");
    }
    run.ok(&["apply", "--auto-approve"]);
    run.assert_clean();
    assert_gateway_intact(&run);
    assert!(
        run.set
            .exists("cluster1", "service", Some("istio-system"), "istiod")
    );
    let replicas = run.set.kubectl_ok(
        "cluster1",
        &[
            "get",
            "deployment",
            "-n",
            "istio-system",
            "istiod",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(replicas.trim(), "1");

    // Destroy leaves nothing of mesh's in either cluster; a second apply works.
    run.ok(&["destroy", "--auto-approve"]);
    for c in ["cluster1", "cluster2"] {
        assert!(
            !run.set.exists(c, "namespace", None, "istio-system"),
            "{c} keeps istio-system"
        );
        let crds = run.set.kubectl_ok(c, &["get", "crd", "-o", "name"]);
        assert!(!crds.contains("istio.io"), "{c} keeps Istio CRDs: {crds}");
        for kind in [
            "mutatingwebhookconfigurations",
            "validatingwebhookconfigurations",
            "clusterroles",
        ] {
            let left = run.set.kubectl_ok(c, &["get", kind, "-o", "name"]);
            assert!(!left.contains("istio"), "{c} keeps {kind}: {left}");
        }
    }
    let out = run.ok(&["apply", "--auto-approve"]);
    assert!(out.contains("7 created"), "{out}");
    run.assert_clean();
    assert_gateway_intact(&run);
    run.set.check_alive();
}

/// Multi-primary on two networks with a remote on the second network, on
/// real clusters with the real istioctl: one root of trust plugged in each
/// primary before its control plane, network labels, east-west gateways
/// and cross-network gateways, and every control plane holding a remote
/// secret for every cluster not its own.
#[test]
fn multi_primary_multi_network_with_a_remote_on_real_clusters() {
    if !harness::in_private_network("multi_primary_multi_network_with_a_remote_on_real_clusters") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2", "cluster3"]);
    run.ok(&["ca", "init"]);
    let gateways = "[cluster.values.gateways.istio-ingressgateway]\ninjectionTemplate = \"\"\n\
                    [cluster.eastwest_values.gateways.istio-ingressgateway]\ninjectionTemplate = \"\"\n";
    let toml = format!(
        "[mesh]\nid = \"mesh1\"\n\n[istioctl]\npath = \"{}\"\nreadiness_timeout = \"120s\"\n\n\
         [trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n\n\
         [[cluster]]\nname = \"cluster1\"\ncontext = \"real-cluster1\"\nnetwork = \"network1\"\nrole = \"primary\"\n{gateways}\n\
         [[cluster]]\nname = \"cluster2\"\ncontext = \"real-cluster2\"\nnetwork = \"network2\"\nrole = \"primary\"\n{gateways}\n\
         [[cluster]]\nname = \"cluster3\"\ncontext = \"real-cluster3\"\nnetwork = \"network2\"\nrole = \"remote\"\nprimary = \"cluster1\"\n{gateways}",
        run.set.tools.join("istioctl").display()
    );
    run.write_mesh(&toml);
    let out = run.ok(&["apply", "--auto-approve"]);
    assert!(out.contains("Apply complete"), "{out}");
    run.assert_clean();
    let s = &run.set;
    let root = std::fs::read_to_string(tmp.path().join("certs/root-cert.pem")).unwrap();
    for (c, net) in [
        ("cluster1", "network1"),
        ("cluster2", "network2"),
        ("cluster3", "network2"),
    ] {
        let label = s.kubectl_ok(
            c,
            &[
                "get",
                "ns",
                "istio-system",
                "-o",
                "jsonpath={.metadata.labels.topology\\.istio\\.io/network}",
            ],
        );
        assert_eq!(label, net, "{c}");
        assert!(
            s.exists(c, "service", Some("istio-system"), "istio-eastwestgateway"),
            "{c}: no east-west gateway"
        );
    }
    for c in ["cluster1", "cluster2"] {
        let plugged = s.kubectl_ok(
            c,
            &[
                "get",
                "secret",
                "-n",
                "istio-system",
                "cacerts",
                "-o",
                "jsonpath={.data.root-cert\\.pem}",
            ],
        );
        use base64::Engine as _;
        let plugged = base64::engine::general_purpose::STANDARD
            .decode(plugged.trim())
            .unwrap();
        assert_eq!(
            String::from_utf8(plugged).unwrap().trim(),
            root.trim(),
            "{c}: cacerts of another root"
        );
        assert!(s.exists(
            c,
            "gateway.networking.istio.io",
            Some("istio-system"),
            "cross-network-gateway"
        ));
    }
    // Each control plane: a remote secret for every cluster not its own.
    for (primary, of) in [
        ("cluster1", "cluster2"),
        ("cluster1", "cluster3"),
        ("cluster2", "cluster1"),
        ("cluster2", "cluster3"),
    ] {
        assert!(
            s.exists(
                primary,
                "secret",
                Some("istio-system"),
                &format!("istio-remote-secret-{of}")
            ),
            "{primary} has no remote secret for {of}"
        );
    }
    // No key anywhere in the state.
    let state = std::fs::read_to_string(tmp.path().join("mesh.state.json")).unwrap();
    assert!(!state.contains("PRIVATE KEY"));

    // `mesh check` with a real istiod behind each primary's istiod pod:
    // every check passes, each istiod sees every other cluster.
    let _istiods = [
        s.istiod_behind_its_pod("cluster1", None),
        s.istiod_behind_its_pod("cluster2", None),
    ];
    // (Each istiod syncs the other clusters and publishes its root in its
    // own time: checked until all pass.)
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    let checks = loop {
        let (code, checks) = check_json(&run);
        if code == Some(0) && checks.iter().all(|c| c["status"] == "PASS") {
            break checks;
        }
        assert!(
            Instant::now() < deadline,
            "not every check passes: {checks:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    for (primary, other) in [
        ("cluster1", "cluster2"),
        ("cluster1", "cluster3"),
        ("cluster2", "cluster1"),
        ("cluster2", "cluster3"),
    ] {
        assert_eq!(
            status_of(&checks, primary, &format!("istiod sees {other}")),
            "PASS"
        );
        assert_eq!(status_of(&checks, primary, "published root"), "PASS");
    }
    // A cacerts of another root in cluster2: found, and apply restores it.
    run.ok(&["ca", "init", "other"]);
    let other = |f: &str| std::fs::read_to_string(tmp.path().join("other").join(f)).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let patch = serde_json::json!({"data": {
        "ca-cert.pem": b64.encode(other("root-cert.pem")),
        "ca-key.pem": b64.encode(other("root-key.pem")),
        "root-cert.pem": b64.encode(other("root-cert.pem")),
        "cert-chain.pem": b64.encode(other("root-cert.pem")),
    }});
    s.kubectl_ok(
        "cluster2",
        &[
            "-n",
            "istio-system",
            "patch",
            "secret",
            "cacerts",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ],
    );
    let (code, checks) = check_json(&run);
    assert_eq!(code, Some(2), "{checks:#?}");
    assert_eq!(
        status_of(&checks, "cluster2", "cacerts"),
        "FAIL",
        "{checks:#?}"
    );
    assert!(
        said(&checks, "cluster2", "cacerts").contains("mesh apply"),
        "{checks:#?}"
    );
    assert_eq!(
        status_of(&checks, "cluster1", "cacerts"),
        "PASS",
        "{checks:#?}"
    );
    run.ok(&["apply", "--auto-approve"]);
    let (_, checks) = check_json(&run);
    assert_eq!(
        status_of(&checks, "cluster2", "cacerts"),
        "PASS",
        "{checks:#?}"
    );

    run.ok(&["destroy", "--auto-approve"]);
    for c in ["cluster1", "cluster2", "cluster3"] {
        assert!(
            !s.exists(c, "namespace", None, "istio-system"),
            "{c} keeps istio-system"
        );
    }
}

/// The Kubernetes state backend on a real API server: the state in a
/// Secret, the lock a real Lease (a second apply is refused naming the
/// holder), and a user without RBAC told which verb on which resource it
/// lacks.
#[test]
fn the_kubernetes_state_backend_on_a_real_api_server() {
    if !harness::in_private_network("the_kubernetes_state_backend_on_a_real_api_server") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2"]);
    let toml = mesh_toml(&run.set.tools, &["cluster2"], "").replacen(
        "[[cluster]]",
        "[state]\nbackend = \"kubernetes\"\nnamespace = \"default\"\n\n[[cluster]]",
        1,
    );
    run.write_mesh(&toml);
    run.ok(&["apply", "--auto-approve"]);
    run.assert_clean();
    let s = &run.set;
    assert!(s.exists("cluster1", "secret", Some("default"), "mesh1"));
    assert!(
        !s.exists("cluster1", "lease", Some("default"), "mesh1-lock"),
        "the Lease was not released"
    );
    assert!(!tmp.path().join("mesh.state.json").exists());

    // A second apply while one holds the Lease: refused, naming the holder.
    run.write_mesh(&toml.replacen(
        "role = \"primary\"\n",
        "role = \"primary\"\n[cluster.values.global.logging]\nlevel = \"default:debug\"\n",
        1,
    ));
    let mut first = run
        .command(&s.kubeconfig, &["apply", "--auto-approve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !s.exists("cluster1", "lease", Some("default"), "mesh1-lock") {
        assert!(t0.elapsed().as_secs() < 30, "no Lease taken");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = run.mesh(&["plan"]);
    assert_eq!(o.status.code(), Some(1));
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        t.contains("locked") && t.contains(&format!("pid {}", first.id())),
        "{t}"
    );
    assert!(first.wait().unwrap().success());
    run.assert_clean();

    // A user without RBAC: the verb and the resource it lacks.
    let nobody = tmp.path().join("nobody.kubeconfig");
    let admin = std::fs::read_to_string(&s.kubeconfig).unwrap();
    let c1 = s.cluster("cluster1");
    std::fs::write(&nobody, admin.replace(&c1.token, &c1.nobody_token)).unwrap();
    let o = run
        .command(&nobody, &["plan", "--no-refresh"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let t = String::from_utf8_lossy(&o.stderr);
    assert!(
        t.contains("no permission to get leases.coordination.k8s.io in namespace default"),
        "{t}"
    );

    // Fencing with a real Lease: a holder stopped past its Lease (SIGSTOP)
    // loses it to a second apply; continued, it writes nothing more and
    // says so.
    run.write_mesh(&toml.replacen(
        "role = \"primary\"\n",
        "role = \"primary\"\n[cluster.values.global.logging]\nlevel = \"default:info\"\n",
        1,
    ));
    let first = run
        .command(&s.kubeconfig, &["apply", "--auto-approve"])
        .env("MESH_STATE_LEASE_SECONDS", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !s.exists("cluster1", "lease", Some("default"), "mesh1-lock") {
        assert!(t0.elapsed().as_secs() < 30, "no Lease taken");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = first.id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let o = run
        .command(
            &s.kubeconfig,
            &["apply", "--auto-approve", "--lock-timeout", "120s"],
        )
        .env("MESH_STATE_LEASE_SECONDS", "3")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let serial = || {
        let pulled = run.mesh(&["state", "pull"]).stdout;
        serde_json::from_slice::<Value>(&pulled).unwrap()["serial"].clone()
    };
    let before = serial();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let o = first.wait_with_output().unwrap();
    let t = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("no longer holds the lock of the state"), "{t}");
    assert_eq!(serial(), before, "the stopped apply wrote the state");
    run.assert_clean();

    // A state past the real API server's 1 MiB object limit (a fleet's):
    // kept in parts, read back whole, one Secret again once it shrinks.
    let pulled: Value = serde_json::from_slice(&run.mesh(&["state", "pull"]).stdout).unwrap();
    let mut big = pulled.clone();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: String = (0..(2 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let mut record = big["steps"]["cluster2/attach"].clone();
    record["input"] = Value::from(format!("# {noise}\n"));
    big["steps"]["cluster9/attach"] = record;
    let pushed = tmp.path().join("pushed.json");
    std::fs::write(&pushed, serde_json::to_vec(&big).unwrap()).unwrap();
    run.ok(&["state", "push", pushed.to_str().unwrap()]);
    let parts = s.kubectl_ok(
        "cluster1",
        &[
            "get",
            "secrets",
            "-n",
            "default",
            "-l",
            "mesh/state-part=true",
            "-o",
            "name",
        ],
    );
    assert_eq!(parts.lines().count(), 2, "{parts}");
    let back: Value = serde_json::from_slice(&run.mesh(&["state", "pull"]).stdout).unwrap();
    assert_eq!(back["steps"], big["steps"]);
    let mut shrunk = back.clone();
    shrunk["steps"]
        .as_object_mut()
        .unwrap()
        .remove("cluster9/attach");
    std::fs::write(&pushed, serde_json::to_vec(&shrunk).unwrap()).unwrap();
    run.ok(&["state", "push", pushed.to_str().unwrap()]);
    run.assert_clean();

    // The Lease deleted by hand (`kubectl delete lease`) during an apply:
    // the real API server only marks it (mesh's finalizer); a second apply
    // waits until the first has recorded its running steps and released
    // it, and then finishes the mesh.
    run.write_mesh(&toml.replacen(
        "role = \"primary\"\n",
        "role = \"primary\"\n[cluster.values.global.logging]\nlevel = \"default:warn\"\n",
        1,
    ));
    let first = run
        .command(&s.kubeconfig, &["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !s.exists("cluster1", "lease", Some("default"), "mesh1-lock") {
        assert!(t0.elapsed().as_secs() < 30, "no Lease taken");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    s.kubectl_ok(
        "cluster1",
        &[
            "delete",
            "lease",
            "mesh1-lock",
            "-n",
            "default",
            "--wait=false",
        ],
    );
    // Still there, marked, while its holder runs (the finalizer holds it).
    let mut first = first;
    if first.try_wait().unwrap().is_none() {
        let o = s.kubectl(
            "cluster1",
            &[
                "get",
                "lease",
                "mesh1-lock",
                "-n",
                "default",
                "-o",
                "jsonpath={.metadata.deletionTimestamp} {.metadata.finalizers}",
            ],
        );
        let marked = String::from_utf8_lossy(&o.stdout);
        // Gone only if its holder released it (and so has exited).
        assert!(
            marked.contains("mesh/lock-held") || first.try_wait().unwrap().is_some(),
            "the Lease went while its holder ran: {marked} {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let second = run
        .command(
            &s.kubeconfig,
            &["apply", "--auto-approve", "--lock-timeout", "120s"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let o = first.wait_with_output().unwrap();
    let t = String::from_utf8_lossy(&o.stderr);
    // The first apply may have been done before the delete reached it.
    if !o.status.success() {
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains("was deleted") && t.contains("No further step starts"),
            "{t}"
        );
    }
    let o = second.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        !s.exists("cluster1", "lease", Some("default"), "mesh1-lock"),
        "the Lease was left behind"
    );
    run.assert_clean();
}

/// `mesh import` of a mesh installed by hand on real clusters, with the real
/// istioctl and kubectl, as Istio's guide does it (with kwok's
/// `injectionTemplate = ""` for the gateways): every step adopted, the next
/// plan clean.
#[test]
fn import_adopts_a_mesh_installed_by_hand_with_the_real_istioctl() {
    if !harness::in_private_network("import_adopts_a_mesh_installed_by_hand_with_the_real_istioctl")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2"]);
    let s = &run.set;
    let testdata = |f: &str| {
        std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("providers/testdata")
                .join(f),
        )
        .unwrap()
    };
    let istioctl = |args: &[&str], stdin: &str| {
        use std::io::Write as _;
        let mut c = Command::new(s.tool("istioctl"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&s.kubeconfig)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "istioctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let no_injection =
        "\n    gateways:\n      istio-ingressgateway:\n        injectionTemplate: \"\"\n";
    // cluster1: the control plane (external istiod), the east-west gateway.
    let cp = format!(
        "{}    pilot:\n      env:\n        EXTERNAL_ISTIOD: true{no_injection}",
        testdata("cluster1.yaml")
    );
    istioctl(
        &["install", "-y", "-f", "-", "--context", "real-cluster1"],
        &cp,
    );
    let ew = testdata("eastwest-gateway-network1.yaml")
        .replace("injectionTemplate: gateway", "injectionTemplate: \"\"");
    istioctl(
        &["install", "-y", "-f", "-", "--context", "real-cluster1"],
        &ew,
    );
    s.kubectl_ok(
        "cluster1",
        &[
            "wait",
            "-n",
            "istio-system",
            "--for=jsonpath={.status.loadBalancer.ingress[0].ip}",
            "svc/istio-eastwestgateway",
            "--timeout=60s",
        ],
    );
    let address = s.kubectl_ok(
        "cluster1",
        &[
            "get",
            "svc",
            "-n",
            "istio-system",
            "istio-eastwestgateway",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ],
    );
    let expose = tmp.path().join("expose-istiod.yaml");
    std::fs::write(&expose, testdata("expose-istiod.yaml")).unwrap();
    s.kubectl_ok(
        "cluster1",
        &[
            "apply",
            "-n",
            "istio-system",
            "-f",
            expose.to_str().unwrap(),
        ],
    );
    // cluster2: the namespace annotated, the remote profile, its secret in cluster1.
    s.kubectl_ok("cluster2", &["create", "namespace", "istio-system"]);
    s.kubectl_ok(
        "cluster2",
        &[
            "annotate",
            "namespace",
            "istio-system",
            "topology.istio.io/controlPlaneClusters=cluster1",
        ],
    );
    let remote = testdata("cluster2.yaml").replace("${DISCOVERY_ADDRESS}", &address);
    istioctl(
        &["install", "-y", "-f", "-", "--context", "real-cluster2"],
        &remote,
    );
    let secret = istioctl(
        &[
            "create-remote-secret",
            "--context",
            "real-cluster2",
            "--name",
            "cluster2",
            "-n",
            "istio-system",
        ],
        "",
    );
    let secret_file = tmp.path().join("remote-secret.yaml");
    std::fs::write(&secret_file, secret).unwrap();
    s.kubectl_ok("cluster1", &["apply", "-f", secret_file.to_str().unwrap()]);

    run.write_mesh(&mesh_toml(&s.tools, &["cluster2"], ""));
    let out = run.ok(&["import"]);
    assert!(out.contains("Imported 7 of 7 steps"), "{out}");
    // It changed nothing: the Secret istioctl made is still the one there.
    assert!(s.exists(
        "cluster1",
        "secret",
        Some("istio-system"),
        "istio-remote-secret-cluster2"
    ));
    // Its token is the reader token every link made that way shares: the
    // next plan gives the link its own, and the shared one goes.
    let o = run.mesh(&["plan", "--detailed-exitcode"]);
    let plan = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(2), "{plan}");
    assert!(
        plan.contains("~ cluster2/attach (update)")
            && plan.contains("holds the reader token the links to `cluster2` share")
            && plan.contains("Plan: 0 to create, 1 to update, 0 to delete."),
        "{plan}"
    );
    // The shared token is revoked only once cluster1's istiod (a real
    // pilot-discovery behind its pod, reading the secret istioctl made)
    // has swapped its client for one with the link's own token.
    let istiod = s.istiod_behind_its_pod("cluster1", None);
    check_until(&run, "cluster1", "istiod sees cluster2", "PASS");
    let out = run.ok(&["-v", "apply", "--auto-approve"]);
    let took = out
        .find("every istiod in `cluster1` took the new remote secret of `cluster2`: pod ")
        .unwrap_or_else(|| panic!("{out}"));
    let revoked = out
        .find("revoked the reader token the links shared")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(took < revoked, "{out}");
    assert!(
        istiod
            .tail(4000)
            .contains("stopping previous cluster cluster2 after new cluster synced"),
        "{}",
        istiod.tail(80)
    );
    run.assert_clean();
    assert!(s.exists(
        "cluster2",
        "secret",
        Some("istio-system"),
        "istio-reader-token-cluster1"
    ));
    assert!(!s.exists(
        "cluster2",
        "secret",
        Some("istio-system"),
        "istio-reader-service-account-istio-remote-secret-token"
    ));
}

/// Every object's resourceVersion in `cluster`, but for what changes by
/// itself (Leases renewed, Events, kwok's Node heartbeats).
fn versions(run: &Run, cluster: &str) -> String {
    let kinds = run
        .set
        .kubectl_ok(cluster, &["api-resources", "--verbs=list", "-o", "name"]);
    let kinds: Vec<&str> = kinds
        .lines()
        .filter(|k| !k.starts_with("leases.") && !k.starts_with("events") && *k != "nodes")
        .collect();
    run.set.kubectl_ok(
        cluster,
        &[
            "get",
            &kinds.join(","),
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}={.metadata.resourceVersion}{\"\\n\"}{end}",
        ],
    )
}

/// Runs `mesh check --format json`: its exit code and checks.
fn check_json(run: &Run) -> (Option<i32>, Vec<Value>) {
    let o = run.mesh(&["check", "--format", "json"]);
    let checks: Vec<Value> = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&o.stderr)));
    (o.status.code(), checks)
}

/// The status of one check (it must be there).
fn status_of(checks: &[Value], cluster: &str, name: &str) -> String {
    checks
        .iter()
        .find(|c| c["cluster"] == cluster && c["check"] == name)
        .map(|c| c["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no {cluster} {name}: {checks:#?}"))
}

/// Runs `mesh check` until `cluster`'s check `name` has `status` (istiod
/// and the API servers take their time to see a change); its checks.
fn check_until(run: &Run, cluster: &str, name: &str, status: &str) -> (Option<i32>, Vec<Value>) {
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (code, checks) = check_json(run);
        if status_of(&checks, cluster, name) == status {
            return (code, checks);
        }
        assert!(
            Instant::now() < deadline,
            "{cluster} {name} never became {status}: {checks:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A check's detail and fix, for asserting what it says.
fn said(checks: &[Value], cluster: &str, name: &str) -> String {
    checks
        .iter()
        .find(|c| c["cluster"] == cluster && c["check"] == name)
        .map(|c| format!("{} | {}", c["detail"], c["fix"]))
        .unwrap_or_default()
}

/// `mesh check` on real clusters with a real istiod behind the primary's
/// istiod pod (a local pilot-discovery that kwok's port-forward reaches,
/// as `istioctl remote-clusters` reaches istiod in a cloud): on a
/// healthy seed every check passes, istiod's own view included, and the
/// check changes no object (every resourceVersion compared). Then each
/// fault is found by the right check, with the right fix, and repaired:
/// the reader's ClusterRoleBinding deleted (a real SubjectAccessReview),
/// the reader token's Secret deleted (a real TokenReview), a remote secret
/// pointing at another server, the remote secret removed behind mesh's
/// back (istiod no longer lists the cluster), the remote's route to istiod
/// changed by hand.
#[test]
fn mesh_check_on_real_clusters() {
    if !harness::in_private_network("mesh_check_on_real_clusters") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2"]);
    run.write_mesh(&mesh_toml(&run.set.tools, &["cluster2"], ""));
    run.ok(&["apply", "--auto-approve"]);
    let istiod = run.set.istiod_behind_its_pod("cluster1", None);
    let (code, checks) = check_until(&run, "cluster1", "istiod sees cluster2", "PASS");
    assert_eq!(code, Some(0), "{checks:#?}");
    assert!(
        checks.iter().all(|c| c["status"] == "PASS"),
        "not every check passes: {checks:#?}"
    );
    for (cluster, name) in [
        ("cluster1", "api server"),
        ("cluster1", "istiod"),
        ("cluster1", "east-west gateway"),
        ("cluster2", "istio-system"),
        ("cluster2", "remotePilotAddress"),
        ("cluster2", "link cluster2/attach: server and CA"),
        ("cluster2", "link cluster2/attach: token"),
        ("cluster2", "link cluster2/attach: permissions"),
    ] {
        assert_eq!(
            status_of(&checks, cluster, name),
            "PASS",
            "{cluster} {name}"
        );
    }

    // A check changes nothing: every object's resourceVersion, before and
    // after (taken once the clusters are still).
    let still = |c: &str| loop {
        let a = versions(&run, c);
        if versions(&run, c) == a {
            break a;
        }
    };
    for c in ["cluster1", "cluster2"] {
        let before = still(c);
        let (code, _) = check_json(&run);
        assert_eq!(code, Some(0));
        let after = versions(&run, c);
        let changed: Vec<&str> = after
            .lines()
            .filter(|l| !before.lines().any(|b| b == *l))
            .chain(before.lines().filter(|l| !after.lines().any(|a| a == *l)))
            .collect();
        assert!(
            changed.is_empty(),
            "mesh check changed objects in {c}: {changed:#?}"
        );
    }

    // The remote secret removed behind mesh's back: the real istiod stops
    // reading cluster2, and says so. (First: this build's istiod does not
    // pick a re-created secret up while it still swaps the cluster's
    // credentials after another change, docs/check.md.)
    run.set.kubectl_ok(
        "cluster1",
        &[
            "-n",
            "istio-system",
            "delete",
            "secret",
            "istio-remote-secret-cluster2",
        ],
    );
    let (code, checks) = check_until(&run, "cluster1", "istiod sees cluster2", "FAIL");
    assert_eq!(code, Some(2), "{checks:#?}");
    assert!(
        said(&checks, "cluster1", "istiod sees cluster2").contains("does not list cluster2"),
        "{checks:#?}"
    );
    run.ok(&["apply", "--auto-approve"]);
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while status_of(&check_json(&run).1, "cluster1", "istiod sees cluster2") != "PASS" {
        assert!(
            Instant::now() < deadline,
            "istiod did not read the re-created remote secret. Its log:\n{}",
            istiod.tail(80)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // The reader's binding deleted: the real RBAC denies it.
    run.set.kubectl_ok(
        "cluster2",
        &[
            "delete",
            "clusterrolebinding",
            "istio-reader-clusterrole-istio-system",
        ],
    );
    let (code, checks) = check_json(&run);
    assert_eq!(code, Some(2), "{checks:#?}");
    assert_eq!(
        status_of(&checks, "cluster2", "link cluster2/attach: permissions"),
        "FAIL"
    );
    assert_eq!(
        status_of(&checks, "cluster2", "link cluster2/attach: token"),
        "PASS"
    );
    // The reader token's Secret deleted: the real API server refuses it.
    run.set.kubectl_ok(
        "cluster2",
        &[
            "-n",
            "istio-system",
            "delete",
            "secret",
            "istio-reader-token-cluster1",
        ],
    );
    let (_, checks) = check_until(&run, "cluster2", "link cluster2/attach: token", "FAIL");
    assert!(said(&checks, "cluster2", "link cluster2/attach: token").contains("mesh apply"));
    run.ok(&["apply", "--auto-approve"]);
    let (code, checks) = check_until(&run, "cluster1", "istiod sees cluster2", "PASS");
    assert_eq!(code, Some(0), "{checks:#?}");

    // A remote secret pointing at another server.
    let kc = run.set.kubectl_ok(
        "cluster1",
        &[
            "-n",
            "istio-system",
            "get",
            "secret",
            "istio-remote-secret-cluster2",
            "-o",
            "jsonpath={.data.cluster2}",
        ],
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let kc = String::from_utf8(b64.decode(kc.trim()).unwrap()).unwrap();
    let server = run.set.cluster("cluster2").server();
    assert!(
        kc.contains(&server),
        "the remote secret's server is not cluster2's"
    );
    let other = b64.encode(kc.replace(&server, &run.set.cluster("cluster1").server()));
    run.set.kubectl_ok(
        "cluster1",
        &[
            "-n",
            "istio-system",
            "patch",
            "secret",
            "istio-remote-secret-cluster2",
            "--type=merge",
            "-p",
            &format!("{{\"data\":{{\"cluster2\":\"{other}\"}}}}"),
        ],
    );
    let (code, checks) = check_json(&run);
    assert_eq!(code, Some(2), "{checks:#?}");
    assert_eq!(
        status_of(&checks, "cluster2", "link cluster2/attach: server and CA"),
        "FAIL"
    );
    run.ok(&["apply", "--auto-approve"]);
    let (code, checks) = check_until(&run, "cluster1", "istiod sees cluster2", "PASS");
    assert_eq!(code, Some(0), "{checks:#?}");

    // The remote's route to istiod changed by hand (its EndpointSlice, as
    // Istio's chart wrote it from remotePilotAddress).
    run.set.kubectl_ok(
        "cluster2",
        &[
            "-n",
            "istio-system",
            "patch",
            "endpointslice",
            "istiod",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/endpoints/0/addresses/0","value":"192.0.2.77"}]"#,
        ],
    );
    let (code, checks) = check_json(&run);
    assert_eq!(code, Some(2), "{checks:#?}");
    assert_eq!(status_of(&checks, "cluster2", "remotePilotAddress"), "FAIL");
    assert!(
        said(&checks, "cluster2", "remotePilotAddress")
            .contains("mesh apply --replace cluster2/install-remote"),
        "{checks:#?}"
    );
    run.ok(&[
        "apply",
        "--auto-approve",
        "--replace",
        "cluster2/install-remote",
    ]);
    let (code, checks) = check_json(&run);
    assert_eq!(code, Some(0), "{checks:#?}");
}

/// The kubeconfig of `cluster`'s remote secret in `holder`, written to a
/// file (0600) of the run's folder, for kubectl to use as that link does;
/// and its token's sha256 (the token is never printed).
fn link_kubeconfig(run: &Run, holder: &str, cluster: &str, file: &str) -> (PathBuf, String) {
    use base64::Engine as _;
    let data = run.set.kubectl_ok(
        holder,
        &[
            "-n",
            "istio-system",
            "get",
            "secret",
            &format!("istio-remote-secret-{cluster}"),
            "-o",
            &format!("jsonpath={{.data.{cluster}}}"),
        ],
    );
    let kc = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .unwrap();
    let token = yaml(&String::from_utf8_lossy(&kc))
        .pointer("/users/0/user/token")
        .and_then(Value::as_str)
        .map(|t| providers::sha256_hex(t.as_bytes()))
        .expect("a token in the remote secret");
    let path = run.dir.join(file);
    std::fs::write(&path, &kc).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (path, token)
}

/// The sha256 of the token in Secret `name` of `cluster`'s istio-system.
fn token_sha(run: &Run, cluster: &str, name: &str) -> String {
    use base64::Engine as _;
    let data = run.set.kubectl_ok(
        cluster,
        &[
            "-n",
            "istio-system",
            "get",
            "secret",
            name,
            "-o",
            "jsonpath={.data.token}",
        ],
    );
    let token = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .unwrap();
    providers::sha256_hex(&token)
}

/// `kubectl auth whoami` with a link's kubeconfig against the real API
/// server: the user it authenticates as, or kubectl's error (which never
/// holds the token).
fn whoami(run: &Run, kubeconfig: &Path) -> Result<String, String> {
    let o = Command::new(run.set.tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// Waits (at most 60 s) until the real API server refuses the link's
/// token with 401 (the legacy token authenticator reads token Secrets
/// through its cache); the error kubectl printed.
fn refused_401(run: &Run, kubeconfig: &Path) -> String {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match whoami(run, kubeconfig) {
            Err(e) if e.contains("Unauthorized") => return e,
            other => assert!(
                Instant::now() < deadline,
                "the revoked token is still accepted: {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

const READER: &str = "system:serviceaccount:istio-system:istio-reader-service-account";

/// Per-link reader tokens on real clusters: two primaries and a remote of
/// the first, every link with its own token Secret in the cluster it reads
/// (the remote secret's token is that Secret's, the real API server
/// authenticates it as the reader). `--replace` of one link rotates its
/// token: the old one gets 401 from the real API server, the new one and
/// the other link into the same cluster keep working, and a real istiod
/// (pilot-discovery behind cluster2's istiod pod) swaps cluster3's client
/// for one with the new token once it has synced and still reports
/// cluster3 synced. Then the second
/// primary leaves the mesh: its links' tokens are revoked (401) while the
/// first primary's token for the same cluster, of the same ServiceAccount,
/// still works and `mesh check`'s TokenReview passes it.
#[test]
fn per_link_tokens_are_revoked_alone_on_real_clusters() {
    if !harness::in_private_network("per_link_tokens_are_revoked_alone_on_real_clusters") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2", "cluster3"]);
    run.ok(&["ca", "init"]);
    let gateways = "[cluster.values.gateways.istio-ingressgateway]\ninjectionTemplate = \"\"\n\
                    [cluster.eastwest_values.gateways.istio-ingressgateway]\ninjectionTemplate = \"\"\n";
    let second = format!(
        "[[cluster]]\nname = \"cluster2\"\ncontext = \"real-cluster2\"\nnetwork = \"network1\"\nrole = \"primary\"\n{gateways}\n"
    );
    let toml = format!(
        "[mesh]\nid = \"mesh1\"\n\n[istioctl]\npath = \"{}\"\nreadiness_timeout = \"120s\"\n\n\
         [trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n\n\
         [[cluster]]\nname = \"cluster1\"\ncontext = \"real-cluster1\"\nnetwork = \"network1\"\nrole = \"primary\"\n{gateways}\n\
         {second}\
         [[cluster]]\nname = \"cluster3\"\ncontext = \"real-cluster3\"\nnetwork = \"network1\"\nrole = \"remote\"\nprimary = \"cluster1\"\n{gateways}",
        run.set.tools.join("istioctl").display()
    );
    run.write_mesh(&toml);
    run.ok(&["apply", "--auto-approve"]);
    run.assert_clean();
    let s = &run.set;

    // Every link: its own token Secret, whose token the remote secret
    // holds and the real API server authenticates as the reader.
    let mut seen = std::collections::BTreeSet::new();
    for (holder, cluster) in [
        ("cluster1", "cluster2"),
        ("cluster1", "cluster3"),
        ("cluster2", "cluster1"),
        ("cluster2", "cluster3"),
    ] {
        let own = format!("istio-reader-token-{holder}");
        let (kc, held) = link_kubeconfig(
            &run,
            holder,
            cluster,
            &format!("{holder}-{cluster}.kubeconfig"),
        );
        assert_eq!(
            held,
            token_sha(&run, cluster, &own),
            "{cluster}'s secret in {holder}"
        );
        assert!(
            seen.insert(held),
            "{cluster}'s secret in {holder} shares a token"
        );
        assert_eq!(
            whoami(&run, &kc).as_deref(),
            Ok(READER),
            "{holder} → {cluster}"
        );
        assert!(!s.exists(
            cluster,
            "secret",
            Some("istio-system"),
            "istio-reader-service-account-istio-remote-secret-token"
        ));
    }

    // A real istiod (pilot-discovery) behind cluster2's istiod pod reads
    // cluster3 through the link about to be rotated.
    let istiod = s.istiod_behind_its_pod("cluster2", None);
    check_until(&run, "cluster2", "istiod sees cluster3", "PASS");

    // Rotation of one link: new token first, the remote secret replaced in
    // place, the old token revoked.
    let (old2, old2_sha) = link_kubeconfig(&run, "cluster2", "cluster3", "old-2-3.kubeconfig");
    let t0 = Instant::now();
    let out = run.ok(&[
        "-v",
        "apply",
        "--auto-approve",
        "--replace",
        "cluster3/attach@cluster2",
    ]);
    eprintln!(
        "rotation of cluster3/attach@cluster2: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // The old token was revoked only once the real istiod, asked through
    // its pod's log on the real API server (kwok serves pilot-discovery's
    // output there), had swapped its client for the new one.
    let took = out
        .find("every istiod in `cluster2` took the new remote secret of `cluster3`: pod ")
        .unwrap_or_else(|| panic!("{out}"));
    let revoked = out
        .find("revoked the link's previous token: deleted Secret istio-system/istio-reader-token-cluster2 in `cluster3`")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(took < revoked, "{out}");
    assert!(
        out[took..revoked].contains("swapped its client at"),
        "{out}"
    );
    assert!(
        istiod
            .tail(4000)
            .contains("stopping previous cluster cluster3 after new cluster synced"),
        "{}",
        istiod.tail(80)
    );
    let (new2, new2_sha) = link_kubeconfig(&run, "cluster2", "cluster3", "new-2-3.kubeconfig");
    assert_ne!(old2_sha, new2_sha);
    assert_eq!(
        new2_sha,
        token_sha(&run, "cluster3", "istio-reader-token-cluster2-2")
    );
    let t0 = Instant::now();
    let e = refused_401(&run, &old2);
    eprintln!(
        "the rotated-out token got 401 after {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        e.trim()
    );
    assert_eq!(whoami(&run, &new2).as_deref(), Ok(READER));
    let (via1, _) = link_kubeconfig(&run, "cluster1", "cluster3", "1-3.kubeconfig");
    assert_eq!(whoami(&run, &via1).as_deref(), Ok(READER));
    run.assert_clean();
    // istiod reads cluster3 with the new token, the old one refused.
    let (_, checks) = check_until(&run, "cluster2", "istiod sees cluster3", "PASS");
    eprintln!(
        "after the rotation: {}",
        said(&checks, "cluster2", "istiod sees cluster3")
    );

    // cluster2 leaves: its links' tokens in cluster1 and cluster3 are revoked.
    let (c1_via2, _) = link_kubeconfig(&run, "cluster2", "cluster1", "2-1.kubeconfig");
    run.write_mesh(&toml.replace(&second, ""));
    let out = run.ok(&["-v", "apply", "--auto-approve"]);
    assert!(
        out.contains("revoked the link's token: deleted Secret istio-system/istio-reader-token-cluster2-2 in `cluster3`"),
        "{out}"
    );
    for (kc, what) in [
        (&new2, "cluster2's token for cluster3"),
        (&c1_via2, "cluster2's token for cluster1"),
    ] {
        let e = refused_401(&run, kc);
        assert!(e.contains("Unauthorized"), "{what}: {e}");
    }
    assert!(!s.exists(
        "cluster3",
        "secret",
        Some("istio-system"),
        "istio-reader-token-cluster2-2"
    ));
    assert!(!s.exists(
        "cluster1",
        "secret",
        Some("istio-system"),
        "istio-reader-token-cluster2"
    ));
    // cluster1's link into cluster3, same ServiceAccount, still works.
    assert_eq!(whoami(&run, &via1).as_deref(), Ok(READER));
    let (_, checks) = check_json(&run);
    assert_eq!(
        status_of(&checks, "cluster3", "link cluster3/attach: token"),
        "PASS"
    );
    assert!(
        said(&checks, "cluster3", "link cluster3/attach: token")
            .contains("the link's own token, Secret istio-system/istio-reader-token-cluster1"),
        "{checks:#?}"
    );
    run.assert_clean();
}

/// The two real Istio builds the upgrade tests move between, as their
/// istioctl reports them (tests/realk8s/build.sh names each build after
/// its VERSION and commit date).
fn istio_versions(run: &Run) -> (String, String) {
    let version = |path: PathBuf| {
        let o = Command::new(path)
            .args(["version", "--remote=false"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    (
        version(run.set.tool("istio-old/istioctl")),
        version(run.set.tool("istioctl")),
    )
}

/// The mesh file of the upgrade tests: cluster1 primary, cluster2 its
/// remote on its network, cluster3 its remote on another network; `head`
/// is the [mesh] (and [[mesh.keep_revision]]) section, `istioctl` the
/// mesh's istioctl, `tail` what follows the clusters.
fn upgrade_toml(head: &str, istioctl: &Path, tail: &str) -> String {
    let gateways = "[cluster.values.gateways.istio-ingressgateway]\ninjectionTemplate = \"\"\n\
                    [cluster.eastwest_values.gateways.istio-ingressgateway]\ninjectionTemplate = \"\"\n";
    format!(
        "{head}\n\n[istioctl]\npath = \"{}\"\nreadiness_timeout = \"120s\"\n\n\
         [[cluster]]\nname = \"cluster1\"\ncontext = \"real-cluster1\"\nnetwork = \"network1\"\nrole = \"primary\"\n{gateways}\n\
         [[cluster]]\nname = \"cluster2\"\ncontext = \"real-cluster2\"\nnetwork = \"network1\"\nrole = \"remote\"\nprimary = \"cluster1\"\n{gateways}\n\
         [[cluster]]\nname = \"cluster3\"\ncontext = \"real-cluster3\"\nnetwork = \"network2\"\nrole = \"remote\"\nprimary = \"cluster1\"\n{gateways}\n{tail}",
        istioctl.display()
    )
}

/// Which revision each injection webhook of `cluster` serves:
/// `name → istio.io/rev`, from `kubectl get mutatingwebhookconfigurations -o yaml`.
fn webhooks(run: &Run, cluster: &str) -> std::collections::BTreeMap<String, String> {
    let list = yaml(&run.set.kubectl_ok(
        cluster,
        &["get", "mutatingwebhookconfigurations", "-o", "yaml"],
    ));
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            (
                w["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                w["metadata"]["labels"]["istio.io/rev"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The uid and `istio.io/rev` of cluster1's `istio-ingressgateway`
/// Deployment (the default profile's), empty when it is not there.
fn ingress_gateway(run: &Run) -> String {
    String::from_utf8_lossy(
        &run.set
            .kubectl(
                "cluster1",
                &[
                    "-n",
                    "istio-system",
                    "get",
                    "deployment",
                    "istio-ingressgateway",
                    "--ignore-not-found",
                    "-o",
                    "jsonpath={.metadata.uid} {.metadata.labels.istio\\.io/rev}",
                ],
            )
            .stdout,
    )
    .into_owned()
}

/// The east-west gateways' addresses, as recorded.
fn eastwest_addresses(run: &Run) -> Vec<Value> {
    let st = run.state();
    ["cluster1", "cluster3"]
        .iter()
        .map(|c| {
            let svc = run.set.kubectl_ok(
                c,
                &[
                    "-n",
                    "istio-system",
                    "get",
                    "service",
                    "istio-eastwestgateway",
                    "-o",
                    "jsonpath={.status.loadBalancer.ingress[0].ip}",
                ],
            );
            Value::from(svc)
        })
        .chain(std::iter::once(
            st["steps"]["cluster1/eastwest-address"]["outputs"]["address"].clone(),
        ))
        .collect()
}

/// `kubectl get --watch --output-watch-events` of one object: every event
/// the API server sent for it, from before a change until [`Watch::stop`].
struct Watch {
    child: std::process::Child,
    out: PathBuf,
}

impl Watch {
    /// Started, and returned once the watch has listed the object (its
    /// first event), so nothing after this is missed.
    fn start(
        set: &RealClusters,
        dir: &Path,
        cluster: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Watch {
        let out = dir.join(format!("watch-{cluster}-{kind}-{name}.txt"));
        let mut args = vec![
            "--kubeconfig".to_string(),
            set.kubeconfig.display().to_string(),
        ];
        args.extend(["--context".into(), format!("real-{cluster}")]);
        if let Some(ns) = namespace {
            args.extend(["-n".into(), ns.into()]);
        }
        args.extend(
            [
                "get",
                kind,
                name,
                "--watch",
                "--output-watch-events",
                "-o",
                "jsonpath={.type} {.object.metadata.uid}{\"\\n\"}",
            ]
            .map(String::from),
        );
        let child = Command::new(set.tool("kubectl"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let w = Watch { child, out };
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while w.events().is_empty() {
            assert!(
                Instant::now() < deadline,
                "no watch of {kind} {name} in {cluster}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        w
    }

    fn events(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, u)| (t.to_string(), u.to_string()))
            .collect()
    }

    fn stop(mut self) -> Vec<(String, String)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.events()
    }
}

/// Every cluster has both revisions' injectors, and the `default` tag on
/// the old revision (a canary's start, a rollback's end).
fn both_injectors_and_default_on_the_old(run: &Run) {
    for c in ["cluster1", "cluster2", "cluster3"] {
        let wh = webhooks(run, c);
        for (webhook, rev) in [
            ("istio-revision-tag-default", "default"),
            ("istio-sidecar-injector", "default"),
            ("istio-sidecar-injector-new", "new"),
        ] {
            assert_eq!(
                wh.get(webhook).map(String::as_str),
                Some(rev),
                "{c}: {wh:?}"
            );
        }
    }
}

/// A canary upgrade between two real Istio builds, with the real istioctl
/// of each, on 1 primary + 2 remotes (one on another network): install at
/// the older build; the newer one installed beside it as revision `new`
/// (both istiods, both remote profiles, both routes; every cluster's
/// `default` tag still on the old); a real pilot-discovery of the new
/// build syncs every remote through mesh's secrets; `default` moved to
/// `new` on every cluster; a rollback that never deletes the old istiod,
/// its Service or its injector (the API server's watch events), and
/// forward again; the old revision removed by its own istioctl.
/// After each apply the plan is clean and the east-west gateways keep
/// their addresses.
#[test]
fn a_canary_upgrade_between_two_real_istio_builds() {
    if !harness::in_private_network("a_canary_upgrade_between_two_real_istio_builds") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2", "cluster3"]);
    let (old, new) = istio_versions(&run);
    assert_ne!(old, new, "the two builds must say different versions");
    // The old build's istioctl from a path of the test's own, so that it
    // can go missing before the old revision's removal.
    let old_ctl = tmp.path().join("istio-old-istioctl");
    std::fs::copy(run.set.tool("istio-old/istioctl"), &old_ctl).unwrap();
    let new_ctl = run.set.tool("istioctl");

    // The mesh at the older build.
    run.write_mesh(&upgrade_toml(
        &format!("[mesh]\nid = \"mesh1\"\nistio_version = \"{old}\""),
        &old_ctl,
        "",
    ));
    run.ok(&["apply", "--auto-approve"]);
    run.assert_clean();
    let addresses = eastwest_addresses(&run);

    // The canary: `new` beside the old (kept by its own istioctl).
    let canary = |tag: &str| {
        upgrade_toml(
            &format!(
                "[mesh]\nid = \"mesh1\"\nrevision = \"new\"\nistio_version = \"{new}\"\n\n\
                 [[mesh.keep_revision]]\nname = \"default\"\nistio_version = \"{old}\"\nistioctl = \"{}\"",
                old_ctl.display()
            ),
            &new_ctl,
            &format!("[tags]\ndefault = \"{tag}\"\n"),
        )
    };
    run.write_mesh(&canary("default"));
    // A new istioctl for the mesh: a program no apply has run (the kept
    // revision's is the one recorded).
    let o = run.mesh(&["plan"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    run.ok(&["apply", "--auto-approve", "--allow", "new-binary"]);
    run.assert_clean();
    let s = &run.set;
    for d in ["istiod", "istiod-new"] {
        assert!(
            s.exists("cluster1", "deployment", Some("istio-system"), d),
            "no {d}"
        );
    }
    for vs in ["istiod-vs", "istiod-vs-new"] {
        assert!(
            s.exists("cluster1", "virtualservice", Some("istio-system"), vs),
            "no VirtualService {vs}"
        );
    }
    both_injectors_and_default_on_the_old(&run);
    assert_eq!(
        eastwest_addresses(&run),
        addresses,
        "an east-west gateway moved"
    );

    // A real istiod of the new build syncs every remote through mesh's
    // secrets, as `mesh check` sees it through a port-forward.
    let _istiod = s.istiod_behind_its_pod("cluster1", Some("new"));
    for remote in ["cluster2", "cluster3"] {
        check_until(&run, "cluster1", &format!("istiod sees {remote}"), "PASS");
    }

    // `default` moves to the new revision on every cluster.
    run.write_mesh(&canary("new"));
    run.ok(&["apply", "--auto-approve"]);
    run.assert_clean();
    for c in ["cluster1", "cluster2", "cluster3"] {
        let wh = webhooks(&run, c);
        assert_eq!(
            wh.get("istio-revision-tag-default").map(String::as_str),
            Some("new"),
            "{c}: {wh:?}"
        );
    }

    // A rollback: the old build is the mesh's again, `new` kept beside it,
    // `default` back on the old revision. The API server's own view, by
    // watches opened before the apply: the old istiod's Deployment, its
    // Service (what the tag's webhook calls) and its injector are never
    // deleted, only updated.
    let rolled_back = upgrade_toml(
        &format!(
            "[mesh]\nid = \"mesh1\"\nistio_version = \"{old}\"\n\n\
             [[mesh.keep_revision]]\nname = \"new\"\nistio_version = \"{new}\"\nistioctl = \"{}\"",
            new_ctl.display()
        ),
        &old_ctl,
        "[tags]\ndefault = \"default\"\n",
    );
    run.write_mesh(&rolled_back);
    let watched = [
        ("deployment", Some("istio-system"), "istiod"),
        ("service", Some("istio-system"), "istiod"),
        (
            "mutatingwebhookconfiguration",
            None,
            "istio-sidecar-injector",
        ),
    ];
    let watches: Vec<Watch> = watched
        .iter()
        .map(|(kind, ns, name)| Watch::start(s, tmp.path(), "cluster1", kind, *ns, name))
        .collect();
    let out = run.ok(&["apply", "--auto-approve"]);
    assert!(out.contains("(a rollback)"), "{out}");
    assert!(!out.contains("istioctl uninstall"), "{out}");
    run.assert_clean();
    for (w, (kind, _, name)) in watches.into_iter().zip(watched) {
        let events = w.stop();
        assert!(
            events.iter().all(|(t, _)| t == "ADDED" || t == "MODIFIED"),
            "{kind} {name} was deleted during the rollback: {events:?}"
        );
        let uids: std::collections::BTreeSet<&String> = events.iter().map(|(_, u)| u).collect();
        assert_eq!(uids.len(), 1, "{kind} {name} was made again: {events:?}");
    }
    both_injectors_and_default_on_the_old(&run);
    assert!(s.exists("cluster1", "deployment", Some("istio-system"), "istiod-new"));
    // …and forward again, the same hand-over the other way.
    run.write_mesh(&canary("new"));
    let out = run.ok(&["apply", "--auto-approve"]);
    assert!(!out.contains("istioctl uninstall"), "{out}");
    run.assert_clean();
    // The default profile's ingress gateway is the mesh revision's, and
    // the kept revision re-applied on its own (as a drift repair does)
    // does not take it back: else its uninstall below would delete it.
    let gateway = ingress_gateway(&run);
    assert!(gateway.ends_with(" new"), "{gateway:?}");
    run.ok(&[
        "apply",
        "--auto-approve",
        "--replace",
        "cluster1/install-control-plane#default",
    ]);
    run.assert_clean();
    assert_eq!(
        ingress_gateway(&run),
        gateway,
        "the kept revision took the ingress gateway"
    );
    for d in ["istiod", "istiod-new"] {
        assert!(
            s.exists("cluster1", "deployment", Some("istio-system"), d),
            "no {d}"
        );
    }

    // The old revision goes, by its own istioctl; `new` and the tag stay.
    run.write_mesh(&upgrade_toml(
        &format!("[mesh]\nid = \"mesh1\"\nrevision = \"new\"\nistio_version = \"{new}\""),
        &new_ctl,
        "[tags]\ndefault = \"new\"\n",
    ));
    // Not while its istioctl is missing: the advice names that istioctl,
    // nothing was sent, and the record is not tainted.
    let away = tmp.path().join("istio-old-istioctl.away");
    std::fs::rename(&old_ctl, &away).unwrap();
    let o = run.mesh(&["apply", "--auto-approve"]);
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("revision default was not uninstalled: the istioctl that installed it")
            && t.contains(&old_ctl.display().to_string())
            && !t.contains("[istioctl] path"),
        "{t}"
    );
    let state = run.state();
    for step in [
        "cluster1/install-control-plane#default",
        "cluster2/install-remote#default",
    ] {
        assert_eq!(state["steps"][step]["status"], "applied", "{step}: {t}");
    }
    std::fs::rename(&away, &old_ctl).unwrap();
    let out = run.ok(&["apply", "--auto-approve"]);
    assert!(
        out.contains("revision `default` is uninstalled from every cluster"),
        "{out}"
    );
    run.assert_clean();
    // istioctl deletes in the foreground: the Deployment goes once the
    // controllers have removed what it owns.
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while s.exists("cluster1", "deployment", Some("istio-system"), "istiod") {
        assert!(
            Instant::now() < deadline,
            "istiod of the old revision is still there"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(s.exists("cluster1", "deployment", Some("istio-system"), "istiod-new"));
    assert_eq!(
        ingress_gateway(&run),
        gateway,
        "removing the old revision removed or remade the ingress gateway"
    );
    for c in ["cluster1", "cluster2", "cluster3"] {
        let wh = webhooks(&run, c);
        assert!(!wh.contains_key("istio-sidecar-injector"), "{c}: {wh:?}");
        assert_eq!(
            wh.get("istio-revision-tag-default").map(String::as_str),
            Some("new"),
            "{c}: {wh:?}"
        );
    }
    assert_eq!(
        eastwest_addresses(&run),
        addresses,
        "an east-west gateway moved"
    );
    run.ok(&["destroy", "--auto-approve"]);
    for c in ["cluster1", "cluster2", "cluster3"] {
        assert!(
            !s.exists(c, "namespace", None, "istio-system"),
            "{c} keeps istio-system"
        );
    }
}

/// An in-place upgrade between the two real builds (one release line, so
/// within Istio's one-minor rule): the same revision, the newer istioctl;
/// the plan is clean after and istiod runs the newer build.
#[test]
fn an_in_place_upgrade_between_two_real_istio_builds() {
    if !harness::in_private_network("an_in_place_upgrade_between_two_real_istio_builds") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2"]);
    let (old, new) = istio_versions(&run);
    let toml = |version: &str, ctl: &str| {
        mesh_toml(&run.set.tools, &["cluster2"], "")
            .replacen(
                "id = \"mesh1\"",
                &format!("id = \"mesh1\"\nistio_version = \"{version}\""),
                1,
            )
            .replace(
                &format!("path = \"{}\"", run.set.tool("istioctl").display()),
                &format!("path = \"{}\"", run.set.tool(ctl).display()),
            )
    };
    run.write_mesh(&toml(&old, "istio-old/istioctl"));
    run.ok(&["apply", "--auto-approve"]);
    run.assert_clean();
    run.write_mesh(&toml(&new, "istioctl"));
    let plan = run.ok(&["plan", "--allow", "new-binary"]);
    assert!(plan.contains("cluster1/install-control-plane"), "{plan}");
    // The real `istioctl x precheck` ran, and the plan says what it found.
    assert!(plan.contains("`istioctl x precheck` on cluster1"), "{plan}");
    run.ok(&["apply", "--auto-approve", "--allow", "new-binary"]);
    run.assert_clean();
    let (_, checks) = check_json(&run);
    assert_eq!(
        status_of(&checks, "cluster1", "istiod"),
        "PASS",
        "{checks:#?}"
    );
    let image = run.set.kubectl_ok(
        "cluster1",
        &[
            "-n",
            "istio-system",
            "get",
            "deployment",
            "istiod",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert!(
        image.ends_with(&format!(":{new}")),
        "istiod runs {image}, not {new}"
    );
}

/// `openssl verify` of cacerts' intermediate in `cluster` against the
/// roots in `ca_file` (with `cert-chain.pem` as the untrusted chain), and
/// the number of certificates its `root-cert.pem` holds.
fn verify_cacerts(run: &Run, cluster: &str, ca_file: &Path) -> (Result<(), String>, usize) {
    let dir = run.dir.join(format!("cacerts-{cluster}"));
    std::fs::create_dir_all(&dir).unwrap();
    let files = run
        .set
        .secret_files(cluster, "istio-system", "cacerts")
        .expect("no cacerts");
    for f in ["ca-cert.pem", "cert-chain.pem", "root-cert.pem"] {
        std::fs::write(dir.join(f), &files[f]).unwrap();
    }
    let o = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(ca_file)
        .arg("-untrusted")
        .arg(dir.join("cert-chain.pem"))
        .arg(dir.join("ca-cert.pem"))
        .output()
        .expect("openssl (Debian's openssl package; .ci/run installs it)");
    let roots = std::fs::read_to_string(dir.join("root-cert.pem"))
        .unwrap()
        .matches("BEGIN CERTIFICATE")
        .count();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (
        if o.status.success() {
            Ok(())
        } else {
            Err(said)
        },
        roots,
    )
}

/// How many certificates the root istiod published in `cluster` holds (0
/// before it has published one).
fn published_roots(run: &Run, cluster: &str) -> usize {
    let o = run.set.kubectl(
        cluster,
        &[
            "-n",
            "istio-system",
            "get",
            "configmap",
            "istio-ca-root-cert",
            "-o",
            "jsonpath={.data.root-cert\\.pem}",
        ],
    );
    String::from_utf8_lossy(&o.stdout)
        .matches("BEGIN CERTIFICATE")
        .count()
}

/// A rotation phase's gate on the real tier: the plan waits, naming the
/// ingress gateways' proxies it could not read (kwok runs no Envoy), an
/// apply changes no `cacerts`, and with `--allow rotation-gate` the phase
/// is planned (the plan saying so) and applied.
fn passes_the_gate_only_when_allowed(run: &Run, phase: u8) {
    let cacerts = |c: &str| {
        run.set
            .secret_files(c, "istio-system", "cacerts")
            .expect("cacerts")
    };
    let out = run.ok(&["plan", "--detailed-exitcode"]);
    assert!(
        out.contains(&format!("root rotation, phase {phase} of 3"))
            && out.contains(") waits: phase")
            && out.contains("istio-ingressgateway")
            && out.contains("could not be read"),
        "{out}"
    );
    let before = [cacerts("cluster1"), cacerts("cluster2")];
    run.ok(&["apply", "--auto-approve"]);
    assert_eq!(
        [cacerts("cluster1"), cacerts("cluster2")],
        before,
        "a waiting phase changes nothing"
    );
    let out = run.ok(&["plan", "--allow", "rotation-gate"]);
    assert!(
        out.contains(&format!(
            "root rotation, phase {phase} of 3 is planned by `--allow rotation-gate`"
        )),
        "{out}"
    );
    run.ok(&["apply", "--auto-approve", "--allow", "rotation-gate"]);
}

/// A changed root in three phases on two real primaries, one apply each
/// (phases 2 and 3 past their gate, which cannot be satisfied here).
/// After each, each primary's `cacerts` is checked with `openssl verify`
/// against that phase's roots, and a real pilot-discovery (run with the
/// installed Deployment's `ISTIO_MULTIROOT_MESH`, cacerts mounted as the
/// kubelet mounts a Secret) takes the new files in place, with no
/// restart, and publishes the phase's roots.
#[test]
fn root_rotation_in_three_phases_on_two_real_primaries() {
    if !harness::in_private_network("root_rotation_in_three_phases_on_two_real_primaries") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2"]);
    run.ok(&["ca", "init"]);
    let gateways = "[cluster.values.gateways.istio-ingressgateway]\ninjectionTemplate = \"\"\n";
    let toml = |certs: &str| {
        format!(
            "[mesh]\nid = \"mesh1\"\n\n[istioctl]\npath = \"{}\"\nreadiness_timeout = \"120s\"\n\n\
             [trust]\nroot_cert = \"{certs}/root-cert.pem\"\nroot_key = \"{certs}/root-key.pem\"\n\n\
             [[cluster]]\nname = \"cluster1\"\ncontext = \"real-cluster1\"\nnetwork = \"network1\"\nrole = \"primary\"\n{gateways}\n\
             [[cluster]]\nname = \"cluster2\"\ncontext = \"real-cluster2\"\nnetwork = \"network1\"\nrole = \"primary\"\n{gateways}",
            run.set.tools.join("istioctl").display()
        )
    };
    run.write_mesh(&toml("certs"));
    run.ok(&["apply", "--auto-approve"]);
    run.assert_clean();
    let primaries = ["cluster1", "cluster2"];
    let (old, new) = (
        tmp.path().join("certs/root-cert.pem"),
        tmp.path().join("next/root-cert.pem"),
    );
    for c in primaries {
        assert_eq!(verify_cacerts(&run, c, &old), (Ok(()), 1), "{c}");
    }

    // Phase 1: both roots trusted, the intermediate kept (still of the old root).
    run.ok(&["ca", "init", "next"]);
    run.write_mesh(&toml("next"));
    let out = run.ok(&["plan"]);
    assert!(out.contains("root rotation, phase 1 of 3"), "{out}");
    run.ok(&["apply", "--auto-approve"]);
    let bundle = run.dir.join("bundle.pem");
    std::fs::write(
        &bundle,
        std::fs::read_to_string(&old).unwrap() + &std::fs::read_to_string(&new).unwrap(),
    )
    .unwrap();
    // istiod was rolled out with ISTIO_MULTIROOT_MESH in this phase: a real
    // one starts from it, signing with the kept intermediate.
    let istiods: Vec<_> = primaries
        .iter()
        .map(|c| run.set.istiod_behind_its_pod(c, None))
        .collect();
    for c in primaries {
        assert_eq!(verify_cacerts(&run, c, &bundle), (Ok(()), 2), "{c}");
        assert_eq!(
            verify_cacerts(&run, c, &old).0,
            Ok(()),
            "{c}: phase 1 keeps the old root's intermediate"
        );
        wait_for(
            || published_roots(&run, c) == 2,
            &format!("{c} publishes both roots"),
        );
    }
    let reloaded = "has detected the newly added intermediate CA and updated its key and certs";
    let refused = ["Failed to update new Plug-in CA certs", "not supported"];

    // Phase 2: a new intermediate of the new root; both roots still trusted.
    // Its gate first: the ingress gateways' proxies must show the new root,
    // and kwok's nodes run no Envoy to ask, so the phase waits, naming them,
    // and an apply changes nothing; `--allow rotation-gate` takes it.
    passes_the_gate_only_when_allowed(&run, 2);
    for (i, c) in primaries.iter().enumerate() {
        assert_eq!(verify_cacerts(&run, c, &bundle), (Ok(()), 2), "{c}");
        assert_eq!(
            verify_cacerts(&run, c, &new).0,
            Ok(()),
            "{c}: signed by the new root"
        );
        assert!(
            verify_cacerts(&run, c, &old).0.is_err(),
            "{c}: no longer by the old one"
        );
        // The real istiod takes the new intermediate in place.
        let before = istiods[i].tail(100_000).matches(reloaded).count();
        assert!(run.set.remount_cacerts(c, None));
        wait_for(
            || istiods[i].tail(100_000).matches(reloaded).count() > before,
            &format!("{c}'s istiod reloads the phase 2 intermediate"),
        );
        assert_eq!(published_roots(&run, c), 2, "{c}");
    }

    // Phase 3: the old root dropped, past its gate as phase 2.
    passes_the_gate_only_when_allowed(&run, 3);
    for (i, c) in primaries.iter().enumerate() {
        assert_eq!(verify_cacerts(&run, c, &new), (Ok(()), 1), "{c}");
        assert!(verify_cacerts(&run, c, &old).0.is_err(), "{c}");
        let before = istiods[i].tail(100_000).matches(reloaded).count();
        assert!(run.set.remount_cacerts(c, None));
        wait_for(
            || istiods[i].tail(100_000).matches(reloaded).count() > before,
            &format!("{c}'s istiod takes the new root alone"),
        );
        wait_for(
            || published_roots(&run, c) == 1,
            &format!("{c} publishes the new root alone"),
        );
        let log = istiods[i].tail(100_000);
        for r in refused {
            assert!(
                !log.contains(r),
                "{c}'s istiod refused a phase ({r}):\n{}",
                istiods[i].tail(60)
            );
        }
    }
    run.assert_clean();
    let (code, checks) = check_until(&run, "cluster2", "published root", "PASS");
    assert_eq!(code, Some(0), "{checks:#?}");
    assert_eq!(
        status_of(&checks, "cluster1", "cacerts"),
        "PASS",
        "{checks:#?}"
    );
}

/// Waits (bounded) until `done`, or fails naming `what`.
fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// Istio's ambient multicluster on two real clusters and two networks,
/// from `examples/ambient-multi-network.toml`, with the real istioctl: every
/// object of Istio's guide present (kwok runs the ztunnel and istio-cni
/// pods), a clean plan; then a real pilot-discovery per cluster, run with
/// the installed istiod's ambient settings, programs each east-west
/// Gateway with an address, sees the other cluster synced, and builds the
/// other network's gateway from that cluster's Gateway (its
/// `/debug/ambientz`); destroy leaves nothing, the Gateway API CRDs mesh
/// installed included.
#[test]
fn ambient_multi_network_on_two_real_clusters() {
    if !harness::in_private_network("ambient_multi_network_on_two_real_clusters") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = Run::start(tmp.path(), &["cluster1", "cluster2"]);
    run.ok(&["ca", "init"]);
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ambient-multi-network.toml"),
    )
    .unwrap();
    let toml = example
        .replace("context = \"kind-", "context = \"real-")
        .replace(
            "[trust]",
            &format!(
                "[istioctl]\npath = \"{}\"\nreadiness_timeout = \"120s\"\n\n[trust]",
                run.set.tools.join("istioctl").display()
            ),
        );
    run.write_mesh(&toml);
    let s = &run.set;
    // cluster2 has one Gateway API CRD already, installed by another tool
    // at the same release: mesh leaves it, and destroy leaves it too.
    let bundle = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("providers/assets/gateway-api-v1.6.0-standard.yaml"),
    )
    .unwrap();
    let theirs = bundle
        .split("\n---\n")
        .find(|d| d.contains("name: gatewayclasses.gateway.networking.k8s.io"))
        .unwrap();
    std::fs::write(
        tmp.path().join("theirs.yaml"),
        theirs.trim_start_matches("---\n"),
    )
    .unwrap();
    let theirs_file = tmp.path().join("theirs.yaml").display().to_string();
    s.kubectl_ok("cluster2", &["apply", "--server-side", "-f", &theirs_file]);
    let plan = run.ok(&["plan"]);
    assert!(plan.contains("gatewayclasses.gateway.networking.k8s.io is there already (v1.6.0 (standard channel)): left as found"), "{plan}");
    // A real istiod behind each cluster's istiod pod from the moment the
    // installer made its Deployment, as on a cluster: apply waits for it
    // to program each east-west Gateway.
    let log = tmp.path().join("apply.log");
    let mut apply = run
        .command(&s.kubeconfig, &["apply", "--auto-approve"])
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::create(tmp.path().join("apply.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let applied = || {
        format!(
            "{}{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(tmp.path().join("apply.err")).unwrap_or_default()
        )
    };
    let mut istiods = Vec::new();
    for c in ["cluster1", "cluster2"] {
        while !s.exists(c, "deployment", Some("istio-system"), "istiod") {
            if let Some(status) = apply.try_wait().unwrap() {
                panic!(
                    "apply ended ({status}) before {c}'s istiod was installed:\n{}",
                    applied()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        istiods.push(s.istiod_behind_its_pod(c, None));
    }
    let status = apply.wait().unwrap();
    let out = applied();
    assert!(status.success() && out.contains("Apply complete"), "{out}");
    for c in ["cluster1", "cluster2"] {
        assert!(
            out.contains(&format!("{c}/ambient-eastwest-gateway: created")),
            "{c}: {out}"
        );
    }
    run.assert_clean();
    let get = |c: &str, args: &[&str]| s.kubectl_ok(c, args);
    let managed = get(
        "cluster2",
        &[
            "get",
            "crd",
            "gatewayclasses.gateway.networking.k8s.io",
            "-o",
            "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
        ],
    );
    assert_eq!(managed, "", "mesh took over a CRD it found");
    for (c, other, net) in [
        ("cluster1", "cluster2", "network1"),
        ("cluster2", "cluster1", "network2"),
    ] {
        // Istio's ambient profile: istiod, and istio-cni and ztunnel Ready on the node.
        for ds in ["ztunnel", "istio-cni-node"] {
            let ready = get(
                c,
                &[
                    "-n",
                    "istio-system",
                    "get",
                    "daemonset",
                    ds,
                    "-o",
                    "jsonpath={.status.numberReady}",
                ],
            );
            assert_eq!(ready, "1", "{c}: {ds}");
        }
        let env = get(
            c,
            &[
                "-n",
                "istio-system",
                "get",
                "deployment",
                "istiod",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].env}",
            ],
        );
        assert!(
            env.contains(r#""name":"AMBIENT_ENABLE_MULTI_NETWORK","value":"true""#),
            "{c}: {env}"
        );
        assert!(
            env.contains(r#""name":"AMBIENT_ENABLE_BAGGAGE","value":"true""#),
            "{c}: {env}"
        );
        assert!(
            env.contains(r#""name":"PILOT_ENABLE_AMBIENT","value":"true""#),
            "{c}: {env}"
        );
        // The network label, the common root, the Gateway API CRDs mesh installed.
        let label = get(
            c,
            &[
                "get",
                "ns",
                "istio-system",
                "-o",
                "jsonpath={.metadata.labels.topology\\.istio\\.io/network}",
            ],
        );
        assert_eq!(label, net, "{c}");
        assert!(
            s.exists(c, "secret", Some("istio-system"), "cacerts"),
            "{c}"
        );
        let crd = get(
            c,
            &[
                "get",
                "crd",
                "gateways.gateway.networking.k8s.io",
                "-o",
                "jsonpath={.metadata.annotations.gateway\\.networking\\.k8s\\.io/bundle-version} {.metadata.labels.app\\.kubernetes\\.io/managed-by}",
            ],
        );
        assert_eq!(crd, "v1.6.0 mesh", "{c}");
        // The ambient east-west gateway, and no classic one.
        let class = get(
            c,
            &[
                "-n",
                "istio-system",
                "get",
                "gateways.gateway.networking.k8s.io",
                "istio-eastwestgateway",
                "-o",
                "jsonpath={.spec.gatewayClassName} {.spec.listeners[0].protocol} {.spec.listeners[0].port}",
            ],
        );
        assert_eq!(class, "istio-east-west HBONE 15008", "{c}");
        // Its Deployment is istiod's, made from the Gateway (labelled with
        // it), never an istioctl install's (an IstioOperator owns those).
        let owners = get(
            c,
            &[
                "-n",
                "istio-system",
                "get",
                "deployment",
                "istio-eastwestgateway",
                "-o",
                "jsonpath={.metadata.labels.gateway\\.networking\\.k8s\\.io/gateway-name} {.metadata.labels.install\\.operator\\.istio\\.io/owning-resource}",
            ],
        );
        assert_eq!(
            owners.trim(),
            "istio-eastwestgateway",
            "{c}: a classic east-west gateway"
        );
        // Remote secrets both ways.
        assert!(
            s.exists(
                c,
                "secret",
                Some("istio-system"),
                &format!("istio-remote-secret-{other}")
            ),
            "{c}"
        );
    }

    // It deploys each east-west gateway (a LoadBalancer Service, kwok's
    // address) and programs its Gateway with that address.
    let address = |c: &str| {
        let o = s.kubectl(c, &["-n", "istio-system", "get", "gateways.gateway.networking.k8s.io", "istio-eastwestgateway", "-o", "jsonpath={.status.conditions[?(@.type==\"Programmed\")].status} {.status.addresses[*].value}"]);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    // The address is the gateway's LoadBalancer Service's (kwok's, one per
    // cluster): waited for on the Gateway, which the other istiod reads.
    let lb_ip = |c: &str| {
        let o = s.kubectl(
            c,
            &[
                "-n",
                "istio-system",
                "get",
                "service",
                "istio-eastwestgateway",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip}",
            ],
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let mut addresses = Vec::new();
    for (i, c) in ["cluster1", "cluster2"].iter().enumerate() {
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        loop {
            // istiod lists the external addresses of every cluster's
            // Service of that name (Istio's gatewaycommon/context.go), its
            // own among them.
            let (a, ip) = (address(c), lb_ip(c));
            if !ip.is_empty() && a.starts_with("True ") && a.split(' ').skip(1).any(|x| x == ip) {
                addresses.push(ip);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{c}'s east-west Gateway never programmed with its Service's address {ip:?} (status: {a}); istiod:\n{}",
                istiods[i].tail(40)
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    assert_ne!(addresses[0], addresses[1], "one address for two gateways");
    // Each istiod reads the other cluster through its remote secret…
    check_until(&run, "cluster1", "istiod sees cluster2", "PASS");
    check_until(&run, "cluster2", "istiod sees cluster1", "PASS");
    // …and routes to the other network through that cluster's gateway.
    for (i, (net, addr)) in [("network2", &addresses[1]), ("network1", &addresses[0])]
        .iter()
        .enumerate()
    {
        let port = s.cluster(["cluster1", "cluster2"][i]).istiod_port;
        let want = format!("NetworkGateway/{net}/{addr}");
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let ambientz =
                harness::http_get("127.0.0.1", port, "/debug/ambientz").unwrap_or_default();
            if ambientz.contains(&want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "istiod of cluster{} has no {want}:\n{ambientz}",
                i + 1
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
    let (code, checks) = check_json(&run);
    assert_eq!(code, Some(0), "{checks:#?}");

    drop(istiods);
    run.ok(&["destroy", "--auto-approve"]);
    for c in ["cluster1", "cluster2"] {
        assert!(
            !s.exists(c, "namespace", None, "istio-system"),
            "{c} keeps istio-system"
        );
        assert!(
            !s.exists(c, "crd", None, "gateways.gateway.networking.k8s.io"),
            "{c} keeps the Gateway API CRDs"
        );
        assert!(
            !s.exists(c, "crd", None, "gateways.networking.istio.io"),
            "{c} keeps Istio's CRDs"
        );
    }
    assert!(
        !s.exists(
            "cluster1",
            "crd",
            None,
            "gatewayclasses.gateway.networking.k8s.io"
        ),
        "cluster1 keeps a CRD mesh installed"
    );
    assert!(
        s.exists(
            "cluster2",
            "crd",
            None,
            "gatewayclasses.gateway.networking.k8s.io"
        ),
        "destroy deleted a CRD mesh found"
    );
}
