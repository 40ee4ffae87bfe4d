//! Regression tests for what an attack on mesh found (issue "Trustworthy on
//! real clusters"): each fails without its fix. On kubesim, the project's
//! simulator; the behaviours that need the real Istio are also in
//! tests/real/real_clusters.rs.

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kubesim::{ClusterSet, LbMode, Options};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];

use crate::support::{self, World, succeeded as ok, text};

fn secret(w: &World, context: &str, ns: &str, name: &str) -> Option<Secret> {
    let api: Api<Secret> = Api::namespaced(w.client(context), ns);
    w.rt.block_on(api.get_opt(name)).unwrap()
}

/// The seed with `extra` appended to cluster1's table.
fn seed_with_primary(extra: &str) -> String {
    SEED.replacen(
        "role = \"primary\"\n",
        &format!("role = \"primary\"\n{extra}"),
        1,
    )
}

/// The seed with `extra` appended to cluster2's table (the last one).
fn seed_with_remote(extra: &str) -> String {
    format!("{SEED}{extra}")
}

// 1. A control-plane re-install must not prune the east-west gateway.
#[test]
fn re_installing_the_control_plane_keeps_the_eastwest_gateway() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&seed_with_primary(
        "[cluster.values.global.logging]\nlevel = \"default:debug\"\n",
    ));
    let out = ok(&w.mesh(&["apply", "--auto-approve"]));
    assert!(
        out.contains("cluster1/install-control-plane: updated"),
        "{out}"
    );
    assert!(
        w.exists(
            "kind-cluster1",
            "",
            "services",
            "istio-system",
            "istio-eastwestgateway"
        ),
        "the simulated istioctl's prune removed the east-west gateway"
    );
    assert!(w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istio-eastwestgateway"
    ));
    w.assert_clean();
}

