//! Every Istio multicluster topology end to end on kubesim (the project's
//! simulator): Istio's four procedures and a mixed fleet applied, planned
//! clean, drift repaired, a remote moved to another network, a primary
//! added, destroyed. The same on real clusters: tests/real/real_clusters.rs.

use serde_json::Value;

use crate::support::{World, repo as root, text};

/// `example` as mesh.toml with the test root of trust in certs/, and one
/// simulated cluster per context of the example (and `more`).
fn world(example: &str, more: &[&str]) -> World {
    let toml = std::fs::read_to_string(root().join("examples").join(example)).unwrap();
    let mut contexts: Vec<String> = toml
        .lines()
        .filter_map(|l| l.strip_prefix("context = \""))
        .map(|c| c.trim_end_matches('"').to_string())
        .collect();
    contexts.extend(more.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = contexts.iter().map(String::as_str).collect();
    World::new(&toml, &refs).with_test_root()
}

/// The root istiod publishes in `context` (the simulated istiod reads cacerts).
fn published_root(w: &World, context: &str) -> String {
    w.get(
        context,
        "",
        "configmaps",
        "istio-system",
        "istio-ca-root-cert",
    )
    .and_then(|cm| {
        cm.pointer("/data/root-cert.pem")
            .and_then(Value::as_str)
            .map(String::from)
    })
    .unwrap_or_else(|| panic!("{context} publishes no root"))
}

fn network_label(w: &World, context: &str) -> Option<String> {
    w.get(context, "", "namespaces", "", "istio-system")?
        .pointer("/metadata/labels/topology.istio.io~1network")?
        .as_str()
        .map(String::from)
}

fn has_remote_secret(w: &World, context: &str, of: &str) -> bool {
    w.exists(
        context,
        "",
        "secrets",
        "istio-system",
        &format!("istio-remote-secret-{of}"),
    )
}

fn has_eastwest(w: &World, context: &str) -> bool {
    w.exists(
        context,
        "",
        "services",
        "istio-system",
        "istio-eastwestgateway",
    )
}

fn delete(w: &World, context: &str, plural: &str, ns: &str, name: &str) {
    let c = w.cluster(context);
    let mut store = c.store();
    let rt = store.find_type("", "v1", plural).unwrap();
    store.delete(&rt, ns, name).unwrap();
}

fn the_root() -> String {
    std::fs::read_to_string(root().join("tests/fixtures/trust/root-cert.pem")).unwrap()
}

/// Destroy leaves no istio-system anywhere.
fn destroy_leaves_nothing(w: &World, contexts: &[&str]) {
    w.ok(&["destroy", "--auto-approve"]);
    for c in contexts {
        assert!(
            w.get(c, "", "namespaces", "", "istio-system").is_none(),
            "{c} keeps istio-system"
        );
    }
}

#[test]
fn primary_remote_on_two_networks() {
    let w = world("primary-remote-multi-network.toml", &[]);
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();
    assert_eq!(
        network_label(&w, "kind-cluster1").as_deref(),
        Some("network1")
    );
    assert_eq!(
        network_label(&w, "kind-cluster2").as_deref(),
        Some("network2")
    );
    assert!(has_eastwest(&w, "kind-cluster1") && has_eastwest(&w, "kind-cluster2"));
    assert!(
        w.get(
            "kind-cluster1",
            "networking.istio.io",
            "gateways",
            "istio-system",
            "cross-network-gateway"
        )
        .is_some()
    );
    assert!(has_remote_secret(&w, "kind-cluster1", "cluster2"));
    // The remote's own network in its injection path and values.
    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap();
    let input = st["steps"]["cluster2/install-remote"]["input"]
        .as_str()
        .unwrap();
    assert!(
        input.contains("/inject/cluster/cluster2/net/network2")
            && input.contains("network: network2"),
        "{input}"
    );

    // Drift: the network label removed; repaired.
    let c2 = w.cluster("kind-cluster2");
    {
        let mut store = c2.store();
        let rt = store.find_type("", "v1", "namespaces").unwrap();
        store
            .patch(
                &rt,
                "",
                "istio-system",
                kubesim::store::PatchType::Merge,
                br#"{"metadata":{"labels":{"topology.istio.io/network":null}}}"#,
                "test",
                false,
                false,
            )
            .unwrap();
    }
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("label topology.istio.io/network removed"),
        "{}",
        text(&o)
    );
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();

    // The remote moves to its primary's network: its gateway goes, its label changes.
    w.write_mesh(
        &w.mesh_toml()
            .replace("network = \"network2\"", "network = \"network1\""),
    );
    let plan = w.ok(&["plan"]);
    assert!(
        plan.contains("- cluster2/install-eastwest-gateway (delete)"),
        "{plan}"
    );
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();
    assert!(!has_eastwest(&w, "kind-cluster2"));
    destroy_leaves_nothing(&w, &["kind-cluster1", "kind-cluster2"]);
}

