//! Ambient multicluster on kubesim (the project's API simulator): the
//! example mesh applied from scratch on two clusters and two networks, every
//! object of Istio's ambient multicluster guide there; a clean plan; the
//! east-west Gateway deleted by hand found and restored; Gateway API CRDs
//! another tool installed left alone (or refused at another release, before
//! anything changes); destroy removing everything mesh made, its CRDs
//! included, and nothing else. And what the mesh file may not say.

use serde_json::{Value, json};

use crate::support::{World, golden, repo, text};

const NS: &str = "istio-system";
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];
const GATEWAYS_CRD: &str = "gateways.gateway.networking.k8s.io";

fn example() -> String {
    std::fs::read_to_string(repo().join("examples/ambient-multi-network.toml")).unwrap()
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(o));
    text(o)
}

fn crd(w: &World, context: &str, name: &str) -> Option<Value> {
    w.get(
        context,
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "",
        name,
    )
}

#[test]
fn an_ambient_mesh_on_two_networks_is_applied_kept_and_destroyed() {
    let w = World::new(&example(), CONTEXTS).with_test_root();
    golden(
        "ambient-multi-network.txt",
        &String::from_utf8_lossy(&w.mesh(&["plan"]).stdout),
    );
    golden(
        "ambient-multi-network.md",
        &String::from_utf8_lossy(&w.mesh(&["plan", "--format", "markdown"]).stdout),
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.assert_clean();

    for (i, ctx) in CONTEXTS.iter().enumerate() {
        let (me, other) = (format!("cluster{}", i + 1), format!("cluster{}", 2 - i));
        let network = format!("network{}", i + 1);
        // The ambient profile: istiod with multi-network ambient, istio-cni
        // and ztunnel on every node.
        let istiod = w
            .get(ctx, "apps", "deployments", NS, "istiod")
            .expect("istiod");
        assert!(
            istiod
                .to_string()
                .contains(r#"{"name":"AMBIENT_ENABLE_MULTI_NETWORK","value":"true"}"#),
            "{ctx}: {istiod}"
        );
        assert!(
            istiod
                .to_string()
                .contains(r#"{"name":"AMBIENT_ENABLE_BAGGAGE","value":"true"}"#),
            "{ctx}: {istiod}"
        );
        for ds in ["ztunnel", "istio-cni-node"] {
            let d = w
                .get(ctx, "apps", "daemonsets", NS, ds)
                .unwrap_or_else(|| panic!("{ctx}: no {ds}"));
            assert_eq!(d["status"]["numberReady"], 1, "{ctx}: {ds}: {d}");
        }
        // No classic east-west gateway, nothing exposed through one.
        assert!(
            !w.exists(ctx, "apps", "deployments", NS, "istio-eastwestgateway"),
            "{ctx}"
        );
        assert!(
            !w.exists(
                ctx,
                "networking.istio.io",
                "gateways",
                NS,
                "cross-network-gateway"
            ),
            "{ctx}"
        );
        // The network label, the common root, the Gateway API CRDs.
        let ns = w.get(ctx, "", "namespaces", "", NS).unwrap();
        assert_eq!(
            ns["metadata"]["labels"]["topology.istio.io/network"],
            json!(network),
            "{ctx}"
        );
        assert!(w.exists(ctx, "", "secrets", NS, "cacerts"), "{ctx}");
        let c = crd(&w, ctx, GATEWAYS_CRD).expect("Gateway API CRDs");
        assert_eq!(
            c["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"],
            "v1.6.0"
        );
        assert_eq!(
            c["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "mesh"
        );
        // The ambient east-west gateway, as gen-eastwest-gateway.sh --ambient.
        let gw = w
            .get(
                ctx,
                "gateway.networking.k8s.io",
                "gateways",
                NS,
                "istio-eastwestgateway",
            )
            .unwrap_or_else(|| panic!("{ctx}: no east-west Gateway"));
        assert_eq!(gw["spec"]["gatewayClassName"], "istio-east-west");
        assert_eq!(gw["spec"]["listeners"][0]["protocol"], "HBONE");
        assert_eq!(gw["spec"]["listeners"][0]["port"], 15008);
        assert_eq!(
            gw["metadata"]["labels"]["topology.istio.io/network"],
            json!(network)
        );
        // Remote secrets both ways.
        assert!(
            w.exists(
                ctx,
                "",
                "secrets",
                NS,
                &format!("istio-remote-secret-{other}")
            ),
            "{me}"
        );
    }
    // `mesh check` passes: the ambient data plane ready, each east-west
    // Gateway programmed with its LoadBalancer address (by the simulated
    // istiod's gateway controller).
    let check = w.mesh(&["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    for said in [
        "PASS  ambient ztunnel",
        "PASS  ambient istio-cni-node",
        "PASS  ambient east-west gateway",
    ] {
        assert_eq!(
            text(&check).matches(said).count(),
            2,
            "{said}: {}",
            text(&check)
        );
    }

    // Drift: the east-west Gateway deleted by hand.
    {
        let cluster = w.cluster("kind-cluster2");
        let mut store = cluster.store();
        let rt = store
            .find_type("gateway.networking.k8s.io", "v1", "gateways")
            .unwrap();
        store.delete(&rt, NS, "istio-eastwestgateway").unwrap();
    }
    let plan = ok(&w.mesh(&["plan"]));
    assert!(
        plan.contains("~ cluster2/ambient-eastwest-gateway (update)"),
        "{plan}"
    );
    assert!(plan.contains("missing"), "{plan}");
    ok(&w.mesh(&["apply", "--auto-approve"]));
    assert!(w.exists(
        "kind-cluster2",
        "gateway.networking.k8s.io",
        "gateways",
        NS,
        "istio-eastwestgateway"
    ));
    w.assert_clean();

    // A running mesh does not move between data planes…
    w.write_mesh(&example().replace("dataplane = \"ambient\"\n", ""));
    let o = w.mesh(&["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("moves a running control plane out of ambient mode"),
        "{}",
        text(&o)
    );
    // …and its root is not rotated in phases (ztunnel trusts one root).
    w.copy_root("trust-next", "certs-next");
    w.write_mesh(&example().replace("certs/", "certs-next/"));
    let o = w.mesh(&["plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("unproven in Istio's ambient mode"),
        "{}",
        text(&o)
    );
    w.write_mesh(&example());
    w.assert_clean();

    // An HTTPRoute of an application team in cluster1: destroy keeps every
    // Gateway API CRD there (deleting its CRD would delete the route, and
    // the rest would leave half an API).
    let route = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "their-route", "namespace": "default"}, "spec": {}});
    {
        let cluster = w.cluster("kind-cluster1");
        let mut store = cluster.store();
        let rt = store
            .find_type("gateway.networking.k8s.io", "v1", "httproutes")
            .unwrap();
        store.create(&rt, "default", route, "kubectl").unwrap();
    }

    // Destroy: nothing of mesh's left, the CRDs it installed included
    // where nothing else uses them.
    ok(&w.mesh(&["destroy", "--auto-approve"]));
    for name in [
        "httproutes.gateway.networking.k8s.io",
        GATEWAYS_CRD,
        "gatewayclasses.gateway.networking.k8s.io",
    ] {
        assert!(
            crd(&w, "kind-cluster1", name).is_some(),
            "cluster1 lost {name}"
        );
        assert!(
            crd(&w, "kind-cluster2", name).is_none(),
            "cluster2 kept {name}"
        );
    }
    for ctx in CONTEXTS {
        assert!(
            !w.exists(ctx, "", "namespaces", "", NS),
            "{ctx}: istio-system left"
        );
        assert!(!w.exists(ctx, "apps", "daemonsets", NS, "ztunnel"), "{ctx}");
    }
}

/// A Gateway API CRD as another tool installed it, at `version`.
fn someone_elses_crd(w: &World, context: &str, version: &str) {
    let path = w.path("their-crd.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {GATEWAYS_CRD}\n  \
             annotations:\n    gateway.networking.k8s.io/bundle-version: {version}\n    gateway.networking.k8s.io/channel: standard\n\
             spec:\n  group: gateway.networking.k8s.io\n  scope: Namespaced\n  names:\n    kind: Gateway\n    plural: gateways\n    singular: gateway\n    listKind: GatewayList\n  \
             versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n"
        ),
    )
    .unwrap();
    let o = std::process::Command::new("kubectl")
        .env("KUBECONFIG", w.set().kubeconfig_path())
        .args(["--context", context, "apply", "--validate=false", "-f"])
        .arg(&path)
        .output()
        .expect("kubectl");
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn gateway_api_crds_another_tool_installed_are_left_alone_or_refused_before_anything_changes() {
    let w = World::new(&example(), CONTEXTS).with_test_root();
    // cluster2 has v1.6.1 of someone else: left alone, and left by destroy.
    someone_elses_crd(&w, "kind-cluster2", "v1.6.1");
    let plan = ok(&w.mesh(&["plan"]));
    assert!(
        plan.contains(&format!("CustomResourceDefinition {GATEWAYS_CRD} is there already (v1.6.1 (standard channel)): left as found")),
        "{plan}"
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let theirs = crd(&w, "kind-cluster2", GATEWAYS_CRD).unwrap();
    assert_eq!(
        theirs["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"],
        "v1.6.1"
    );
    assert!(theirs["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null());
    w.assert_clean();
    ok(&w.mesh(&["destroy", "--auto-approve"]));
    assert!(
        crd(&w, "kind-cluster2", GATEWAYS_CRD).is_some(),
        "destroy deleted a CRD it found"
    );
    assert!(
        crd(&w, "kind-cluster1", GATEWAYS_CRD).is_none(),
        "destroy left a CRD it installed"
    );

    // An older release in cluster1: the plan fails, naming the cluster and
    // the CRD, and nothing is applied.
    let w = World::new(&example(), CONTEXTS).with_test_root();
    someone_elses_crd(&w, "kind-cluster1", "v1.4.0");
    for cmd in [&["plan"][..], &["apply", "--auto-approve"][..]] {
        let o = w.mesh(cmd);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        for said in [
            "cluster `cluster1`",
            GATEWAYS_CRD,
            "v1.4.0",
            "never upgrades",
        ] {
            assert!(text(&o).contains(said), "{said}: {}", text(&o));
        }
    }
    assert!(
        !w.exists("kind-cluster2", "", "namespaces", "", NS),
        "something was applied"
    );
    assert!(
        !w.exists("kind-cluster1", "", "secrets", NS, "cacerts"),
        "something was applied"
    );
}

#[test]
fn what_an_ambient_mesh_file_may_not_say_is_named_where_it_is_written() {
    let w = World::new("", CONTEXTS).with_test_root();
    let error_for = |toml: &str| {
        w.write_mesh(toml);
        let o = w.mesh(&["validate"]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        text(&o)
    };
    // A remote.
    let remote = example().replace(
        "network = \"network2\"\nrole = \"primary\"",
        "network = \"network2\"\nrole = \"remote\"\nprimary = \"cluster1\"",
    );
    let e = error_for(&remote);
    assert!(e.contains("mesh.toml:25:8"), "{e}");
    assert!(
        e.contains("Istio's ambient mode supports only multi-primary"),
        "{e}"
    );
    assert!(
        e.contains("Primary remote configuration is not currently supported"),
        "{e}"
    );
    // No [trust].
    let e = error_for(&example().replace(
        "[trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n",
        "",
    ));
    assert!(e.contains("mesh.toml:9:13"), "{e}");
    assert!(
        e.contains("needs a common root of trust") && e.contains("mesh ca init"),
        "{e}"
    );
    // An Istio too old for ambient across networks.
    let e = error_for(&example().replace(
        "dataplane = \"ambient\"",
        "dataplane = \"ambient\"\nistio_version = \"1.28.2\"",
    ));
    assert!(e.contains("mesh.toml:10:17"), "{e}");
    assert!(e.contains("from 1.29 (beta)"), "{e}");
    // A kept revision: one ztunnel per node.
    let e = error_for(&format!(
        "{}\n[[mesh.keep_revision]]\nname = \"old\"\nistioctl = \"/opt/old/istioctl\"\n",
        example().replace(
            "dataplane = \"ambient\"\n",
            "dataplane = \"ambient\"\nrevision = \"new\"\n"
        )
    ));
    assert!(
        e.contains("cannot keep a second revision") && e.contains("sail-operator#1299"),
        "{e}"
    );
    // Two clusters on one network.
    let e = error_for(&example().replace("network = \"network2\"", "network = \"network1\""));
    assert!(
        e.contains("mesh.toml:9:13") && e.contains("only multi-network configurations"),
        "{e}"
    );
    // A dataplane mesh does not know.
    let e = error_for(&example().replace("\"ambient\"", "\"sidecarless\""));
    assert!(
        e.contains("mesh.toml:9:13") && e.contains("dataplane `sidecarless`"),
        "{e}"
    );
}

/// An ambient mesh whose state was lost: `mesh import` adopts every step,
/// the Gateway API CRDs as mesh installed them and the east-west Gateways
/// included, and the plan is clean.
#[test]
fn a_lost_state_of_an_ambient_mesh_is_imported() {
    let w = World::new(&example(), CONTEXTS).with_test_root();
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let before = w.state_json();
    std::fs::remove_file(w.state_path()).unwrap();
    let out = ok(&w.mesh(&["import"]));
    assert!(out.contains("Imported"), "{out}");
    let after = w.state_json();
    for step in [
        "cluster1/gateway-api-crds",
        "cluster2/ambient-eastwest-gateway",
    ] {
        assert_eq!(after["steps"][step]["status"], "applied", "{step}: {after}");
    }
    assert_eq!(
        after["steps"]["cluster1/gateway-api-crds"]["outputs"]["installed"],
        before["steps"]["cluster1/gateway-api-crds"]["outputs"]["installed"]
    );
    w.assert_clean();
}