// 2. A re-created reader ServiceAccount leaves a dead token: attach notices.
#[test]
fn a_re_created_reader_service_account_makes_attach_drift_and_apply_renews_the_token() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let sas: Api<ServiceAccount> = Api::namespaced(w.client("kind-cluster2"), "istio-system");
    w.rt.block_on(sas.delete("istio-reader-service-account", &DeleteParams::default()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = text(&o);
    assert!(plan.contains("cluster2/attach (update)"), "{plan}");
    // Its token Secret went with the ServiceAccount (the token controller
    // deletes a deleted ServiceAccount's tokens): the link's token is revoked.
    assert!(
        plan.contains(
            "the link's token Secret istio-system/istio-reader-token-cluster1 in `cluster2` is gone (its token is revoked)"
        ),
        "{plan}"
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.assert_clean();
    // The token now in the primary authenticates with cluster2 again.
    let secret = secret(
        &w,
        "kind-cluster1",
        "istio-system",
        "istio-remote-secret-cluster2",
    )
    .unwrap();
    let kc = String::from_utf8(secret.data.unwrap()["cluster2"].0.clone()).unwrap();
    let kc: Value = serde_saphyr::from_str(&kc).unwrap();
    let token = kc.pointer("/users/0/user/token").unwrap().as_str().unwrap();
    assert!(w.cluster("kind-cluster2").authorised(token), "a dead token");
}

// 3. An Istio upgrade is a change of the install steps' inputs.
#[test]
fn changing_istio_version_plans_an_upgrade_of_every_install() {
    let with = |v: &str| {
        SEED.replacen(
            "id = \"mesh1\"\n",
            &format!("id = \"mesh1\"\nistio_version = \"{v}\"\n"),
            1,
        )
    };
    let w = World::new(&with("1.28"), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&with("1.29"));
    let o = w
        .command(&["plan", "--detailed-exitcode"])
        .env("KUBESIM_ISTIOCTL_VERSION", "1.29.2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = text(&o);
    for step in [
        "cluster1/install-control-plane",
        "cluster1/install-eastwest-gateway",
        "cluster2/install-remote",
    ] {
        assert!(
            plan.contains(&format!("{step} (update)")),
            "{step}:\n{plan}"
        );
    }
    assert!(plan.contains("mesh/istio-version: \"1.29\""), "{plan}");
    // The old istioctl is refused for the new version, saying what to do.
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("asks for Istio 1.29"), "{}", text(&o));
    let o = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_VERSION", "1.29.2")
        .output()
        .unwrap();
    ok(&o);
}

// 4. A revision change keeps the default route: `istiod-vs` (SNI `*`) is
// what default-revision sidecars and the remote's default injection webhook
// use (Istio issue 47552), and the old revision stays installed.
#[test]
fn a_revision_change_keeps_the_default_route_and_says_so() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&SEED.replacen(
        "id = \"mesh1\"\n",
        "id = \"mesh1\"\nrevision = \"canary\"\n",
        1,
    ));
    let plan = text(&w.mesh(&["plan"]));
    assert!(
        plan.contains("VirtualService istio-system/istiod-vs stays: it is the default route"),
        "{plan}"
    );
    assert!(!plan.contains("will delete"), "{plan}");
    assert!(
        plan.contains("Istio revision `default` stays installed"),
        "{plan}"
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let vs = |name: &str| {
        w.exists(
            "kind-cluster1",
            "networking.istio.io",
            "virtualservices",
            "istio-system",
            name,
        )
    };
    assert!(vs("istiod-vs"), "the default route was deleted");
    assert!(vs("istiod-vs-canary"));
    w.assert_clean();
}

// 7. istioctl gets an explicit readiness timeout, and mesh outlasts it.
#[test]
fn istioctl_install_gets_the_readiness_timeout_of_the_mesh_file() {
    let w = World::new(
        &SEED.replacen(
            "[[cluster]]",
            "[istioctl]\nreadiness_timeout = \"45s\"\n\n[[cluster]]",
            1,
        ),
        CONTEXTS,
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let installs: Vec<Value> = w
        .istioctl_log()
        .into_iter()
        .filter(|i| i["argv"][0] == "install")
        .collect();
    assert_eq!(installs.len(), 3);
    for i in installs {
        let argv: Vec<&str> = i["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let at = argv
            .iter()
            .position(|a| *a == "--readiness-timeout")
            .expect("--readiness-timeout");
        assert_eq!(argv[at + 1], "45s");
    }
}

// 8. A custom reader ServiceAccount is honoured: no drift, its token used.
#[test]
fn a_custom_reader_service_account_is_used_and_plans_clean() {
    let w = World::new(
        &seed_with_remote("[cluster.values.global.readerServiceAccount]\nname = \"my-reader\"\n"),
        CONTEXTS,
    );
    // The user creates it, as Istio's chart expects with a custom name.
    let client = w.client("kind-cluster2");
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "istio-system"}})).unwrap();
    let sa: ServiceAccount = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "my-reader", "namespace": "istio-system"}}),
    )
    .unwrap();
    w.rt.block_on(async {
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
        Api::<ServiceAccount>::namespaced(client, "istio-system")
            .create(&PostParams::default(), &sa)
            .await
            .unwrap();
    });
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.assert_clean();
    assert!(w.exists(
        "kind-cluster2",
        "",
        "secrets",
        "istio-system",
        "istio-reader-token-cluster1"
    ));
    let token = w
        .get(
            "kind-cluster2",
            "",
            "secrets",
            "istio-system",
            "istio-reader-token-cluster1",
        )
        .unwrap();
    assert_eq!(
        token["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "my-reader"
    );
    assert!(!w.exists(
        "kind-cluster2",
        "",
        "serviceaccounts",
        "istio-system",
        "istio-reader-service-account"
    ));
    // Refresh runs again without drift.
    w.assert_clean();
    // istio-system existed before mesh: destroy leaves it.
    ok(&w.mesh(&["destroy", "--auto-approve"]));
    assert!(w.exists("kind-cluster2", "", "namespaces", "", "istio-system"));
}

// 9. Destroy waits for istio-system to go; an apply right after works.
#[test]
fn destroy_returns_with_istio_system_gone_and_a_re_apply_works() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    ok(&w.mesh(&["destroy", "--auto-approve"]));
    for c in CONTEXTS {
        assert!(
            !w.exists(c, "", "namespaces", "", "istio-system"),
            "{c}: istio-system still there"
        );
    }
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.assert_clean();
}

// 10. Nobody reading the output (`mesh apply 2>&1 | head -5`) is no reason to die.
#[test]
fn a_closed_output_pipe_does_not_abort_an_apply() {
    let w = World::new(SEED, CONTEXTS);
    let mut child = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close both pipes before mesh writes its progress.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_ne!(status.code(), Some(101), "mesh panicked");
    assert!(status.success(), "{status}");
    let st = w.state_json();
    let steps = st["steps"].as_object().unwrap();
    assert_eq!(steps.len(), 7);
    assert!(steps.values().all(|s| s["status"] == "applied"), "{st}");
}

