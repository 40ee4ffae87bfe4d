//! `mesh check` on kubesim, the project's Kubernetes API simulator: after
//! the quick start everything passes; each fault a user can make by hand
//! is found by the check that names it, with the fix that repairs it; an
//! unreachable cluster is one FAIL and the others are still checked; and
//! a check changes nothing in any cluster.

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::{World, succeeded as ok, text};

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const TRUSTED: &str = include_str!("../../examples/multi-primary.toml");
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];

fn applied(mesh: &str, root: bool) -> World {
    let w = World::new(mesh, CONTEXTS);
    let w = if root { w.with_test_root() } else { w };
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w
}

/// `mesh check --format json`: its exit code and its checks.
fn check(w: &World, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["check", "--format", "json"];
    args.extend_from_slice(extra);
    let o = w.mesh(&args);
    let checks: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check printed no JSON ({e}):\n{}", text(&o)));
    (
        o.status.code().unwrap_or(-1),
        checks.as_array().cloned().unwrap_or_default(),
    )
}

fn failed(checks: &[Value]) -> Vec<&Value> {
    checks.iter().filter(|c| c["status"] == "FAIL").collect()
}

/// Exit 2, and the check `name` of `cluster` failed with a detail that says
/// `why` and a fix that says `fix`.
fn fails_with(w: &World, cluster: &str, name: &str, why: &str, fix: &str) -> Vec<Value> {
    let (code, checks) = check(w, &[]);
    assert_eq!(code, 2, "check did not fail: {checks:#?}");
    let c = checks
        .iter()
        .find(|c| c["cluster"] == cluster && c["check"] == name)
        .unwrap_or_else(|| panic!("no check {cluster} {name}: {checks:#?}"));
    assert_eq!(c["status"], "FAIL", "{c:#}");
    let detail = c["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(why), "{detail:?} lacks {why:?}");
    let f = c["fix"].as_str().unwrap_or_default();
    assert!(f.contains(fix), "fix {f:?} lacks {fix:?}");
    checks
}

/// After the fix (`mesh apply`), every check passes again.
fn repaired(w: &World) {
    let checks = repaired_by(w, &[]);
    assert!(checks.iter().all(|c| c["status"] == "PASS"), "{checks:#?}");
}

/// After the fix a check names (`mesh apply` with `extra`), the check
/// exits 0; its checks.
fn repaired_by(w: &World, extra: &[&str]) -> Vec<Value> {
    ok(&w.mesh(&[&["apply", "--auto-approve"][..], extra].concat()));
    let (code, checks) = check(w, &[]);
    assert_eq!(code, 0, "{checks:#?}");
    checks
}

fn merge_patch<K>(api: &Api<K>, w: &World, name: &str, patch: Value)
where
    K: kube::Resource + Clone + for<'de> k8s_openapi::serde::Deserialize<'de> + std::fmt::Debug,
{
    w.rt.block_on(api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)))
        .unwrap();
}

