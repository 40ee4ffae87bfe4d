//! Regression tests for issue "Hardening III", each failing without its
//! fix, on kubesim (the project's API simulator): mesh deletes only the
//! Secrets it made, checked by name and labels on the live object. A
//! foreign token Secret under the name a rotation gives the link's new
//! token fails the apply and is left; a remote secret edited by hand to
//! hold another token never makes mesh revoke that token's Secret; and a
//! state record edited to name another Secret (or a remote secret no
//! longer labelled mesh's) makes destroy leave it, saying so.
//!
//! Tokens are compared by their sha256 only: no assertion message prints
//! one.

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::support::{World, succeeded as ok, text};

const SEED: &str = include_str!("../../examples/primary-remote.toml");
const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];
const NS: &str = "istio-system";
const READER: &str = "istio-reader-service-account";

fn sha(s: &str) -> String {
    providers::sha256_hex(s.as_bytes())[..16].to_string()
}

fn b64(v: &Value) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn create_secret(w: &World, context: &str, ns: &str, doc: Value) {
    let s: Secret = serde_json::from_value(doc).unwrap();
    let api: Api<Secret> = Api::namespaced(w.client(context), ns);
    w.rt.block_on(api.create(&PostParams::default(), &s))
        .unwrap();
}

/// ServiceAccount `istio-system/name` in `context`.
fn create_service_account(w: &World, context: &str, name: &str) {
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": NS}})).unwrap();
    let api: Api<ServiceAccount> = Api::namespaced(w.client(context), NS);
    w.rt.block_on(api.create(&PostParams::default(), &sa))
        .unwrap();
}

/// A token Secret `istio-system/name` of ServiceAccount `sa`, with no
/// label of mesh's: what another tool or a person makes.
fn foreign_token_secret(name: &str, sa: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": name, "namespace": NS,
            "annotations": {"kubernetes.io/service-account.name": sa}}
    })
}

/// The token in Secret `istio-system/name` of `context`.
fn token_in(w: &World, context: &str, name: &str) -> Option<String> {
    b64(w
        .get(context, "", "secrets", NS, name)?
        .pointer("/data/token")?)
}

/// Waits (at most 10 s) for the token controller to fill Secret
/// `istio-system/name` of `context`; its token.
fn filled(w: &World, context: &str, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = token_in(w, context, name) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "the token controller filled no token in {name}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The token cluster1's remote secret of cluster2 holds.
fn held(w: &World) -> Option<String> {
    let s = w.get(
        "kind-cluster1",
        "",
        "secrets",
        NS,
        "istio-remote-secret-cluster2",
    )?;
    let kc: Value = serde_saphyr::from_str(&b64(s.pointer("/data/cluster2")?)?).ok()?;
    kc.pointer("/users/0/user/token")
        .and_then(Value::as_str)
        .map(String::from)
}

/// Edits cluster1's remote secret of cluster2 by hand to hold `token`.
fn hold(w: &World, token: &str) {
    use base64::Engine as _;
    let mut secret = w
        .get(
            "kind-cluster1",
            "",
            "secrets",
            NS,
            "istio-remote-secret-cluster2",
        )
        .unwrap();
    let kc = b64(&secret["data"]["cluster2"])
        .unwrap()
        .replace(&held(w).unwrap(), token);
    secret["data"]["cluster2"] = json!(base64::engine::general_purpose::STANDARD.encode(&kc));
    let s: Secret = serde_json::from_value(secret).unwrap();
    let api: Api<Secret> = Api::namespaced(w.client("kind-cluster1"), NS);
    w.rt.block_on(api.replace("istio-remote-secret-cluster2", &PostParams::default(), &s))
        .unwrap();
    assert_eq!(held(w).map(|t| sha(&t)), Some(sha(token)));
}

/// (a) A rotation makes the link's new token under the name the remote
/// secret does not hold, `istio-reader-token-cluster1-2`. A token Secret
/// of another ServiceAccount, with no label of mesh's, under that name is
/// not left by an interrupted apply: the apply fails naming it, its
/// cluster and what makes it not mesh's, deletes nothing, and the link
/// keeps its token.
#[test]
fn a_foreign_secret_under_the_new_token_name_fails_the_rotation_and_is_left() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let before = held(&w).unwrap();
    assert_eq!(
        token_in(&w, "kind-cluster2", "istio-reader-token-cluster1").map(|t| sha(&t)),
        Some(sha(&before))
    );
    create_service_account(&w, "kind-cluster2", "other-app");
    create_secret(
        &w,
        "kind-cluster2",
        NS,
        foreign_token_secret("istio-reader-token-cluster1-2", "other-app"),
    );
    let foreign = filled(&w, "kind-cluster2", "istio-reader-token-cluster1-2");

    let o = w.mesh(&["apply", "--auto-approve", "--replace", "cluster2/attach"]);
    let out = text(&o);
    assert!(!o.status.success(), "the rotation went ahead:\n{out}");
    for want in [
        "Secret istio-system/istio-reader-token-cluster1-2 in cluster `cluster2`",
        "it is not mesh's",
        "it is not labelled app.kubernetes.io/managed-by: mesh",
        "it is a token of ServiceAccount `other-app`, not of the reader `istio-reader-service-account`",
        "remove it by hand",
    ] {
        assert!(out.contains(want), "lacks `{want}`:\n{out}");
    }
    // Left as it was, with its token; the link still holds its own.
    let left = w
        .get(
            "kind-cluster2",
            "",
            "secrets",
            NS,
            "istio-reader-token-cluster1-2",
        )
        .expect("mesh deleted the foreign Secret");
    assert_eq!(
        left["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "other-app"
    );
    assert_eq!(
        token_in(&w, "kind-cluster2", "istio-reader-token-cluster1-2").map(|t| sha(&t)),
        Some(sha(&foreign))
    );
    assert_eq!(held(&w).map(|t| sha(&t)), Some(sha(&before)));
    assert!(w.exists(
        "kind-cluster2",
        "",
        "secrets",
        NS,
        "istio-reader-token-cluster1"
    ));
}

/// (b) A remote secret edited by hand to hold another token: the next
/// apply gives the link its own token again, but never revokes the token
/// it found there unless it is the reader token the links shared
/// (istioctl's, or mesh's). Neither another ServiceAccount's token Secret
/// nor one a person made for the reader is deleted; the log says each
/// was kept, and why.
#[test]
fn a_remote_secret_edited_to_hold_another_token_never_revokes_that_tokens_secret() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    create_service_account(&w, "kind-cluster2", "other-app");
    for (name, sa, why) in [
        (
            "other-app-token",
            "other-app",
            "it is a token of ServiceAccount `other-app`, not of the reader `istio-reader-service-account`",
        ),
        (
            "my-reader-token",
            READER,
            "it is neither istioctl's token Secret of the reader (istio-reader-service-account-istio-remote-secret-token) nor labelled app.kubernetes.io/managed-by: mesh",
        ),
    ] {
        create_secret(&w, "kind-cluster2", NS, foreign_token_secret(name, sa));
        let token = filled(&w, "kind-cluster2", name);
        hold(&w, &token);
        let o = w.mesh(&["plan", "--detailed-exitcode"]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));

        let out = ok(&w.mesh(&["-v", "apply", "--auto-approve"]));
        assert!(
            out.contains(&format!(
                "kept token Secret istio-system/{name} in `cluster2`: {why}"
            )),
            "{name}:\n{out}"
        );
        assert!(
            !out.contains(&format!("deleted Secret istio-system/{name}")),
            "{name}:\n{out}"
        );
        assert_eq!(
            token_in(&w, "kind-cluster2", name).map(|t| sha(&t)),
            Some(sha(&token)),
            "{name}: mesh deleted the token Secret the remote secret was edited to hold"
        );
        // The link has its own token again.
        let own = held(&w).unwrap();
        assert_ne!(sha(&own), sha(&token), "{name}");
        let own_secret = w.state_json()["steps"]["cluster2/attach"]["outputs"]["token_secret"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(
            token_in(&w, "kind-cluster2", &own_secret).map(|t| sha(&t)),
            Some(sha(&own)),
            "{name}"
        );
        w.assert_clean();
    }
}

