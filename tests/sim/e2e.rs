//! End to end: the `mesh` binary against simulated clusters (kubesim), the
//! way a user runs it with `--sandbox DIR`. The test serves the clusters
//! itself (as `kubesim serve` would), so it can inject faults and look at
//! every object; mesh finds them running and uses them.

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kubesim::{Faults, LbMode};
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const THIRD: &str = "\n[[cluster]]\nname = \"cluster3\"\ncontext = \"kind-cluster3\"\nnetwork = \"network1\"\nrole = \"remote\"\nprimary = \"cluster1\"\n";
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2", "kind-cluster3"];

use crate::support::World;

/// What these tests read from the simulated clusters and the state.
trait Look {
    fn get_dyn(
        &self,
        context: &str,
        api_version: &str,
        kind: &str,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Option<DynamicObject>;
    fn namespace(&self, context: &str, name: &str) -> Option<Namespace>;
    fn secret(&self, context: &str, ns: &str, name: &str) -> Option<Secret>;
    fn state(&self) -> state::State;
}

impl Look for World {
    fn get_dyn(
        &self,
        context: &str,
        api_version: &str,
        kind: &str,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Option<DynamicObject> {
        let (g, v) = api_version.split_once('/').unwrap_or(("", api_version));
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client(context), ns, &ar);
        self.rt.block_on(api.get_opt(name)).unwrap()
    }

    fn namespace(&self, context: &str, name: &str) -> Option<Namespace> {
        let api: Api<Namespace> = Api::all(self.client(context));
        self.rt.block_on(api.get_opt(name)).unwrap()
    }

    fn secret(&self, context: &str, ns: &str, name: &str) -> Option<Secret> {
        let api: Api<Secret> = Api::namespaced(self.client(context), ns);
        self.rt.block_on(api.get_opt(name)).unwrap()
    }

