//! Deep drift (issue "A plan you can trust"): refresh reads every object an
//! install step made and the values that define the mesh, and every byte of
//! `cacerts`, so "No changes" means the clusters match. Each drift here was
//! invisible before; each is shown by `plan`, repaired by `apply`, and the
//! plan after is clean. On kubesim, the project's simulator; deleting
//! objects is also proven on the real tier (tests/real/real_clusters.rs).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::{World, succeeded as ok, text};

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];
const TRUSTED: &str = include_str!("../../examples/multi-primary.toml");

fn applied(mesh: &str, contexts: &[&str], root: bool) -> World {
    let w = World::new(mesh, contexts);
    let w = if root { w.with_test_root() } else { w };
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.assert_clean();
    w
}

/// `plan` exits 2 with `step` updated for a reason that contains `why`;
/// `apply` repairs it; the plan after is clean.
fn drift_is_planned_and_repaired(w: &World, step: &str, why: &str) {
    let o = w.mesh(&["plan", "--detailed-exitcode", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "no drift seen:\n{}", text(&o));
    let plan: Value = serde_json::from_slice(&o.stdout).unwrap();
    let change = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == step)
        .unwrap_or_else(|| panic!("{step} not in the plan"));
    assert_eq!(change["action"], "update", "{change}");
    let reason = change["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "{step}: {reason:?} lacks {why:?}");
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.assert_clean();
}

fn patch<K>(api: &Api<K>, w: &World, name: &str, patch: Value)
where
    K: kube::Resource + Clone + for<'de> k8s_openapi::serde::Deserialize<'de> + std::fmt::Debug,
{
    let pp = PatchParams::default();
    w.rt.block_on(api.patch(name, &pp, &Patch::Merge(&patch)))
        .unwrap();
}

#[test]
fn a_deleted_eastwest_gateway_deployment_is_drift_and_comes_back() {
    let w = applied(SEED, CONTEXTS, false);
    let deployments: Api<Deployment> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    w.rt.block_on(deployments.delete("istio-eastwestgateway", &DeleteParams::default()))
        .unwrap();
    drift_is_planned_and_repaired(
        &w,
        "cluster1/install-eastwest-gateway",
        "Deployment istio-system/istio-eastwestgateway missing",
    );
    assert!(w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istio-eastwestgateway"
    ));
}

#[test]
fn istiod_scaled_to_zero_or_its_service_deleted_is_drift_and_repaired() {
    let w = applied(SEED, CONTEXTS, false);
    let deployments: Api<Deployment> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    patch(&deployments, &w, "istiod", json!({"spec": {"replicas": 0}}));
    drift_is_planned_and_repaired(
        &w,
        "cluster1/install-control-plane",
        "Deployment istio-system/istiod scaled to 0 replicas",
    );
    let istiod = w
        .get(
            "kind-cluster1",
            "apps",
            "deployments",
            "istio-system",
            "istiod",
        )
        .unwrap();
    assert_eq!(istiod["spec"]["replicas"], 1, "{istiod}");

    let services: Api<Service> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    w.rt.block_on(services.delete("istiod", &DeleteParams::default()))
        .unwrap();
    drift_is_planned_and_repaired(
        &w,
        "cluster1/install-control-plane",
        "Service istio-system/istiod missing",
    );
}

