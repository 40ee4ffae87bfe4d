//! Root rotation on kubesim (the project's API simulator): a changed
//! `[trust]` root, and `[trust]` added to a running mesh, roll out in three
//! phases, one apply each, every primary's `cacerts` checked certificate by
//! certificate after each: phase 1 trusts both roots and keeps the
//! intermediate in place, phase 2 signs with a new intermediate of the new
//! root and keeps the same roots (the new one first), phase 3 drops the old root. A plan never jumps a phase, and one that
//! would (a new primary, a third root) is refused.

use serde_json::Value;

use crate::support::{World, golden, repo, text};

const NS: &str = "istio-system";
const TWO: &[&str] = &["kind-cluster1", "kind-cluster2"];
const THREE: &[&str] = &["kind-cluster1", "kind-cluster2", "kind-cluster3"];

fn b64(v: &Value) -> String {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_default())
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// A file of `cacerts` in `cluster`.
fn cacerts(w: &World, cluster: &str, file: &str) -> String {
    let s = w
        .get(&format!("kind-{cluster}"), "", "secrets", NS, "cacerts")
        .unwrap_or_else(|| panic!("no cacerts in {cluster}"));
    b64(&s["data"][file])
}

/// The sha256 of each certificate of a PEM bundle.
fn shas(pem: &str) -> Vec<String> {
    providers::ca::bundle(pem)
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

fn root_sha(dir: &str) -> String {
    let pem = std::fs::read_to_string(
        repo()
            .join("tests/fixtures")
            .join(dir)
            .join("root-cert.pem"),
    )
    .unwrap();
    providers::ca::inspect(&pem).unwrap().sha256
}

fn root_pem(dir: &str) -> String {
    std::fs::read_to_string(
        repo()
            .join("tests/fixtures")
            .join(dir)
            .join("root-cert.pem"),
    )
    .unwrap()
}

/// The second root beside the mesh file, as `certs-next/`, key 0600.
fn with_next_root(w: &World) {
    w.copy_root("trust-next", "certs-next");
}

fn stdout_of(w: &World, args: &[&str]) -> String {
    String::from_utf8_lossy(&w.mesh(args).stdout).into_owned()
}

fn apply(w: &World) -> String {
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    text(&o)
}

/// The roots istiod published in `cluster` (kubesim's istiod publishes
/// cacerts' `root-cert.pem` when it starts).
fn published(w: &World, cluster: &str) -> Vec<String> {
    let cm = w
        .get(
            &format!("kind-{cluster}"),
            "",
            "configmaps",
            NS,
            "istio-ca-root-cert",
        )
        .unwrap();
    shas(cm["data"]["root-cert.pem"].as_str().unwrap_or_default())
}

fn multi_root_on(w: &World, cluster: &str) -> bool {
    w.state_json()["steps"][format!("{cluster}/install-control-plane")]["input"]
        .as_str()
        .unwrap_or_default()
        .contains("ISTIO_MULTIROOT_MESH: true")
}

#[test]
fn a_changed_root_rolls_out_in_three_phases_one_apply_each() {
    let mesh = std::fs::read_to_string(repo().join("examples/multi-primary.toml")).unwrap();
    let w = World::new(&mesh, THREE).with_test_root();
    apply(&w);
    let (old, new) = (root_sha("trust"), root_sha("trust-next"));
    let primaries = ["cluster1", "cluster2"];
    let first: Vec<String> = primaries
        .iter()
        .map(|c| cacerts(&w, c, "ca-cert.pem"))
        .collect();

    with_next_root(&w);
    w.write_mesh(&mesh.replace("certs/", "certs-next/"));

    // Phase 1: both roots trusted, each intermediate kept.
    golden(
        "root-rotation-phase-1.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    let out = apply(&w);
    assert!(out.contains("root rotation, phase 1 of 3"), "{out}");
    for (i, c) in primaries.iter().enumerate() {
        assert_eq!(
            shas(&cacerts(&w, c, "root-cert.pem")),
            vec![old.clone(), new.clone()],
            "{c}"
        );
        assert_eq!(
            cacerts(&w, c, "ca-cert.pem"),
            first[i],
            "{c}: phase 1 keeps the intermediate"
        );
        providers::ca::verify_signed_by(&first[i], &root_pem("trust")).unwrap();
        assert!(
            multi_root_on(&w, c),
            "{c}: istiod gets ISTIO_MULTIROOT_MESH"
        );
        assert_eq!(published(&w, c), vec![old.clone(), new.clone()], "{c}");
    }
    let bundle = cacerts(&w, "cluster1", "root-cert.pem");
    // `mesh check` passes, with the rotation under way as warnings.
    let check = w.mesh(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    for said in [
        "WARN  cacerts",
        "a root rotation is under way",
        "phase 2 of 3",
    ] {
        assert!(text(&check).contains(said), "{said}: {}", text(&check));
    }

    // No jumping: a third root mid-rotation is refused, nothing applied.
    std::fs::create_dir_all(w.path("certs-third")).unwrap();
    let (cert, key) = providers::ca::new_root("a third root").unwrap();
    std::fs::write(w.path("certs-third/root-cert.pem"), cert).unwrap();
    let key_file = w.path("certs-third/root-key.pem");
    std::fs::write(&key_file, key.expose()).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    w.write_mesh(&mesh.replace("certs/", "certs-third/"));
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("Finish one rotation before starting the next"),
        "{}",
        text(&o)
    );
    assert_eq!(cacerts(&w, "cluster1", "root-cert.pem"), bundle);
    // …and so is a new primary: it could trust only the new root.
    let third = format!(
        "{}\n[[cluster]]\nname = \"cluster3\"\ncontext = \"kind-cluster3\"\nnetwork = \"network1\"\nrole = \"primary\"\n",
        mesh.replace("certs/", "certs-next/")
    );
    w.write_mesh(&third);
    let o = w.mesh(&["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("cluster3: a new primary while the mesh's root rotation is at phase 2"),
        "{}",
        text(&o)
    );
    w.write_mesh(&mesh.replace("certs/", "certs-next/"));

    // `--replace` skips the phases for that primary, and says what it breaks.
    let plan = stdout_of(&w, &["plan", "--replace", "cluster1/plug-ca"]);
    assert!(
        plan.contains("plug-ca replaced on cluster1")
            && plan.contains("while cluster2 still signs with the old one")
            && plan.contains("restarts or not"),
        "{plan}"
    );

    // Phase 2: new intermediates of the new root; the same roots, the new
    // one first (changed bytes, so istiod pushes them to the proxies).
    golden(
        "root-rotation-phase-2.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    let out = apply(&w);
    assert!(out.contains("root rotation, phase 2 of 3"), "{out}");
    let mut second = Vec::new();
    for (i, c) in primaries.iter().enumerate() {
        let ca = cacerts(&w, c, "ca-cert.pem");
        assert_ne!(ca, first[i], "{c}: phase 2 makes a new intermediate");
        providers::ca::verify_signed_by(&ca, &root_pem("trust-next")).unwrap();
        assert!(providers::ca::verify_signed_by(&ca, &root_pem("trust")).is_err());
        let roots = cacerts(&w, c, "root-cert.pem");
        assert_ne!(roots, bundle, "{c}: the bundle's bytes change");
        let (mut now, mut was) = (shas(&roots), shas(&bundle));
        assert_eq!(now[0], root_sha("trust-next"), "{c}: the new root first");
        now.sort();
        was.sort();
        assert_eq!(now, was, "{c}: the same roots");
        assert!(cacerts(&w, c, "cert-chain.pem").starts_with(&ca), "{c}");
        second.push(ca);
    }

    // Phase 3: the old root dropped, with an intermediate of the new root.
    golden(
        "root-rotation-phase-3.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    let out = apply(&w);
    assert!(out.contains("root rotation, phase 3 of 3"), "{out}");
    for (i, c) in primaries.iter().enumerate() {
        assert_eq!(
            shas(&cacerts(&w, c, "root-cert.pem")),
            vec![new.clone()],
            "{c}"
        );
        let ca = cacerts(&w, c, "ca-cert.pem");
        assert_ne!(ca, second[i], "{c}");
        providers::ca::verify_signed_by(&ca, &root_pem("trust-next")).unwrap();
        assert!(multi_root_on(&w, c), "{c}: ISTIO_MULTIROOT_MESH stays");
    }
    // Done: no phase left, nothing to change, and `mesh check` passes.
    w.assert_clean();
    let check = w.mesh(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(!text(&check).contains("root rotation"), "{}", text(&check));
    for c in primaries {
        assert_eq!(published(&w, c), vec![new.clone()], "{c}");
    }
}

#[test]
fn trust_added_to_a_running_mesh_keeps_istiods_own_root_until_phase_3() {
    let seed = std::fs::read_to_string(repo().join("examples/primary-remote.toml")).unwrap();
    let w = World::new(&seed, TWO).with_test_root();
    apply(&w);
    let own = w
        .get("kind-cluster1", "", "secrets", NS, "istio-ca-secret")
        .expect("istiod made its own CA");
    let own_cert = b64(&own["data"]["ca-cert.pem"]);
    let own_sha = providers::ca::inspect(&own_cert).unwrap().sha256;
    let root = root_sha("trust");

    w.write_mesh(&format!(
        "{seed}\n[trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n"
    ));
    let plan = stdout_of(&w, &["plan"]);
    assert!(plan.contains("root rotation, phase 1 of 3"), "{plan}");
    assert!(plan.contains("the root istiod signs with now"), "{plan}");
    apply(&w);
    // istiod's own CA goes on signing, now from cacerts, beside the new root.
    assert_eq!(cacerts(&w, "cluster1", "ca-cert.pem"), own_cert);
    assert_eq!(
        shas(&cacerts(&w, "cluster1", "root-cert.pem")),
        vec![own_sha.clone(), root.clone()]
    );

    let plan = stdout_of(&w, &["plan"]);
    assert!(plan.contains("root rotation, phase 2 of 3"), "{plan}");
    apply(&w);
    providers::ca::verify_signed_by(&cacerts(&w, "cluster1", "ca-cert.pem"), &root_pem("trust"))
        .unwrap();
    // The same roots, the new one first.
    assert_eq!(
        shas(&cacerts(&w, "cluster1", "root-cert.pem")),
        vec![root.clone(), own_sha]
    );

    let plan = stdout_of(&w, &["plan"]);
    assert!(plan.contains("root rotation, phase 3 of 3"), "{plan}");
    apply(&w);
    assert_eq!(shas(&cacerts(&w, "cluster1", "root-cert.pem")), vec![root]);
    w.assert_clean();
}

#[test]
fn a_mesh_that_is_not_rotating_plans_as_before() {
    // The plain stage renders exactly as plug-ca always did: a mesh with
    // [trust] and nothing to rotate shows no phase and no change.
    let mesh = std::fs::read_to_string(repo().join("examples/multi-primary.toml")).unwrap();
    let w = World::new(&mesh, TWO).with_test_root();
    apply(&w);
    w.assert_clean();
    let plan = stdout_of(&w, &["plan"]);
    assert!(!plan.contains("root rotation"), "{plan}");
    for c in ["cluster1", "cluster2"] {
        assert!(
            !multi_root_on(&w, c),
            "{c}: no rotation, no ISTIO_MULTIROOT_MESH"
        );
    }
}

#[test]
fn trust_added_to_a_mesh_with_a_cacerts_made_by_hand_keeps_that_ca_first() {
    let seed = std::fs::read_to_string(repo().join("examples/primary-remote.toml")).unwrap();
    let w = World::new(&seed, TWO).with_test_root();
    apply(&w);
    // A CA plugged by hand before mesh managed one (Istio's plug-in CA guide).
    let (their_root, their_key) = providers::ca::new_root("their root").unwrap();
    let theirs = providers::ca::intermediate(&their_root, &their_key, "cluster1", 365).unwrap();
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": NS},
        "data": {"ca-cert.pem": b64(&theirs.cert_pem), "ca-key.pem": b64(theirs.key_pem.expose()),
                 "root-cert.pem": b64(&theirs.root_pem), "cert-chain.pem": b64(&theirs.chain_pem)}});
    {
        let cluster = w.cluster("kind-cluster1");
        let mut store = cluster.store();
        let rt = store.find_type("", "v1", "secrets").unwrap();
        store.create(&rt, NS, secret, "kubectl").unwrap();
    }
    let their_sha = providers::ca::inspect(&their_root).unwrap().sha256;
    w.write_mesh(&format!(
        "{seed}\n[trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n"
    ));
    let plan = stdout_of(&w, &["plan"]);
    assert!(plan.contains("root rotation, phase 1 of 3"), "{plan}");
    assert!(
        plan.contains("istiod signs with it, so phase 1 keeps its intermediate"),
        "{plan}"
    );
    apply(&w);
    assert_eq!(
        cacerts(&w, "cluster1", "ca-cert.pem"),
        theirs.cert_pem,
        "their intermediate is kept"
    );
    assert_eq!(
        shas(&cacerts(&w, "cluster1", "root-cert.pem")),
        vec![their_sha, root_sha("trust")]
    );
    apply(&w);
    providers::ca::verify_signed_by(&cacerts(&w, "cluster1", "ca-cert.pem"), &root_pem("trust"))
        .unwrap();
    apply(&w);
    assert_eq!(
        shas(&cacerts(&w, "cluster1", "root-cert.pem")),
        vec![root_sha("trust")]
    );
    w.assert_clean();
}

/// A working `cacerts` in `cluster`: all four files, the key is the
/// certificate's, and the certificate is signed by a root of its bundle.
fn cacerts_work(w: &World, cluster: &str) -> Result<(), String> {
    let cert = cacerts(w, cluster, "ca-cert.pem");
    let key = providers::Sensitive::new(cacerts(w, cluster, "ca-key.pem"));
    let roots = cacerts(w, cluster, "root-cert.pem");
    if cacerts(w, cluster, "cert-chain.pem").is_empty() {
        return Err("no cert-chain.pem".into());
    }
    providers::ca::key_matches(&cert, &key)?;
    providers::ca::bundle(&roots)
        .iter()
        .find(|(_, pem)| providers::ca::verify_signed_by(&cert, pem).is_ok())
        .map(|_| ())
        .ok_or_else(|| "ca-cert.pem is signed by no root of root-cert.pem".to_string())
}

/// `kill -9` of `mesh apply` right after it wrote a primary's cacerts, in
/// every phase, rotating the root back and forth: each primary's cacerts
/// always works as istiod needs it, and a plain re-apply finishes the phase
/// (then the next, and so on) to a clean plan.
#[test]
fn killing_mesh_during_root_rotation_phases_never_leaves_a_broken_cacerts() {
    let rounds: usize = std::env::var("MESH_SOAK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6);
    let mesh = std::fs::read_to_string(repo().join("examples/multi-primary.toml")).unwrap();
    let w = World::new(&mesh, TWO).with_test_root();
    with_next_root(&w);
    apply(&w);
    let roots = ["certs/", "certs-next/"];
    let (mut to, mut phase, mut killed) = (1, 1, 0);
    w.write_mesh(&mesh.replace("certs/", roots[to]));
    for round in 0..rounds {
        let victim = ["kind-cluster1", "kind-cluster2"][round % 2];
        let c = w.cluster(victim);
        let from = c.requests().len();
        let hit = || {
            c.requests()[from..].iter().any(|r| {
                r.status < 300 && r.verb == "patch" && r.path.ends_with("/secrets/cacerts")
            })
        };
        if w.run_killed_when(&["apply", "--auto-approve"], hit) {
            killed += 1;
        }
        for cl in ["cluster1", "cluster2"] {
            cacerts_work(&w, cl)
                .unwrap_or_else(|e| panic!("round {round} (phase {phase}), {cl}: {e}"));
        }
        // A plain apply finishes the phase; the next plan names the next.
        let out = apply(&w);
        for cl in ["cluster1", "cluster2"] {
            cacerts_work(&w, cl)
                .unwrap_or_else(|e| panic!("round {round} after re-apply, {cl}: {e}"));
        }
        let plan = stdout_of(&w, &["plan"]);
        if phase < 3 {
            assert!(
                plan.contains(&format!("phase {} of 3", phase + 1)),
                "round {round}: {out}\n{plan}"
            );
            phase += 1;
        } else {
            // Done: this root alone; rotate back to the other.
            assert!(!plan.contains("root rotation"), "round {round}: {plan}");
            w.assert_clean();
            to = 1 - to;
            phase = 1;
            w.write_mesh(&mesh.replace("certs/", roots[to]));
        }
    }
    eprintln!(
        "{killed} of {rounds} phases killed right after a cacerts write; every cacerts worked"
    );
}

/// Hardening III, 1: a root swap (`--replace` of every primary's plug-ca
/// after a root change) killed between a primary's `cacerts` write and its
/// istiod's restart. Whether istiod still needs its restart is read from
/// what it loaded (the root it published), not from the file the killed
/// run wrote: the re-run restarts it, and every primary publishes the new
/// root.
#[test]
fn a_root_swap_killed_before_istiods_restart_is_finished_by_the_next_apply() {
    let mesh = std::fs::read_to_string(repo().join("examples/multi-primary.toml")).unwrap();
    let w = World::new(&mesh, TWO).with_test_root();
    with_next_root(&w);
    apply(&w);
    let old = root_sha("trust");
    let new = root_sha("trust-next");
    assert_eq!(published(&w, "cluster1"), vec![old.clone()]);
    w.write_mesh(&mesh.replace("certs/", "certs-next/"));
    let swap = [
        "apply",
        "--auto-approve",
        "--replace",
        "cluster1/plug-ca",
        "--replace",
        "cluster2/plug-ca",
    ];
    // Killed as soon as cluster1's cacerts holds the new root, before any
    // restart of its istiod: restarts are refused until the kill, so a
    // kill that comes late on a loaded machine finds the same cluster.
    let c = w.cluster("kind-cluster1");
    let from = c.requests().len();
    let restarted = || {
        c.requests()[from..]
            .iter()
            .any(|r| r.status < 300 && r.verb == "patch" && r.path.contains("/deployments/istiod"))
    };
    c.set_faults(kubesim::Faults {
        admission_denied: vec![("patch".into(), "deployments".into())],
        ..Default::default()
    });
    // Killed, or (a kill too late on a loaded machine) failed at the
    // refused restart: either way cacerts is written and istiod not
    // restarted, which the asserts below check.
    let _killed = w.run_killed_when(&swap, || {
        c.requests()[from..]
            .iter()
            .any(|r| r.status < 300 && r.verb == "patch" && r.path.ends_with("/secrets/cacerts"))
    });
    c.set_faults(kubesim::Faults::default());
    assert!(
        !restarted(),
        "killed too late: istiod was restarted already"
    );
    assert_eq!(
        shas(&cacerts(&w, "cluster1", "root-cert.pem")),
        vec![new.clone()]
    );
    assert_eq!(
        published(&w, "cluster1"),
        vec![old],
        "istiod loaded the new root by itself"
    );
    let o = w.mesh(&swap);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        restarted(),
        "the re-run did not restart cluster1's istiod: {out}"
    );
    for cl in ["cluster1", "cluster2"] {
        assert_eq!(published(&w, cl), vec![new.clone()], "{cl}: {out}");
    }
    w.assert_clean();
    let check = w.mesh(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
}

/// A pod with an injected proxy in `ns` of `context` (its namespace made
/// if missing), with `PROXY_CONFIG_XDS_AGENT=true` or without; returns
/// once the simulator's agent has started it (its certificate issued).
fn run_proxy(w: &World, context: &str, ns: &str, pod: &str, agent: bool) {
    let cluster = w.cluster(context);
    {
        let mut store = cluster.store();
        if store.get_raw("", "namespaces", "", ns).is_none() {
            let rt = store.find_type("", "v1", "namespaces").unwrap();
            let doc = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}});
            store.create(&rt, "", doc, "kubectl").unwrap();
        }
        let env = if agent {
            serde_json::json!([{"name": "PROXY_CONFIG_XDS_AGENT", "value": "true"}])
        } else {
            serde_json::json!([])
        };
        let doc = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": ns},
            "spec": {"containers": [{"name": "app", "image": "sleep"},
                                    {"name": "istio-proxy", "image": "proxyv2", "env": env}]}});
        let rt = store.find_type("", "v1", "pods").unwrap();
        store
            .create(&rt, ns, doc, "kube-controller-manager")
            .unwrap();
    }
    until(&format!("{pod} started"), || {
        holds(w, context, ns, pod).is_some()
    });
}