/// (c) A state record edited to name another Secret as the link's token
/// (`kube-system/some-secret`, which exists in the remote): destroy does
/// not delete it, and its log says it was left and why; the remote secret
/// in the primary, mesh's by its name and labels, is still deleted.
#[test]
fn a_tampered_token_secret_in_the_state_is_left_by_destroy() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    create_secret(
        &w,
        "kind-cluster2",
        "kube-system",
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "some-secret", "namespace": "kube-system"},
            "stringData": {"password": "hunter2"}}),
    );
    let path = w.state_path();
    let mut st: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    st["steps"]["cluster2/attach"]["outputs"]["token_secret"] = json!("kube-system/some-secret");
    std::fs::write(&path, serde_json::to_vec_pretty(&st).unwrap()).unwrap();

    let out = ok(&w.mesh(&["-v", "destroy", "--auto-approve"]));
    assert!(
        w.exists("kind-cluster2", "", "secrets", "kube-system", "some-secret"),
        "destroy deleted the Secret the tampered state named:\n{out}"
    );
    assert!(
        out.contains(
            "left Secret kube-system/some-secret in `cluster2`, which the record names as the link's token: it is not in istio-system, the reader's namespace"
        ),
        "{out}"
    );
    assert!(
        out.contains("deleted Secret istio-system/istio-remote-secret-cluster2"),
        "{out}"
    );
    assert!(!w.exists(
        "kind-cluster1",
        "",
        "secrets",
        NS,
        "istio-remote-secret-cluster2"
    ));
}

/// (c) The Secret in the primary: a remote secret no longer labelled
/// `istio/multiCluster` is not mesh's to delete; destroy leaves it and
/// says so, and still revokes the link's own token (mesh's, checked live).
#[test]
fn a_remote_secret_without_mesh_s_label_is_left_by_destroy() {
    let w = World::new(SEED, CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let api: Api<Secret> = Api::namespaced(w.client("kind-cluster1"), NS);
    let patch = json!({"metadata": {"labels": {"istio/multiCluster": null}}});
    w.rt.block_on(api.patch(
        "istio-remote-secret-cluster2",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    ))
    .unwrap();

    let out = ok(&w.mesh(&[
        "-v",
        "destroy",
        "--auto-approve",
        "--target",
        "cluster2/attach",
    ]));
    assert!(
        out.contains(
            "left Secret istio-system/istio-remote-secret-cluster2 in `cluster1`: it is not labelled istio/multiCluster: \"true\""
        ),
        "{out}"
    );
    assert!(
        w.exists(
            "kind-cluster1",
            "",
            "secrets",
            NS,
            "istio-remote-secret-cluster2"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "revoked the link's token: deleted Secret istio-system/istio-reader-token-cluster1 in `cluster2`"
        ),
        "{out}"
    );
    assert!(!w.exists(
        "kind-cluster2",
        "",
        "secrets",
        NS,
        "istio-reader-token-cluster1"
    ));
}