// 11. Whether mesh made istio-system is read from the cluster: a lost
// state write does not make destroy leave it behind. A plan with no state
// over the live mesh installs nothing over it: it is refused, pointing at
// `mesh import`, which records the mesh as it runs.
#[test]
fn a_lost_state_write_does_not_lose_ownership_of_istio_system() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    // The state write of the first apply is lost (a crash, a full disk).
    std::fs::remove_file(w.state_path()).unwrap();
    let runs = w.istioctl_log().len();
    let o = w.mesh(&["apply", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("cluster `cluster1` already runs a control plane the state does not record")
            && t.contains("Deployment istio-system/istiod of meshID `mesh1`")
            && t.contains("`mesh import`"),
        "{t}"
    );
    assert_eq!(
        w.istioctl_log().len(),
        runs,
        "a refused apply ran istioctl: {t}"
    );
    ok(&w.mesh(&["import"]));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let st = w.state_json();
    assert_eq!(
        st["steps"]["cluster2/prepare-namespace"]["outputs"]["created"],
        true
    );
    ok(&w.mesh(&["destroy", "--auto-approve"]));
    assert!(!w.exists("kind-cluster2", "", "namespaces", "", "istio-system"));
}

// 16. A damaged step record is a clear error naming the step, never a panic.
#[test]
fn a_damaged_step_record_is_a_clear_error() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let mut st = w.state_json();
    st["steps"]["cluster1/expose-istiod"]["input"] =
        Value::from("# context: kind-cluster1\n- just\n- a list\n");
    std::fs::write(w.state_path(), serde_json::to_string_pretty(&st).unwrap()).unwrap();
    for args in [&["plan"][..], &["destroy", "--auto-approve"][..]] {
        let o = w.mesh(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let t = text(&o);
        assert!(t.contains("cluster1/expose-istiod"), "{t}");
        assert!(t.contains("damaged"), "{t}");
        assert!(!t.contains("panicked"), "{t}");
    }
}