    fn state(&self) -> state::State {
        state::read_unlocked(&self.state_path())
            .unwrap()
            .expect("a state")
    }
}

fn ok(o: &Output) -> String {
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "mesh failed ({}):\n{out}", o.status);
    out
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn context_of(inv: &Value) -> String {
    let argv: Vec<&str> = inv["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    argv.iter()
        .position(|a| *a == "--context")
        .map(|i| argv[i + 1].to_string())
        .unwrap_or_default()
}

#[test]
fn the_seed_procedure_end_to_end() {
    let w = World::new(SEED, CONTEXTS);
    let mut outputs = vec![ok(&w.mesh(&["apply", "--auto-approve"]))];
    assert!(
        outputs[0].contains("Apply complete: 7 created"),
        "{}",
        outputs[0]
    );

    // cluster2: istio-system annotated with its primary.
    let ns = w
        .namespace("kind-cluster2", "istio-system")
        .expect("istio-system in cluster2");
    assert_eq!(
        ns.metadata.annotations.unwrap()["topology.istio.io/controlPlaneClusters"],
        "cluster1"
    );
    // cluster1: the Gateway and VirtualService of expose-istiod.
    let gw = w
        .get_dyn(
            "kind-cluster1",
            "networking.istio.io/v1",
            "Gateway",
            "gateways",
            "istio-system",
            "istiod-gateway",
        )
        .expect("Gateway");
    assert_eq!(gw.data["spec"]["selector"]["istio"], "eastwestgateway");
    assert_eq!(gw.data["spec"]["servers"][1]["port"]["number"], 15017);
    let vs = w
        .get_dyn(
            "kind-cluster1",
            "networking.istio.io/v1",
            "VirtualService",
            "virtualservices",
            "istio-system",
            "istiod-vs",
        )
        .expect("VirtualService");
    assert_eq!(
        vs.data["spec"]["tls"][1]["route"][0]["destination"]["port"]["number"],
        443
    );
    // The remote secret: name, label, annotation, data key, and a kubeconfig
    // that reaches cluster2 with the reader token.
    let secret = w
        .secret(
            "kind-cluster1",
            "istio-system",
            "istio-remote-secret-cluster2",
        )
        .expect("remote secret");
    assert_eq!(
        secret.metadata.labels.as_ref().unwrap()["istio/multiCluster"],
        "true"
    );
    assert_eq!(
        secret.metadata.annotations.as_ref().unwrap()["networking.istio.io/cluster"],
        "cluster2"
    );
    let kubeconfig =
        String::from_utf8(secret.data.as_ref().unwrap()["cluster2"].0.clone()).unwrap();
    let cluster2 = w.set().cluster("kind-cluster2").unwrap();
    assert!(kubeconfig.contains(&cluster2.server()), "{kubeconfig}");
    let token_secret =
        w.rt.block_on(
            Api::<Secret>::namespaced(w.client("kind-cluster2"), "istio-system")
                .list(&Default::default()),
        )
        .unwrap()
        .items
        .into_iter()
        .find(|s| s.type_.as_deref() == Some("kubernetes.io/service-account-token"))
        .expect("the reader token secret");
    let token = String::from_utf8(token_secret.data.unwrap()["token"].0.clone()).unwrap();
    assert!(kubeconfig.contains(&token));
    let remote_kc: kube::config::Kubeconfig = serde_saphyr::from_str(&kubeconfig).unwrap();
    let reader = w.rt.block_on(async {
        let cfg = kube::Config::from_custom_kubeconfig(remote_kc, &Default::default())
            .await
            .unwrap();
        let api: Api<Namespace> = Api::all(kube::Client::try_from(cfg).unwrap());
        api.get("istio-system").await
    });
    assert!(
        reader.is_ok(),
        "the remote secret's kubeconfig reaches cluster2: {reader:?}"
    );

    // istioctl ran the seed's documents, in a valid order.
    let log = w.istioctl_log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|i| i["exit"] == 0));
    assert_eq!(context_of(&log[0]), "kind-cluster1");
    assert!(
        log[0]["stdin"]
            .as_str()
            .unwrap()
            .contains("EXTERNAL_ISTIOD: true")
    );
    assert!(
        log[1]["stdin"]
            .as_str()
            .unwrap()
            .contains("name: istio-eastwestgateway")
    );
    assert_eq!(context_of(&log[2]), "kind-cluster2");
    let address = w.state().steps["cluster1/eastwest-address"].outputs["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        log[2]["stdin"]
            .as_str()
            .unwrap()
            .contains(&format!("remotePilotAddress: {address}"))
            || log[2]["stdin"]
                .as_str()
                .unwrap()
                .contains(&format!("remotePilotAddress: \"{address}\""))
    );
    for inv in &log {
        let argv: Vec<&str> = inv["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(&argv[..4], ["install", "-y", "-f", "-"]);
    }

    // A second plan has no changes.
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    outputs.push(text(&o));
    let o = w.mesh(&["plan", "--out", "again.plan", "--format", "json"]);
    outputs.push(ok(&o));

    // And at least once through the real kubectl.
    let kubectl = Command::new("kubectl")
        .args([
            "--kubeconfig",
            w.set().kubeconfig_path().to_str().unwrap(),
            "--context",
            "kind-cluster2",
            "--cache-dir",
            w.path("kube-cache").to_str().unwrap(),
        ])
        .args([
            "get",
            "namespace",
            "istio-system",
            "-o",
            "jsonpath={.metadata.annotations.topology\\.istio\\.io/controlPlaneClusters}",
        ])
        .output()
        .expect("kubectl must be installed (.ci/run installs it)");
    assert_eq!(
        String::from_utf8_lossy(&kubectl.stdout),
        "cluster1",
        "{}",
        String::from_utf8_lossy(&kubectl.stderr)
    );

    // The token is nowhere but in the Secret.
    let mut places: Vec<(String, String)> = outputs
        .into_iter()
        .map(|o| ("output".to_string(), o))
        .collect();
    for f in [
        "sandbox/mesh.state.json",
        "sandbox/mesh.state.json.backup",
        "again.plan",
        "istioctl.log",
    ] {
        places.push((
            f.into(),
            std::fs::read_to_string(w.path(f)).unwrap_or_default(),
        ));
    }
    for (what, content) in places {
        assert!(
            !content.contains(&token),
            "the reader token leaked into {what}"
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(&token);
        assert!(
            !content.contains(&b64),
            "the reader token leaked (base64) into {what}"
        );
    }
}

#[test]
fn drift_is_planned_with_reasons_and_repaired() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let kubectl = |args: &[&str]| {
        let o = Command::new("kubectl")
            .args([
                "--kubeconfig",
                w.set().kubeconfig_path().to_str().unwrap(),
                "--cache-dir",
                w.path("kube-cache").to_str().unwrap(),
            ])
            .args(args)
            .output()
            .expect("kubectl must be installed (.ci/run installs it)");
        assert!(
            o.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    kubectl(&[
        "--context",
        "kind-cluster2",
        "annotate",
        "namespace",
        "istio-system",
        "topology.istio.io/controlPlaneClusters-",
    ]);
    kubectl(&[
        "--context",
        "kind-cluster1",
        "-n",
        "istio-system",
        "delete",
        "secret",
        "istio-remote-secret-cluster2",
    ]);
    let plan = ok(&w.mesh(&["plan"]));
    assert!(
        plan.contains("Plan: 0 to create, 2 to update, 0 to delete."),
        "{plan}"
    );
    assert!(
        plan.contains("drift: annotation topology.istio.io/controlPlaneClusters removed"),
        "{plan}"
    );
    assert!(
        plan.contains("drift: Secret istio-system/istio-remote-secret-cluster2 missing"),
        "{plan}"
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    assert!(
        w.secret(
            "kind-cluster1",
            "istio-system",
            "istio-remote-secret-cluster2"
        )
        .is_some()
    );
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_third_cluster_comes_and_goes_with_only_its_steps() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    std::fs::write(w.path("mesh.toml"), format!("{SEED}{THIRD}")).unwrap();
    let plan = ok(&w.mesh(&["plan"]));
    assert!(
        plan.contains("Plan: 3 to create, 0 to update, 0 to delete."),
        "{plan}"
    );
    for s in [
        "cluster3/prepare-namespace",
        "cluster3/install-remote",
        "cluster3/attach",
    ] {
        assert!(plan.contains(&format!("+ {s} (create)")), "{plan}");
    }
    ok(&w.mesh(&["apply", "--auto-approve"]));
    assert!(
        w.secret(
            "kind-cluster1",
            "istio-system",
            "istio-remote-secret-cluster3"
        )
        .is_some()
    );
    std::fs::write(w.path("mesh.toml"), SEED).unwrap();
    let plan = ok(&w.mesh(&["plan"]));
    assert!(
        plan.contains("Plan: 0 to create, 0 to update, 3 to delete."),
        "{plan}"
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    assert!(
        w.secret(
            "kind-cluster1",
            "istio-system",
            "istio-remote-secret-cluster3"
        )
        .is_none()
    );
    assert!(
        w.secret(
            "kind-cluster1",
            "istio-system",
            "istio-remote-secret-cluster2"
        )
        .is_some()
    );
    assert_eq!(w.state().steps.len(), 7);
}

#[test]
fn a_failed_step_is_tainted_and_the_next_apply_resumes() {
    let w = World::new(SEED, CONTEXTS);
    let o = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_FAIL_CONTEXT", "kind-cluster2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("failed: cluster2/install-remote"), "{out}");
    assert!(out.contains("not started (1): cluster2/attach"), "{out}");
    let st = w.state();
    assert_eq!(
        st.steps["cluster2/install-remote"].status,
        state::Status::Tainted
    );
    for s in [
        "cluster1/install-control-plane",
        "cluster1/install-eastwest-gateway",
        "cluster1/eastwest-address",
        "cluster1/expose-istiod",
        "cluster2/prepare-namespace",
    ] {
        assert_eq!(st.steps[s].status, state::Status::Applied, "{s}");
    }
    assert!(!st.steps.contains_key("cluster2/attach"));
    let before = w.istioctl_log().len();
    let out = ok(&w.mesh(&["apply", "--auto-approve"]));
    assert!(
        out.contains("0 created, 1 updated") || out.contains("1 created, 1 updated"),
        "{out}"
    );
    let log = w.istioctl_log();
    assert_eq!(log.len(), before + 1, "only the failed install runs again");
    assert_eq!(context_of(&log[before]), "kind-cluster2");
    assert_eq!(
        w.mesh(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
}

#[test]
fn apply_completes_through_api_faults() {
    let w = World::new(SEED, CONTEXTS);
    for c in ["kind-cluster1", "kind-cluster2"] {
        w.set().cluster(c).unwrap().set_faults(Faults {
            error_rate: 0.10,
            drop_watches: true,
            ..Default::default()
        });
    }
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let faults: usize = ["kind-cluster1", "kind-cluster2"]
        .iter()
        .map(|c| {
            w.set()
                .cluster(c)
                .unwrap()
                .requests()
                .iter()
                .filter(|r| r.verb == "fault")
                .count()
        })
        .sum();
    let total: usize = ["kind-cluster1", "kind-cluster2"]
        .iter()
        .map(|c| w.set().cluster(c).unwrap().requests().len())
        .sum();
    assert!(
        faults > 0,
        "faults were injected ({faults} of {total} requests)"
    );
    for c in ["kind-cluster1", "kind-cluster2"] {
        w.set().cluster(c).unwrap().set_faults(Faults::default());
    }
    assert_eq!(
        w.mesh(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
}

#[test]
fn kill_9_at_any_point_leaves_a_valid_state_and_apply_converges() {
    let w = World::new(SEED, CONTEXTS);
    for (i, ms) in [150u64, 400, 700, 1000].into_iter().enumerate() {
        let mut child = w
            .command(&["apply", "--auto-approve"])
            .env("KUBESIM_ISTIOCTL_DELAY_MS", "200")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap();
        child.wait().unwrap();
        if w.path("sandbox/mesh.state.json").exists() {
            state::read_unlocked(&w.path("sandbox/mesh.state.json"))
                .unwrap_or_else(|e| panic!("round {i}: {e}"));
        }
    }
    ok(&w.mesh(&["apply", "--auto-approve"]));
    assert_eq!(
        w.mesh(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
    assert!(
        w.secret(
            "kind-cluster1",
            "istio-system",
            "istio-remote-secret-cluster2"
        )
        .is_some()
    );
}

#[test]
fn a_second_apply_is_refused_or_waits_for_the_lock() {
    let w = World::new(SEED, CONTEXTS);
    let mut first = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "1500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = w.path("sandbox/mesh.state.json.lock");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&lock)
        .map(|s| s.is_empty())
        .unwrap_or(true)
    {
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(
        out.contains("locked") && out.contains(&first.id().to_string()) && out.contains("apply"),
        "{out}"
    );
    let o = w.mesh(&["plan", "--lock-timeout", "60s"]);
    ok(&o);
    assert!(first.wait().unwrap().success());
}

#[test]
fn destroy_removes_everything_in_reverse_order() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let out = ok(&w.mesh(&["destroy", "--auto-approve"]));
    assert!(out.contains("7 destroyed"), "{out}");
    assert!(w.state().steps.is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while w.namespace("kind-cluster1", "istio-system").is_some()
        || w.namespace("kind-cluster2", "istio-system").is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "istio-system is still there"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in ["kind-cluster1", "kind-cluster2"] {
        let store = w.set().cluster(c).unwrap();
        let store = store.store();
        for (g, p) in [
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
            ),
            ("rbac.authorization.k8s.io", "clusterroles"),
        ] {
            assert!(
                store.all(g, p).is_empty(),
                "{c}: {p} left: {:?}",
                store.all(g, p)
            );
        }
    }
    let log = w.istioctl_log();
    // `uninstall --purge` in each cluster; the east-west gateway is deleted
    // by its labels, never by `uninstall -f` (which takes the default tag's
    // webhooks with it).
    let uninstalls: Vec<&Value> = log.iter().filter(|i| i["argv"][0] == "uninstall").collect();
    assert_eq!(uninstalls.len(), 2, "{log:?}");
    assert!(
        uninstalls.iter().all(|i| i["argv"][2] == "--purge"),
        "{uninstalls:?}"
    );
}

#[test]
fn a_hostname_load_balancer_is_refused_with_the_eks_explanation() {
    let w = World::new(SEED, CONTEXTS);
    w.set()
        .cluster("kind-cluster1")
        .unwrap()
        .set_lb_mode(LbMode::Hostname);
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(out.contains("failed: cluster1/eastwest-address"), "{out}");
    assert!(
        out.contains("hostname") && out.contains("EKS") && out.contains("ExternalName"),
        "{out}"
    );
}

#[test]
fn a_saved_plan_applies_once_then_is_stale() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["plan", "--out", "seed.plan"]));
    let out = ok(&w.mesh(&["apply", "seed.plan"]));
    assert!(out.contains("Apply complete: 7 created"), "{out}");
    let o = w.mesh(&["apply", "seed.plan"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("stale plan"), "{}", text(&o));
}

#[test]
fn an_unknown_context_and_a_wrong_istio_version_are_clear_errors() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    // Point cluster2 at a context the kubeconfig does not have.
    std::fs::write(
        w.path("mesh.toml"),
        SEED.replace("context = \"kind-cluster2\"", "context = \"kind-nowhere\""),
    )
    .unwrap();
    // Outside the sandbox, with the sandbox's kubeconfig: the context is
    // looked up for real. (A state kept in the sandbox folder is refused
    // outside it, so the test copies it out, as if it were a real one.)
    let refused = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .current_dir(w.dir.path())
        .args(["--state", "sandbox/mesh.state.json", "plan"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("belongs to the sandbox")
            && text(&refused).contains("--sandbox sandbox"),
        "{}",
        text(&refused)
    );
    std::fs::copy(w.path("sandbox/mesh.state.json"), w.path("mesh.state.json")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .current_dir(w.dir.path())
        .args([
            "--kubeconfig",
            w.set().kubeconfig_path().to_str().unwrap(),
            "plan",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(
        out.contains("kind-nowhere") && out.contains("cluster2") && out.contains("--no-refresh"),
        "{out}"
    );

    std::fs::write(
        w.path("mesh.toml"),
        SEED.replace(
            "id = \"mesh1\"",
            "id = \"mesh1\"\nistio_version = \"1.99.0\"",
        ),
    )
    .unwrap();
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(
        out.contains("1.99.0") && out.contains("1.28.0") && out.contains("istio_version"),
        "{out}"
    );
}

#[test]
fn ctrl_c_lets_running_steps_finish_and_saves_the_state() {
    let w = World::new(SEED, CONTEXTS);
    let child = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // install-control-plane is running (its istioctl takes a second).
    std::thread::sleep(Duration::from_millis(400));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("Interrupted"), "{out}");
    let st = w.state();
    assert_eq!(
        st.steps["cluster1/install-control-plane"].status,
        state::Status::Applied,
        "the running step finished"
    );
    assert!(
        !st.steps.contains_key("cluster1/install-eastwest-gateway"),
        "nothing new started"
    );
    let out = ok(&w.mesh(&["apply", "--auto-approve"]));
    assert!(
        !out.contains("cluster1/install-control-plane: created"),
        "finished steps are not run again: {out}"
    );
    assert_eq!(
        w.mesh(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
}