#[test]
fn after_the_quick_start_everything_passes() {
    let w = applied(SEED, false);
    let o = w.mesh(&["check"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(!t.contains("FAIL") && !t.contains("WARN"), "{t}");
    for line in [
        "cluster1 (primary, network network1)",
        "cluster2 (remote of cluster1, network network1)",
        "PASS  istiod ",
        "PASS  link cluster2/attach: token",
        "accepted by cluster2 as system:serviceaccount:istio-system:istio-reader-service-account",
        "PASS  istiod sees cluster2",
        "2 clusters checked:",
    ] {
        assert!(t.contains(line), "{line:?} not in:\n{t}");
    }
    let (code, checks) = check(&w, &[]);
    assert_eq!(code, 0);
    for c in &checks {
        assert_eq!(c["status"], "PASS", "{c:#}");
        let keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["cluster", "check", "status", "detail", "fix"]);
    }
    // No token, no kubeconfig in what it prints.
    let token = w
        .get(
            "kind-cluster2",
            "",
            "secrets",
            "istio-system",
            "istio-reader-token-cluster1",
        )
        .and_then(|s| {
            s.pointer("/data/token")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap();
    let token = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(token)
            .unwrap(),
    )
    .unwrap();
    assert!(!t.contains(&token) && !t.contains("certificate-authority-data"));
    // One cluster only.
    let (code, checks) = check(&w, &["--cluster", "cluster2"]);
    assert_eq!(code, 0);
    assert!(
        checks.iter().all(|c| c["cluster"] == "cluster2"),
        "{checks:#?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c["check"] == "link cluster2/attach: token")
    );
    let o = w.mesh(&["check", "--cluster", "nope"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no cluster `nope`"), "{}", text(&o));
}

#[test]
fn a_deleted_reader_token_is_refused_by_the_remote() {
    let w = applied(SEED, false);
    let secrets: Api<Secret> = Api::namespaced(w.client("kind-cluster2"), "istio-system");
    w.rt.block_on(secrets.delete("istio-reader-token-cluster1", &DeleteParams::default()))
        .unwrap();
    fails_with(
        &w,
        "cluster2",
        "link cluster2/attach: token",
        "cluster2's API server does not accept it",
        "mesh apply",
    );
    repaired(&w);
}

#[test]
fn a_remote_secret_for_another_server_is_found() {
    let w = applied(SEED, false);
    let secrets: Api<Secret> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    let live =
        w.rt.block_on(secrets.get("istio-remote-secret-cluster2"))
            .unwrap();
    let kc = String::from_utf8(live.data.unwrap()["cluster2"].0.clone()).unwrap();
    let other = w.cluster("kind-cluster1").server();
    let kc = kc.replace(&w.cluster("kind-cluster2").server(), &other);
    let b64 = base64::engine::general_purpose::STANDARD;
    merge_patch(
        &secrets,
        &w,
        "istio-remote-secret-cluster2",
        json!({"data": {"cluster2": b64.encode(kc)}}),
    );
    fails_with(
        &w,
        "cluster2",
        "link cluster2/attach: server and CA",
        &format!("points at {other}, not at cluster2's API server"),
        "mesh apply",
    );
    repaired(&w);
}

#[test]
fn a_reader_without_its_cluster_role_binding_is_denied() {
    let w = applied(SEED, false);
    let api: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
        Api::all(w.client("kind-cluster2"));
    w.rt.block_on(api.delete(
        "istio-reader-clusterrole-istio-system",
        &DeleteParams::default(),
    ))
    .unwrap();
    let checks = fails_with(
        &w,
        "cluster2",
        "link cluster2/attach: permissions",
        "may not list pods, watch pods, list services",
        "kubectl --context kind-cluster2 auth can-i list pods --as system:serviceaccount:istio-system:istio-reader-service-account",
    );
    // The token itself is still accepted: only what it may do is gone.
    assert!(
        checks
            .iter()
            .any(|c| c["check"] == "link cluster2/attach: token" && c["status"] == "PASS")
    );
    repaired(&w);
}

/// The remote's reader ClusterRole without what the external control
/// plane writes there (the root's ConfigMaps) and without its token
/// reviews: still readable, but istiod could neither publish the root nor
/// authenticate the remote's workloads. Each is named.
#[test]
fn a_reader_that_may_only_read_is_denied_what_istiod_writes_and_reviews() {
    let w = applied(SEED, false);
    let api: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(w.client("kind-cluster2"));
    merge_patch(
        &api,
        &w,
        "istio-reader-clusterrole-istio-system",
        json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]}),
    );
    let (_, checks) = check(&w, &[]);
    let c = checks
        .iter()
        .find(|c| c["check"] == "link cluster2/attach: permissions")
        .unwrap();
    assert_eq!(c["status"], "FAIL", "{c:#}");
    for denied in [
        "create tokenreviews.authentication.k8s.io",
        "create subjectaccessreviews.authorization.k8s.io",
        "create configmaps",
        "update configmaps",
        "patch mutatingwebhookconfigurations.admissionregistration.k8s.io",
        "update validatingwebhookconfigurations.admissionregistration.k8s.io",
    ] {
        assert!(
            c["detail"].as_str().unwrap().contains(denied),
            "{denied}: {c:#}"
        );
    }
    assert!(
        !c["detail"].as_str().unwrap().contains("list pods"),
        "{c:#}"
    );
    let fix = c["fix"].as_str().unwrap();
    assert!(
        fix.contains("mesh apply --replace cluster2/install-remote"),
        "{fix}"
    );
    // The fix it names, run.
    repaired_by(&w, &["--replace", "cluster2/install-remote"]);
}

#[test]
fn a_cacerts_of_another_root_is_found() {
    let w = applied(TRUSTED, true);
    let (code, checks) = check(&w, &[]);
    assert_eq!(code, 0, "{checks:#?}");
    for cluster in ["cluster1", "cluster2"] {
        assert!(
            checks.iter().any(|c| c["cluster"] == cluster
                && c["check"] == "cacerts"
                && c["status"] == "PASS"),
            "{checks:#?}"
        );
    }
    assert!(
        checks
            .iter()
            .any(|c| c["cluster"] == "cluster1" && c["check"] == "istiod sees cluster2"),
        "{checks:#?}"
    );
    // A cacerts made by hand from another root.
    let (root, key) = providers::ca::new_root("another root").unwrap();
    let ca = providers::ca::intermediate(&root, &key, "cluster1", 365).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let secrets: Api<Secret> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    merge_patch(
        &secrets,
        &w,
        "cacerts",
        json!({"data": {
            "ca-cert.pem": b64.encode(&ca.cert_pem),
            "ca-key.pem": b64.encode(ca.key_pem.expose()),
            "root-cert.pem": b64.encode(&ca.root_pem),
            "cert-chain.pem": b64.encode(&ca.chain_pem),
        }}),
    );
    fails_with(
        &w,
        "cluster1",
        "cacerts",
        "its root-cert.pem is not the mesh's root",
        "mesh apply",
    );
    // Only the root-cert.pem put back: the intermediate still does not chain.
    let mesh_root = std::fs::read_to_string(w.path("certs/root-cert.pem")).unwrap();
    merge_patch(
        &secrets,
        &w,
        "cacerts",
        json!({"data": {"root-cert.pem": b64.encode(&mesh_root)}}),
    );
    fails_with(
        &w,
        "cluster1",
        "cacerts",
        "does not chain to the mesh's root",
        "mesh apply",
    );
    repaired(&w);
}

#[test]
fn a_remote_pilot_address_changed_by_hand_is_found() {
    let w = applied(SEED, false);
    let cms: Api<ConfigMap> = Api::namespaced(w.client("kind-cluster2"), "istio-system");
    let live = w.rt.block_on(cms.get("values")).unwrap();
    let mut values: Value = serde_json::from_str(&live.data.unwrap()["merged-values"]).unwrap();
    values["global"]["remotePilotAddress"] = json!("192.0.2.99");
    merge_patch(
        &cms,
        &w,
        "values",
        json!({"data": {"merged-values": values.to_string()}}),
    );
    fails_with(
        &w,
        "cluster2",
        "remotePilotAddress",
        "`192.0.2.99` in ConfigMap istio-system/values, but cluster1's east-west address is",
        "mesh apply",
    );
    repaired(&w);
}

/// The remote's pilot address changed where it routes (its EndpointSlice,
/// as Istio's chart writes it) while the recorded values still match.
#[test]
fn a_remote_istiod_endpoint_changed_by_hand_is_found() {
    let w = applied(SEED, false);
    let slices: Api<kube::api::DynamicObject> = Api::namespaced_with(
        w.client("kind-cluster2"),
        "istio-system",
        &kube::api::ApiResource {
            group: "discovery.k8s.io".into(),
            version: "v1".into(),
            api_version: "discovery.k8s.io/v1".into(),
            kind: "EndpointSlice".into(),
            plural: "endpointslices".into(),
        },
    );
    merge_patch(
        &slices,
        &w,
        "istiod",
        json!({"endpoints": [{"addresses": ["192.0.2.98"]}]}),
    );
    fails_with(
        &w,
        "cluster2",
        "remotePilotAddress",
        "EndpointSlice istio-system/istiod routes istiod's traffic to 192.0.2.98",
        "mesh apply --replace cluster2/install-remote",
    );
    repaired_by(&w, &["--replace", "cluster2/install-remote"]);
}

#[test]
fn a_deleted_remote_secret_is_missing_from_istiods_view() {
    let w = applied(SEED, false);
    let secrets: Api<Secret> = Api::namespaced(w.client("kind-cluster1"), "istio-system");
    w.rt.block_on(secrets.delete("istio-remote-secret-cluster2", &DeleteParams::default()))
        .unwrap();
    fails_with(
        &w,
        "cluster1",
        "istiod sees cluster2",
        "istiod does not list cluster2: link cluster2/attach does not work",
        "link cluster2/attach",
    );
    fails_with(
        &w,
        "cluster2",
        "link cluster2/attach: remote secret",
        "missing in `cluster1`",
        "mesh apply",
    );
    repaired(&w);
}

#[test]
fn an_unreachable_cluster_is_one_fail_and_the_others_are_checked() {
    let w = applied(SEED, false);
    w.cluster("kind-cluster2").set_faults(kubesim::Faults {
        refuse_connections: true,
        ..Default::default()
    });
    let (code, checks) = check(&w, &[]);
    assert_eq!(code, 2, "{checks:#?}");
    let fails = failed(&checks);
    assert_eq!(fails.len(), 1, "{fails:#?}");
    assert_eq!(fails[0]["cluster"], "cluster2");
    assert_eq!(fails[0]["check"], "api server");
    assert!(
        fails[0]["fix"]
            .as_str()
            .unwrap()
            .contains("kubectl --context kind-cluster2 version"),
        "{:#}",
        fails[0]
    );
    // cluster1 was checked in full.
    for name in [
        "api server",
        "istio-system",
        "istiod",
        "east-west gateway",
        "state",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c["cluster"] == "cluster1" && c["check"] == name && c["status"] == "PASS"),
            "cluster1 {name} not passed: {checks:#?}"
        );
    }
    // The text form says it once, too.
    let o = w.mesh(&["check"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(text(&o).matches("FAIL").count(), 1, "{}", text(&o));
}

/// Every object of a cluster with its resourceVersion.
fn versions(w: &World, context: &str) -> Vec<(String, String)> {
    let cluster = w.cluster(context);
    let store = cluster.store();
    let mut out = Vec::new();
    for t in &store.types {
        for o in store.all(&t.group, &t.plural) {
            let at = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            out.push((
                format!(
                    "{}/{} {}/{}",
                    t.group,
                    t.plural,
                    at("/metadata/namespace"),
                    at("/metadata/name")
                ),
                at("/metadata/resourceVersion"),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn a_check_changes_nothing() {
    let w = applied(TRUSTED, true);
    let before: Vec<_> = CONTEXTS.iter().map(|c| versions(&w, c)).collect();
    assert!(before.iter().all(|v| v.len() > 20), "{before:?}");
    for c in CONTEXTS {
        w.cluster(c).clear_requests();
    }
    let (code, checks) = check(&w, &[]);
    assert_eq!(code, 0, "{checks:#?}");
    let after: Vec<_> = CONTEXTS.iter().map(|c| versions(&w, c)).collect();
    assert_eq!(before, after, "a check changed an object");
    for c in CONTEXTS {
        let requests = w.cluster(c).requests();
        assert!(
            requests.iter().any(|r| r.path.ends_with("tokenreviews")),
            "{c}: no TokenReview"
        );
        for r in requests {
            assert!(
                r.method == "GET" || (r.method == "POST" && r.path.ends_with("reviews")),
                "{c}: a check sent {} {}",
                r.method,
                r.path
            );
        }
    }
}

/// A cluster that answers its version and then too slowly is one FAIL
/// after the deadline, with the healthy cluster's lines still shown: a
/// check never hangs.
#[test]
fn a_cluster_that_answers_too_slowly_is_a_fail_at_the_deadline() {
    let w = applied(SEED, false);
    // Every request to cluster2 takes 3 s; the checks of a cluster may take 2.
    w.cluster("kind-cluster2").set_faults(kubesim::Faults {
        latency: std::time::Duration::from_secs(3),
        ..Default::default()
    });
    let o = w
        .command(&["check", "--format", "json"])
        .env("MESH_CHECK_DEADLINE_SECS", "2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let checks: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let deadline: Vec<&Value> = checks.iter().filter(|c| c["check"] == "deadline").collect();
    assert!(
        deadline
            .iter()
            .all(|c| c["cluster"] == "cluster2" && c["status"] == "FAIL")
            && !deadline.is_empty(),
        "{checks:#?}"
    );
    assert!(
        deadline[0]["detail"]
            .as_str()
            .unwrap()
            .contains("did not finish within 2 s"),
        "{deadline:#?}"
    );
    // cluster1 was checked in full.
    assert!(
        checks
            .iter()
            .any(|c| c["cluster"] == "cluster1" && c["check"] == "istiod" && c["status"] == "PASS"),
        "{checks:#?}"
    );
}

/// No answer is read whole past the size cap (`MESH_MAX_RESPONSE_MIB`,
/// 256 MiB by default): a cluster sending more is a failure that says so,
/// not a process that grows without bound, and the other clusters are
/// checked.
#[test]
fn an_answer_past_the_size_cap_is_a_failure_that_says_so() {
    let w = applied(SEED, false);
    {
        let c1 = w.cluster("kind-cluster1");
        let mut store = c1.store();
        let rt = store.find_type("apps", "v1", "deployments").unwrap();
        let mut istiod = store.get(&rt, "istio-system", "istiod").unwrap();
        istiod["metadata"]["annotations"]["padding"] = Value::from("x".repeat(2 << 20));
        store.delete(&rt, "istio-system", "istiod").unwrap();
        istiod["metadata"]
            .as_object_mut()
            .unwrap()
            .retain(|k, _| k == "name" || k == "namespace" || k == "labels" || k == "annotations");
        store
            .create(&rt, "istio-system", istiod, "kubectl")
            .unwrap();
    }
    let o = w
        .command(&["check", "--format", "json"])
        .env("MESH_MAX_RESPONSE_MIB", "1")
        .output()
        .unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check printed no JSON ({e}):\n{}", text(&o)));
    assert_eq!(o.status.code(), Some(2), "{checks:#?}");
    let capped: Vec<&Value> = checks
        .iter()
        .filter(|c| {
            c["cluster"] == "cluster1"
                && c["status"] != "PASS"
                && c["detail"].as_str().is_some_and(|d| {
                    d.contains("the answer is larger than the 1 MiB mesh reads from one request")
                })
        })
        .collect();
    assert!(!capped.is_empty(), "{checks:#?}");
    assert!(
        checks.iter().any(|c| c["cluster"] == "cluster2"
            && c["check"] == "api server"
            && c["status"] == "PASS"),
        "{checks:#?}"
    );
}