#[test]
fn a_re_install_by_hand_with_other_values_is_drift() {
    let w = applied(SEED, CONTEXTS, false);
    // What a hand `istioctl install` with another meshID and clusterName
    // leaves: its rendered values.
    let cms: Api<ConfigMap> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    let live = w
        .get("kind-cluster1", "", "configmaps", "istio-system", "values")
        .expect("the control plane's values");
    let mut values: Value =
        serde_json::from_str(live["data"]["merged-values"].as_str().unwrap()).unwrap();
    values["global"]["meshID"] = json!("other-mesh");
    values["global"]["multiCluster"]["clusterName"] = json!("elsewhere");
    patch(
        &cms,
        &w,
        "values",
        json!({"data": {"merged-values": values.to_string()}}),
    );
    let o = w.mesh(&["plan"]);
    let out = text(&o);
    assert!(
        out.contains("installed with meshID other-mesh")
            && out.contains("installed with clusterName elsewhere"),
        "{out}"
    );
    drift_is_planned_and_repaired(&w, "cluster1/install-control-plane", "meshID");

    // The remote pointed at another pilot address by hand.
    let cms: Api<ConfigMap> = Api::namespaced(w.client("kind-cluster2"), "istio-system");
    let live = w
        .get("kind-cluster2", "", "configmaps", "istio-system", "values")
        .expect("the remote's values");
    let mut values: Value =
        serde_json::from_str(live["data"]["merged-values"].as_str().unwrap()).unwrap();
    values["global"]["remotePilotAddress"] = json!("203.0.113.9");
    patch(
        &cms,
        &w,
        "values",
        json!({"data": {"merged-values": values.to_string()}}),
    );
    drift_is_planned_and_repaired(
        &w,
        "cluster2/install-remote",
        "installed with remotePilotAddress 203.0.113.9",
    );
}

#[test]
fn a_tampered_cacerts_is_drift_byte_for_byte() {
    let contexts = &["kind-cluster1", "kind-cluster2"];
    let w = applied(TRUSTED, contexts, true);
    let secrets: Api<Secret> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    let live = w
        .get("kind-cluster1", "", "secrets", "istio-system", "cacerts")
        .unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |k: &str| b64.decode(live["data"][k].as_str().unwrap()).unwrap();
    // A rogue CA appended to the root bundle (here: the intermediate).
    let mut root = decode("root-cert.pem");
    root.extend(decode("ca-cert.pem"));
    patch(
        &secrets,
        &w,
        "cacerts",
        json!({"data": {"root-cert.pem": b64.encode(&root)}}),
    );
    drift_is_planned_and_repaired(
        &w,
        "cluster1/plug-ca",
        "root-cert.pem is not what mesh wrote",
    );
    // Another key swapped in (any bytes: the fingerprint differs).
    patch(
        &secrets,
        &w,
        "cacerts",
        json!({"data": {"ca-key.pem": b64.encode(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")}}),
    );
    drift_is_planned_and_repaired(&w, "cluster1/plug-ca", "ca-key.pem is not what mesh wrote");
    // The plan never shows the key.
    let state = std::fs::read_to_string(w.state_path()).unwrap();
    assert!(!state.contains("PRIVATE KEY"));
}

#[test]
fn import_compares_the_values_that_define_the_mesh() {
    // Installed by mesh under another meshID, then the state forgotten: an
    // import with the mesh file's meshID must not adopt the control plane.
    let w = applied(SEED, CONTEXTS, false);
    std::fs::remove_file(w.state_path()).unwrap();
    w.write_mesh(&SEED.replace("id = \"mesh1\"", "id = \"mesh2\""));
    let out = ok(&w.mesh(&["import"]));
    assert!(
        out.contains("cluster1/install-control-plane")
            && out.contains("installed with meshID mesh1"),
        "{out}"
    );
    let state: Value = w.state_json();
    assert!(
        state["steps"]
            .get("cluster1/install-control-plane")
            .is_none(),
        "adopted a control plane of another mesh: {state}"
    );
}

#[test]
fn import_never_adopts_a_remote_secret_for_another_server() {
    let w = applied(SEED, CONTEXTS, false);
    std::fs::remove_file(w.state_path()).unwrap();
    let live = w
        .get(
            "kind-cluster1",
            "",
            "secrets",
            "istio-system",
            "istio-remote-secret-cluster2",
        )
        .unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let kubeconfig = String::from_utf8(
        b64.decode(live["data"]["cluster2"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    let elsewhere = kubeconfig.replace(&server, "https://203.0.113.5:6443");
    let secrets: Api<Secret> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    patch(
        &secrets,
        &w,
        "istio-remote-secret-cluster2",
        json!({"data": {"cluster2": b64.encode(elsewhere)}}),
    );
    let out = ok(&w.mesh(&["import"]));
    assert!(
        out.contains("cluster2/attach") && out.contains("points at https://203.0.113.5:6443"),
        "{out}"
    );
    assert!(w.state_json()["steps"].get("cluster2/attach").is_none());
}