#[test]
fn multi_primary_shares_one_root_and_each_discovers_the_other() {
    let w = world("multi-primary.toml", &[]);
    let plan = w.ok(&["plan"]);
    assert!(!plan.contains("PRIVATE KEY"));
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();
    let root = the_root();
    assert_eq!(published_root(&w, "kind-cluster1").trim(), root.trim());
    assert_eq!(published_root(&w, "kind-cluster2").trim(), root.trim());
    assert!(has_remote_secret(&w, "kind-cluster1", "cluster2"));
    assert!(has_remote_secret(&w, "kind-cluster2", "cluster1"));
    // One network, no remotes: no east-west gateway.
    assert!(!has_eastwest(&w, "kind-cluster1"));
    // Each primary has its own intermediate; no key in the state.
    let state = std::fs::read_to_string(w.state_path()).unwrap();
    assert!(!state.contains("PRIVATE KEY"), "a key in the state");
    let st: Value = serde_json::from_str(&state).unwrap();
    let i1 = st["steps"]["cluster1/plug-ca"]["outputs"]["intermediate_sha256"]
        .as_str()
        .unwrap();
    let i2 = st["steps"]["cluster2/plug-ca"]["outputs"]["intermediate_sha256"]
        .as_str()
        .unwrap();
    assert_ne!(i1, i2);

    // Drift: cacerts deleted; the plan says so and apply makes a new one.
    delete(&w, "kind-cluster1", "secrets", "istio-system", "cacerts");
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("Secret istio-system/cacerts missing"),
        "{}",
        text(&o)
    );
    let out = w.ok(&["apply", "--auto-approve", "-v"]);
    assert!(out.contains("cluster1/plug-ca: updated"), "{out}");
    w.assert_clean();
    destroy_leaves_nothing(&w, &["kind-cluster1", "kind-cluster2"]);
}

#[test]
fn a_cacerts_secret_mesh_did_not_write_is_replaced_and_said() {
    let w = world("multi-primary.toml", &[]);
    w.ok(&["apply", "--auto-approve"]);
    // Someone replaces cluster2's cacerts with one of another root.
    let (other, _) = providers::ca::new_root("someone else's root").unwrap();
    let c2 = w.cluster("kind-cluster2");
    {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut store = c2.store();
        let rt = store.find_type("", "v1", "secrets").unwrap();
        store.delete(&rt, "istio-system", "cacerts").unwrap();
        let s = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cacerts", "namespace": "istio-system"},
            "data": {"root-cert.pem": b64.encode(&other), "ca-cert.pem": b64.encode(&other)}});
        store.create(&rt, "istio-system", s, "kubectl").unwrap();
    }
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("trusts another root than mesh wrote"),
        "{}",
        text(&o)
    );
    let out = w.ok(&["apply", "--auto-approve", "-v"]);
    assert!(
        out.contains("replaced a cacerts Secret mesh did not write"),
        "{out}"
    );
    w.assert_clean();
}

#[test]
fn multi_primary_on_two_networks() {
    let w = world("multi-primary-multi-network.toml", &[]);
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();
    for (c, n) in [("kind-cluster1", "network1"), ("kind-cluster2", "network2")] {
        assert_eq!(network_label(&w, c).as_deref(), Some(n));
        assert!(has_eastwest(&w, c), "{c}: no east-west gateway");
        assert!(
            w.get(
                c,
                "networking.istio.io",
                "gateways",
                "istio-system",
                "cross-network-gateway"
            )
            .is_some()
        );
        assert_eq!(published_root(&w, c).trim(), the_root().trim());
    }
    assert!(has_remote_secret(&w, "kind-cluster1", "cluster2"));
    assert!(has_remote_secret(&w, "kind-cluster2", "cluster1"));
    destroy_leaves_nothing(&w, &["kind-cluster1", "kind-cluster2"]);
}

#[test]
fn a_mixed_fleet_and_a_primary_added_to_a_one_primary_mesh() {
    let w = world("mixed-fleet.toml", &[]);
    let out = w.ok(&["apply", "--auto-approve"]);
    assert!(out.contains("29 created"), "{out}");
    w.assert_clean();
    // Every control plane holds a secret for every cluster not its own.
    for of in ["east-a", "east-b", "west", "west-a"] {
        assert!(has_remote_secret(&w, "kind-east", of), "east lacks {of}");
    }
    for of in ["west-a", "east", "east-a", "east-b"] {
        assert!(has_remote_secret(&w, "kind-west", of), "west lacks {of}");
    }
    // east-b is on the west network: its own gateway.
    assert!(has_eastwest(&w, "kind-east-b"));
    assert!(!has_eastwest(&w, "kind-east-a"));
    destroy_leaves_nothing(
        &w,
        &[
            "kind-east",
            "kind-east-a",
            "kind-east-b",
            "kind-west",
            "kind-west-a",
        ],
    );
}