/// What the simulated proxy `pod` holds: its roots (sha256) and chain.
fn holds(w: &World, context: &str, ns: &str, pod: &str) -> Option<(Vec<String>, String)> {
    let p = w.get(context, "", "pods", ns, pod)?;
    if p.pointer("/status/phase") != Some(&Value::from("Running")) {
        return None;
    }
    let a = &p["metadata"]["annotations"];
    Some((
        shas(a["kubesim.dev/proxy-roots"].as_str()?),
        a["kubesim.dev/proxy-chain"].as_str()?.to_string(),
    ))
}

/// Waits for a condition the simulator's controllers bring about (they
/// run beside the test): checked every 20 ms, failing only after a
/// minute, so a loaded machine only makes it slower.
fn until(what: &str, cond: impl Fn() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(std::time::Instant::now() < end, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits until both agents' proxies (agent-1 in cluster1, agent-2 in
/// cluster2) hold what `cond` asks of their roots and chain.
fn agents_until(w: &World, what: &str, cond: impl Fn(&(Vec<String>, String)) -> bool) {
    until(&format!("the agents {what}"), || {
        [("kind-cluster1", "agent-1"), ("kind-cluster2", "agent-2")]
            .iter()
            .all(|(c, p)| holds(w, c, "sample", p).is_some_and(|h| cond(&h)))
    });
}

/// A plan that waits at the gate: no changes (exit 0 under
/// --detailed-exitcode), saying `says`.
fn plan_waits(w: &World, says: &str) {
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains(says), "{says}: {}", text(&o));
}

fn restart_proxy(w: &World, context: &str, ns: &str, old: &str, new: &str, agent: bool) {
    {
        let cluster = w.cluster(context);
        let mut store = cluster.store();
        let rt = store.find_type("", "v1", "pods").unwrap();
        store.delete(&rt, ns, old).unwrap();
    }
    run_proxy(w, context, ns, new, agent);
}

/// Issue 27, item 1: a rotation's phase is planned only when every proxy
/// shows the phase before took effect, read from each Envoy as `istioctl
/// proxy-config secret` reads it. Until then the plan holds every
/// `cacerts` as it is (no changes, exit 0 under --detailed-exitcode),
/// names what is outstanding by cluster and namespace, and `mesh check`
/// says the same; `--allow rotation-gate` plans the phase anyway and the
/// plan records it. Proxies with PROXY_CONFIG_XDS_AGENT take each phase
/// in place; the others only when restarted.
#[test]
fn a_rotation_phase_waits_until_every_proxy_shows_the_phase_before() {
    let mesh = std::fs::read_to_string(repo().join("examples/multi-primary.toml")).unwrap();
    let w = World::new(&mesh, TWO).with_test_root();
    apply(&w);
    run_proxy(&w, "kind-cluster1", "sample", "agent-1", true);
    run_proxy(&w, "kind-cluster1", "sample", "plain-1", false);
    run_proxy(&w, "kind-cluster2", "sample", "agent-2", true);
    let new = root_sha("trust-next");
    with_next_root(&w);
    w.write_mesh(&mesh.replace("certs/", "certs-next/"));

    // Phase 1 waits for nothing; it installs the agent's setting and
    // names the proxy that lacks it.
    let plan = stdout_of(&w, &["plan"]);
    assert!(
        plan.contains("cluster1, namespace sample: 1 of 2 proxies: plain-1"),
        "{plan}"
    );
    apply(&w);
    let install = w.state_json()["steps"]["cluster1/install-control-plane"]["input"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        install.contains("PROXY_CONFIG_XDS_AGENT: 'true'")
            || install.contains("PROXY_CONFIG_XDS_AGENT: \"true\""),
        "{install}"
    );
    agents_until(&w, "take the new bundle", |(roots, _)| roots.contains(&new));
    let (plain_roots, _) = holds(&w, "kind-cluster1", "sample", "plain-1").unwrap();
    assert!(
        !plain_roots.contains(&new),
        "without the agent, a proxy keeps its roots"
    );

    // Phase 2 waits for plain-1: nothing changes, however often applied.
    let bundle = cacerts(&w, "cluster1", "root-cert.pem");
    golden(
        "root-rotation-waiting.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    plan_waits(
        &w,
        "cluster1, namespace sample: 1 of 2 proxies do not trust the new root yet: plain-1",
    );
    apply(&w);
    apply(&w);
    assert_eq!(cacerts(&w, "cluster1", "root-cert.pem"), bundle);
    assert_eq!(cacerts(&w, "cluster2", "root-cert.pem"), bundle);
    let check = w.mesh(&["check"]);
    let said = text(&check);
    assert!(
        said.contains("plain-1") && said.contains("rotation gate"),
        "{said}"
    );
    let json: Value =
        serde_json::from_slice(&w.mesh(&["check", "--format", "json"]).stdout).unwrap();
    let gates: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check"] == "rotation gate")
        .map(|c| {
            (
                c["cluster"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        gates,
        [
            ("cluster1".into(), "WARN".into()),
            ("cluster2".into(), "PASS".into())
        ]
    );

    // `--allow rotation-gate` plans phase 2 and records why it was needed.
    let o = w.mesh(&["plan", "--allow", "rotation-gate", "--format", "json"]);
    assert!(o.status.success(), "{}", text(&o));
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let overrides: Vec<&Value> = plan["policy"]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["rule"] == "rotation-gate")
        .collect();
    assert!(
        overrides.len() == 1
            && overrides[0]["allowed"] == true
            && overrides[0]["message"]
                .as_str()
                .unwrap()
                .contains("plain-1"),
        "{overrides:?}"
    );
    assert!(plan["summary"]["update"].as_u64().unwrap() >= 2, "{plan}");

    // Restarted after phase 1 (here without the agent, so it keeps its
    // certificate of the old root): phase 2 may start.
    restart_proxy(&w, "kind-cluster1", "sample", "plain-1", "plain-2", false);
    let plan = stdout_of(&w, &["plan"]);
    assert!(
        plan.contains(
            "phase 1 took effect: every proxy trusts the new root, all 3 proxies of 2 clusters"
        ),
        "{plan}"
    );
    apply(&w);
    let next = root_pem("trust-next");
    agents_until(&w, "take certificates of the new root", |(_, chain)| {
        providers::ca::signed_under(chain, &next)
    });

    // Phase 3 waits for plain-2, whose certificate is of the old root.
    plan_waits(
        &w,
        "1 of 2 proxies hold a certificate not issued under the new root yet: plain-2",
    );
    let held = [
        cacerts(&w, "cluster1", "root-cert.pem"),
        cacerts(&w, "cluster2", "ca-cert.pem"),
    ];
    apply(&w);
    assert_eq!(
        [
            cacerts(&w, "cluster1", "root-cert.pem"),
            cacerts(&w, "cluster2", "ca-cert.pem")
        ],
        held,
        "a waiting phase 3 changes nothing"
    );
    restart_proxy(&w, "kind-cluster1", "sample", "plain-2", "plain-3", false);
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    apply(&w);
    assert_eq!(
        shas(&cacerts(&w, "cluster1", "root-cert.pem")),
        vec![new.clone()]
    );
    w.assert_clean();
}

/// Writes `pem` as `root-cert.pem` of `cluster`'s `cacerts`, as a person
/// with kubectl would.
fn edit_roots(w: &World, cluster: &str, pem: &str) {
    use base64::Engine as _;
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(w.client(&format!("kind-{cluster}")), NS);
    let b64 = base64::engine::general_purpose::STANDARD;
    let patch = serde_json::json!({"data": {"root-cert.pem": b64.encode(pem)}});
    w.rt.block_on(secrets.patch(
        "cacerts",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    ))
    .unwrap();
}

fn plan_json(w: &World, args: &[&str]) -> Value {
    let mut all = vec!["plan", "--format", "json"];
    all.extend_from_slice(args);
    let o = w.mesh(&all);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The change of `step` in a JSON plan (Null: not in it).
fn change<'a>(plan: &'a Value, step: &str) -> &'a Value {
    plan["changes"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["step"] == step))
        .unwrap_or(&Value::Null)
}

fn action<'a>(plan: &'a Value, step: &str) -> &'a str {
    change(plan, step)["action"].as_str().unwrap_or("absent")
}