// 14. Context names become sandbox file names only safely encoded.
#[test]
fn a_hostile_context_name_stays_inside_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("work");
    std::fs::create_dir_all(&inner).unwrap();
    let toml = SEED
        .replace("kind-cluster1", "../../escaped")
        .replace("kind-cluster2", "a/b%2F..");
    std::fs::write(inner.join("mesh.toml"), toml).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mesh"))
        .current_dir(&inner)
        .env("NO_COLOR", "1")
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "0")
        .args(["--sandbox", "sb", "apply", "--auto-approve"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&o);
    let all: Vec<PathBuf> = walk(dir.path());
    for p in &all {
        assert!(
            p.starts_with(inner.join("sb")) || p == &inner.join("mesh.toml") || p == &inner,
            "written outside the sandbox: {}",
            p.display()
        );
    }
    assert!(
        inner.join("sb/clusters/..%2F..%2Fescaped.json").exists(),
        "{all:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

// 15. A load balancer "address" that is not an IP never reaches istioctl.
#[test]
fn a_load_balancer_address_that_is_not_an_ip_is_refused() {
    let w = World::new(SEED, CONTEXTS);
    w.cluster("kind-cluster1").set_lb_mode(LbMode::Ip);
    // Patch the address the simulated load balancer gave into garbage as soon as it appears.
    let o = {
        let mut child = w
            .command(&["apply", "--auto-approve"])
            .env("KUBESIM_ISTIOCTL_DELAY_MS", "300")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let svc_api: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(w.client("kind-cluster1"), "istio-system");
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1\u{1b}[2J; rm -rf /"}]}}});
        for _ in 0..200 {
            if w.rt
                .block_on(svc_api.get_opt("istio-eastwestgateway"))
                .unwrap()
                .is_some()
            {
                let _ = w.rt.block_on(svc_api.patch_status(
                    "istio-eastwestgateway",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                ));
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("not an IP address"), "{t}");
    assert!(
        !t.contains('\u{1b}'),
        "a raw control character reached the terminal: {t:?}"
    );
    let installs = w.istioctl_log();
    assert!(
        !installs
            .iter()
            .any(|i| i["stdin"].as_str().unwrap_or_default().contains("rm -rf")),
        "the bad address reached istioctl"
    );
}

#[allow(dead_code)]
fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

// 17. A dependency cycle in the state is an error naming the steps.
#[test]
fn a_dependency_cycle_in_the_state_is_named() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let mut st = w.state_json();
    st["steps"]["cluster2/install-remote"]["depends_on"] = serde_json::json!(["cluster2/attach"]);
    std::fs::write(w.state_path(), serde_json::to_string_pretty(&st).unwrap()).unwrap();
    // cluster2 leaves the mesh file: its steps are deleted in the recorded order.
    let solo = SEED
        .split("\n[[cluster]]\nname = \"cluster2\"")
        .next()
        .unwrap()
        .to_string();
    w.write_mesh(&solo);
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("cycle")
            && t.contains("cluster2/attach")
            && t.contains("cluster2/install-remote"),
        "{t}"
    );
}

// 17. The simulated istioctl dies with a killed mesh.
#[test]
fn a_killed_mesh_leaves_no_simulated_istioctl_running() {
    let w = World::new(SEED, CONTEXTS);
    let mut child = w
        .command(&["apply", "--auto-approve"])
        .env("KUBESIM_ISTIOCTL_DELAY_MS", "30000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mesh_pid = child.id();
    // Wait until istioctl runs.
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/status"))
                    .unwrap_or_default()
                    .lines()
                    .any(|l| {
                        l.split_whitespace().collect::<Vec<_>>() == ["PPid:", &pid.to_string()]
                    })
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let istioctl = loop {
        if let Some(&c) = children(mesh_pid).first() {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "istioctl never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while Path::new(&format!("/proc/{istioctl}")).exists()
        && !std::fs::read_to_string(format!("/proc/{istioctl}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the simulated istioctl {istioctl} outlived mesh"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// 18. mesh killed while it runs the sandbox itself: the simulated clusters
// and the state never disagree (the clusters are saved before each record).
#[test]
fn killing_mesh_mid_destroy_on_its_own_sandbox_keeps_clusters_and_state_in_agreement() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.toml"), SEED).unwrap();
    let mesh = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mesh"));
        c.current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("KUBESIM_ISTIOCTL_DELAY_MS", "50")
            .args(["--sandbox", "sb"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    // MESH_SOAK_ROUNDS=60 for a longer run (docs/reliability.md); kill
    // times spread over the whole destroy.
    let n: u64 = std::env::var("MESH_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut rounds = 0;
    for (i, ms) in (0..n).map(|i| 100 + (i * 173) % 1100).enumerate() {
        ok(&mesh(&["apply", "--auto-approve"]).output().unwrap());
        let mut child = mesh(&["destroy", "--auto-approve"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        child.wait().unwrap();
        // Refresh reads every recorded step back: none may be missing from
        // the clusters (which is what lost cluster writes look like).
        let o = mesh(&["plan"]).output().unwrap();
        let t = ok(&o);
        // (A step the killed destroy left tainted was being deleted: its
        // drift is shown beside the taint, and it runs again.)
        assert!(
            !t.lines()
                .any(|l| l.contains("drift:") && !l.contains("reason: tainted:")),
            "round {i} ({ms} ms): the state and the clusters disagree:\n{t}"
        );
        // And no step the state has forgotten may have left its object in
        // the clusters as saved (a delete done in memory, never saved).
        let st: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("sb/mesh.state.json")).unwrap(),
        )
        .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let set = rt
            .block_on(ClusterSet::open(
                &dir.path().join("sb"),
                CONTEXTS,
                Options::default(),
            ))
            .unwrap();
        for (step, ctx, group, plural, ns, name) in [
            (
                "cluster1/install-control-plane",
                "kind-cluster1",
                "apps",
                "deployments",
                "istio-system",
                "istiod",
            ),
            (
                "cluster1/install-eastwest-gateway",
                "kind-cluster1",
                "",
                "services",
                "istio-system",
                "istio-eastwestgateway",
            ),
            (
                "cluster1/expose-istiod",
                "kind-cluster1",
                "networking.istio.io",
                "virtualservices",
                "istio-system",
                "istiod-vs",
            ),
            (
                "cluster2/prepare-namespace",
                "kind-cluster2",
                "",
                "namespaces",
                "",
                "istio-system",
            ),
            (
                "cluster2/attach",
                "kind-cluster1",
                "",
                "secrets",
                "istio-system",
                "istio-remote-secret-cluster2",
            ),
        ] {
            if st["steps"].get(step).is_none() {
                let left = set
                    .cluster(ctx)
                    .unwrap()
                    .store()
                    .get_raw(group, plural, ns, name)
                    .is_some();
                assert!(
                    !left,
                    "round {i} ({ms} ms): {step} left the state but {plural} {ns}/{name} is still saved in {ctx}"
                );
            }
        }
        rt.block_on(set.shutdown());
        rounds += 1;
    }
    assert_eq!(rounds, n);
    eprintln!("{rounds} kill rounds: clusters and state agreed after each");
    ok(&mesh(&["destroy", "--auto-approve"]).output().unwrap());
}

// Hardening II, 7. Terminal escapes from files and clusters never reach the
// terminal raw: a lock record, a mesh file, istioctl's version output.

/// OSC (set the window title, ended by BEL) and a CSI clear-screen: what a
/// hostile lock file, Lease or istioctl would write to take over a terminal.
const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J";

/// stderr of a refused command: no raw ESC or BEL, but the escaped form.
fn escaped_stderr(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    for byte in [0x1b, 0x07] {
        assert!(
            !o.stderr.contains(&byte),
            "a raw {byte:#04x} reached the terminal: {:?}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("\\u{1b}"), "the escape is not shown: {err}");
    err
}

/// `mesh ARGS…` in `dir`, without a sandbox.
fn mesh_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mesh"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("KUBECONFIG")
        .env_remove("MESH_FILE")
        .env_remove("MESH_STATE")
        .env_remove("MESH_SANDBOX")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_hostile_lock_file_is_printed_escaped() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mesh.toml"), SEED).unwrap();
    let id = format!("0123{HOSTILE}");
    let record = state::LockInfo {
        id: id.clone(),
        // A newline would forge a line of its own in the message.
        who: format!("eve{HOSTILE}\nerror: forged line"),
        pid: std::process::id(),
        operation: format!("apply{HOSTILE}"),
        created: format!("2026-01-01T00:00:00Z{HOSTILE}"),
        path: format!("mesh.state.json{HOSTILE}"),
    };
    // Held by this test, as a live mesh would hold it.
    let mut lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("mesh.state.json.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    lock.write_all(serde_json::to_string(&record).unwrap().as_bytes())
        .unwrap();
    let err = escaped_stderr(&mesh_in(dir.path(), &["plan"]));
    assert!(err.contains("is locked by eve"), "{err}");
    assert!(!err.contains("\nerror: forged"), "{err}");
    // force-unlock names the holder too: with a wrong ID, and with its own.
    let err = escaped_stderr(&mesh_in(dir.path(), &["force-unlock", "--force", "nope"]));
    assert!(err.contains("has ID 0123"), "{err}");
    let err = escaped_stderr(&mesh_in(dir.path(), &["force-unlock", "--force", &id]));
    assert!(err.contains("held by a running process: eve"), "{err}");
    assert!(!err.contains("\nerror: forged"), "{err}");
}

#[test]
fn a_mesh_file_with_raw_escapes_is_reported_escaped() {
    let dir = tempfile::tempdir().unwrap();
    // Raw control characters are not TOML: the parse error quotes the line.
    let toml = SEED.replacen("[mesh]\n", &format!("[mesh]\n# {HOSTILE}\n"), 1);
    std::fs::write(dir.path().join("mesh.toml"), toml).unwrap();
    let err = escaped_stderr(&mesh_in(dir.path(), &["validate"]));
    assert!(err.contains("mesh.toml:"), "{err}");
    // An escape written as TOML's `\u001b` is a valid string, echoed back by
    // the error about it.
    let toml = SEED.replacen(
        "id = \"mesh1\"\n",
        "id = \"mesh1\\u001b]0;pwned\\u0007\"\n",
        1,
    );
    std::fs::write(dir.path().join("mesh.toml"), toml).unwrap();
    let err = escaped_stderr(&mesh_in(dir.path(), &["validate"]));
    assert!(err.contains("mesh id `mesh1\\u{1b}]0;pwned"), "{err}");
}

#[test]
fn an_istioctl_version_with_escapes_is_printed_escaped() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    // The JSON form (`\u001b` decodes to ESC), and the plain form an old
    // istioctl prints when it refuses `-o json`.
    let scripts = [
        (
            "json-istioctl",
            "#!/bin/sh\nprintf '{\"clientVersion\":{\"version\":\"1.2\\\\u001b]0;pwned\\\\u0007\"}}\\n'\n",
        ),
        (
            "plain-istioctl",
            "#!/bin/sh\n[ \"$3\" = \"-o\" ] && exit 1\nprintf 'client version: 1.2\\033]0;pwned\\007\\033[2J\\n'\n",
        ),
    ];
    for (name, script) in scripts {
        let program = dir.path().join(name);
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let toml = SEED.replacen(
            "id = \"mesh1\"\n",
            &format!(
                "id = \"mesh1\"\nistio_version = \"1.28\"\n\n[istioctl]\npath = \"{}\"\n",
                program.display()
            ),
            1,
        );
        std::fs::write(dir.path().join("mesh.toml"), toml).unwrap();
        let err = escaped_stderr(&mesh_in(dir.path(), &["apply", "--auto-approve"]));
        assert!(err.contains("says 1.2\\u{1b}]0;pwned"), "{name}: {err}");
    }
}

// Hardening II, 8. A resource type the cluster does not serve (the Istio
// CRDs removed with Istio by hand, or never installed) means its objects
// are absent: drift to repair, not an error.
#[test]
fn missing_istio_crds_are_drift_that_apply_repairs_and_import_reports() {
    let mesh =
        std::fs::read_to_string(support::repo().join("examples/primary-remote-multi-network.toml"))
            .unwrap();
    let w = World::new(&mesh, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.assert_clean();
    // Istio uninstalled by hand: `istioctl uninstall --purge` removes the
    // control plane, the gateways and the CRDs (and with them every
    // Gateway and VirtualService).
    for ctx in CONTEXTS {
        let kubeconfig = w.set().kubeconfig_path().display().to_string();
        let code = kubesim::istioctl::main(
            [
                "uninstall",
                "-y",
                "--purge",
                "--context",
                ctx,
                "--kubeconfig",
                &kubeconfig,
            ]
            .map(String::from)
            .to_vec(),
            std::io::empty(),
        );
        assert_eq!(code, 0, "the simulated uninstall failed in {ctx}");
    }
    assert!(
        w.cluster("kind-cluster1")
            .store()
            .find_type("networking.istio.io", "v1", "gateways")
            .is_none(),
        "the Gateway CRD is still served"
    );
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    let plan = text(&o);
    assert_eq!(o.status.code(), Some(2), "{plan}");
    assert!(!plan.contains("404"), "{plan}");
    for step in [
        "cluster1/install-control-plane",
        "cluster1/expose-istiod",
        "cluster1/expose-services",
    ] {
        assert!(
            plan.contains(&format!("{step} (update)")),
            "{step}:\n{plan}"
        );
    }
    assert!(
        plan.contains("Gateway istio-system/cross-network-gateway"),
        "{plan}"
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.assert_clean();
    assert!(w.exists(
        "kind-cluster1",
        "networking.istio.io",
        "gateways",
        "istio-system",
        "cross-network-gateway"
    ));

    // Import on clusters that never had Istio: every step differs, none fails.
    let fresh = World::new(&mesh, CONTEXTS);
    let o = fresh.mesh(&["import"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(!t.contains("404"), "{t}");
    assert!(t.contains("differs cluster1/expose-istiod"), "{t}");
    assert!(t.contains("differs cluster1/expose-services"), "{t}");
}

// Hardening II, 6: files the user names are read only when they are
// regular files, within a limit: a FIFO named as the mesh file, the state
// or a state to push is refused at once, not waited on forever, and
// /dev/zero is refused unread.
#[test]
fn a_fifo_or_dev_zero_named_as_a_file_is_refused_at_once() {
    let w = World::new(SEED, CONTEXTS);
    let fifo = w.path("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.display().to_string();
    for (args, what) in [
        (vec!["-f", fifo.as_str(), "validate"], "mesh file"),
        (vec!["--state", fifo.as_str(), "plan"], "state file"),
        (vec!["state", "push", fifo.as_str()], "state"),
        (vec!["-f", "/dev/zero", "validate"], "mesh file"),
        (vec!["--state", "/dev/zero", "plan"], "state file"),
    ] {
        let mut child = w
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                child.kill().unwrap();
                let _ = child.wait();
                panic!("mesh {args:?} did not return within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "mesh {args:?}:\n{t}");
        assert!(
            t.contains(what) && t.contains("not a regular file"),
            "mesh {args:?}:\n{t}"
        );
    }
}