#[test]
fn a_primary_added_to_a_one_primary_mesh() {
    let w = world("primary-remote.toml", &["kind-cluster3"]);
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();
    // A second primary needs a root of trust. Added with it in one go, the
    // new primary is refused: cluster1's workloads hold certificates of
    // istiod's own root, which cluster3's would not trust.
    let with_trust = w.mesh_toml().replacen(
        "\n[[cluster]]",
        "\n[trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n\n[[cluster]]",
        1,
    );
    let toml = format!(
        "{with_trust}\n[[cluster]]\nname = \"cluster3\"\ncontext = \"kind-cluster3\"\nnetwork = \"network1\"\nrole = \"primary\"\n"
    );
    w.write_mesh(&toml);
    let o = w.mesh(&["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o)
            .contains("cluster3: a new primary while the mesh's root rotation is at phase 1 of 3"),
        "{}",
        text(&o)
    );
    // So the root comes first, in its three phases (cluster1 gets its
    // cacerts, keeping istiod's own CA until the new root signs)…
    w.write_mesh(&with_trust);
    for phase in 1..=3 {
        let plan = w.ok(&["plan"]);
        assert!(
            plan.contains(&format!("root rotation, phase {phase} of 3")),
            "{plan}"
        );
        if phase == 1 {
            assert!(plan.contains("+ cluster1/plug-ca (create)"), "{plan}");
        }
        w.ok(&["apply", "--auto-approve"]);
    }
    w.assert_clean();
    // …then the second primary.
    w.write_mesh(&toml);
    let plan = w.ok(&["plan"]);
    for step in [
        "+ cluster3/install-control-plane (create)",
        "+ cluster2/attach@cluster3 (create)",
        "+ cluster1/attach@cluster3 (create)",
        "+ cluster3/attach@cluster1 (create)",
    ] {
        assert!(plan.contains(step), "{step}:\n{plan}");
    }
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();
    assert_eq!(
        published_root(&w, "kind-cluster3").trim(),
        the_root().trim()
    );
    // cluster1's istiod publishes the mesh's root alone.
    assert_eq!(
        published_root(&w, "kind-cluster1").trim(),
        the_root().trim()
    );
    assert!(has_remote_secret(&w, "kind-cluster3", "cluster1"));
    assert!(has_remote_secret(&w, "kind-cluster3", "cluster2"));
    assert!(has_remote_secret(&w, "kind-cluster1", "cluster3"));
}

/// A `cacerts` made by hand before mesh's first apply: the plan says it
/// will be replaced, and from which root it was made; apply replaces it.
#[test]
fn a_hand_made_cacerts_before_the_first_apply_is_in_the_plan() {
    use base64::Engine as _;
    let w = world("multi-primary.toml", &[]);
    let (other, _) = providers::ca::new_root("a hand-made root").unwrap();
    let other_sha = providers::ca::inspect(&other).unwrap().sha256;
    let c1 = w.cluster("kind-cluster1");
    {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut store = c1.store();
        let ns_rt = store.find_type("", "v1", "namespaces").unwrap();
        store
            .create(&ns_rt, "", serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}), "kubectl")
            .unwrap();
        let rt = store.find_type("", "v1", "secrets").unwrap();
        let s = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cacerts", "namespace": "istio-system"},
            "data": {"root-cert.pem": b64.encode(&other)}});
        store.create(&rt, "istio-system", s, "kubectl").unwrap();
    }
    let plan = w.ok(&["plan"]);
    assert!(
        plan.contains(&format!(
            "not in the state yet; a cacerts Secret mesh did not write is there (root sha256:{}…): it will be replaced",
            &other_sha[..16]
        )),
        "{plan}"
    );
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();
    assert_eq!(
        published_root(&w, "kind-cluster1").trim(),
        the_root().trim()
    );
}

/// An intermediate that expires within 30 days is drift: the plan shows a
/// rotation, and apply makes a new intermediate.
#[test]
fn an_intermediate_close_to_expiry_is_rotated() {
    let w = world("multi-primary.toml", &[]);
    w.write_mesh(&w.mesh_toml().replace(
        "root_key = \"certs/root-key.pem\"",
        "root_key = \"certs/root-key.pem\"\nintermediate_days = 20",
    ));
    w.ok(&["apply", "--auto-approve"]);
    let st = || -> Value {
        serde_json::from_str(&std::fs::read_to_string(w.state_path()).unwrap()).unwrap()
    };
    let before = st()["steps"]["cluster1/plug-ca"]["outputs"]["intermediate_sha256"].clone();
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2));
    let plan = text(&o);
    assert!(
        plan.contains("(within 30 days): it will be rotated"),
        "{plan}"
    );
    assert!(plan.contains("~ cluster1/plug-ca (update)"), "{plan}");
    let istiod = || {
        w.get(
            "kind-cluster1",
            "apps",
            "deployments",
            "istio-system",
            "istiod",
        )
        .unwrap()["spec"]["template"]
            .clone()
    };
    let template = istiod();
    w.ok(&["apply", "--auto-approve"]);
    let after = st()["steps"]["cluster1/plug-ca"]["outputs"]["intermediate_sha256"].clone();
    assert_ne!(before, after, "not rotated");
    // The same root: istiod reloads cacerts by itself, nothing restarts.
    assert_eq!(istiod(), template, "istiod was restarted");
}