#[test]
fn no_phase_goes_on_while_a_primarys_cacerts_is_off() {
    let mesh = std::fs::read_to_string(repo().join("examples/multi-primary.toml")).unwrap();
    let w = World::new(&mesh, TWO).with_test_root();
    apply(&w);
    with_next_root(&w);
    w.write_mesh(&mesh.replace("certs/", "certs-next/"));
    apply(&w);
    let (old, new) = (root_sha("trust"), root_sha("trust-next"));
    let cluster2 = cacerts(&w, "cluster2", "ca-cert.pem");
    // Between phases someone puts the old root alone back on cluster1.
    edit_roots(&w, "cluster1", &root_pem("trust"));

    // The plan writes phase 1 again on cluster1 and nothing on cluster2,
    // the drift shown, also under `--allow rotation-gate`.
    for args in [&[][..], &["--allow", "rotation-gate"][..]] {
        let plan = plan_json(&w, args);
        assert_eq!(action(&plan, "cluster1/plug-ca"), "update", "{args:?}");
        assert_eq!(action(&plan, "cluster2/plug-ca"), "no-op", "{args:?}");
        let c1 = change(&plan, "cluster1/plug-ca");
        let reason = c1["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("drift: ") && reason.contains("trusts another root"),
            "{reason}"
        );
        assert!(
            !c1["diff"].as_str().unwrap_or_default().contains("phase 2"),
            "{c1}"
        );
        let notes = plan["notes"].to_string();
        assert!(
            notes.contains("the cacerts of cluster1 is not as mesh wrote it"),
            "{notes}"
        );
        assert!(
            !notes.contains("phase 2 of 3 (sign with the new root) on"),
            "{notes}"
        );
    }
    let golden_plan = stdout_of(&w, &["plan", "--format", "markdown"]);
    golden("root-rotation-cacerts-off.md", &golden_plan);
    // The apply writes phase 1 back on cluster1, and no primary signs
    // under the new root yet.
    let out = apply(&w);
    assert!(
        !out.contains("phase 2 of 3 (sign with the new root) on"),
        "{out}"
    );
    for c in ["cluster1", "cluster2"] {
        assert_eq!(
            shas(&cacerts(&w, c, "root-cert.pem")),
            vec![old.clone(), new.clone()],
            "{c}"
        );
    }
    assert_eq!(cacerts(&w, "cluster2", "ca-cert.pem"), cluster2);
    // Repaired: phase 2 goes on on both primaries.
    let plan = plan_json(&w, &[]);
    assert_eq!(action(&plan, "cluster1/plug-ca"), "update");
    assert_eq!(action(&plan, "cluster2/plug-ca"), "update");
    let out = apply(&w);
    assert!(out.contains("root rotation, phase 2 of 3"), "{out}");
    for c in ["cluster1", "cluster2"] {
        providers::ca::verify_signed_by(&cacerts(&w, c, "ca-cert.pem"), &root_pem("trust-next"))
            .unwrap();
    }
}

#[test]
fn a_rotation_does_not_start_over_a_cacerts_that_is_off_and_the_advice_repairs_it() {
    let mesh = std::fs::read_to_string(repo().join("examples/multi-primary.toml")).unwrap();
    let w = World::new(&mesh, TWO).with_test_root();
    apply(&w);
    with_next_root(&w);
    let first = cacerts(&w, "cluster1", "root-cert.pem");
    edit_roots(&w, "cluster1", &root_pem("trust-next"));
    w.write_mesh(&mesh.replace("certs/", "certs-next/"));
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = text(&o);
    assert!(
        said.contains("a root rotation starts only from each primary's cacerts as recorded"),
        "{said}"
    );
    assert_eq!(
        shas(&cacerts(&w, "cluster2", "root-cert.pem")),
        vec![root_sha("trust")]
    );
    // What it says to do: [trust] back, apply, then the new root.
    w.write_mesh(&mesh);
    apply(&w);
    assert_eq!(cacerts(&w, "cluster1", "root-cert.pem"), first);
    w.write_mesh(&mesh.replace("certs/", "certs-next/"));
    let out = apply(&w);
    assert!(out.contains("root rotation, phase 1 of 3"), "{out}");
}
