//! Each link's own reader token, on kubesim (the project's API
//! simulator): every remote secret holds a token of its own, in a Secret
//! of the cluster it reads; removing a link revokes exactly its token; a
//! state from before links had their own token migrates with no moment
//! in which a remote secret holds a token its cluster refuses; and
//! `--replace` rotates a link's token the same way.
//!
//! Tokens are compared and reported by their sha256 only: no assertion
//! message prints one.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{self, World, repo, text};

const NS: &str = "istio-system";
const SHARED: &str = "istio-reader-service-account-istio-remote-secret-token";

/// Two primaries (cluster1, cluster2) and cluster3, a remote of cluster1.
fn two_primaries_and_a_remote() -> String {
    let mut toml = std::fs::read_to_string(repo().join("examples/multi-primary.toml")).unwrap();
    toml.push_str(
        "\n[[cluster]]\nname = \"cluster3\"\ncontext = \"kind-cluster3\"\nnetwork = \"network1\"\n\
         role = \"remote\"\nprimary = \"cluster1\"\n",
    );
    toml
}

/// The seed with a second remote: cluster1, and cluster2 and cluster3 its remotes.
fn a_primary_and_two_remotes() -> String {
    let mut toml = std::fs::read_to_string(repo().join("examples/primary-remote.toml")).unwrap();
    toml.push_str(
        "\n[[cluster]]\nname = \"cluster3\"\ncontext = \"kind-cluster3\"\nnetwork = \"network1\"\n\
         role = \"remote\"\nprimary = \"cluster1\"\n",
    );
    toml
}

const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2", "kind-cluster3"];

fn ctx(cluster: &str) -> String {
    format!("kind-{cluster}")
}

fn sha(s: &str) -> String {
    providers::sha256_hex(s.as_bytes())[..16].to_string()
}

fn secrets(w: &World, context: &str) -> Api<Secret> {
    Api::namespaced(w.client(context), NS)
}

fn create_secret(w: &World, context: &str, doc: Value) {
    let s: Secret = serde_json::from_value(doc).unwrap();
    w.rt.block_on(secrets(w, context).create(&PostParams::default(), &s))
        .unwrap();
}

fn replace_secret(w: &World, context: &str, doc: Value) {
    let s: Secret = serde_json::from_value(doc).unwrap();
    let name = s.metadata.name.clone().unwrap();
    w.rt.block_on(secrets(w, context).replace(&name, &PostParams::default(), &s))
        .unwrap();
}

fn delete_secret(w: &World, context: &str, name: &str) {
    w.rt.block_on(secrets(w, context).delete(name, &DeleteParams::default()))
        .unwrap();
}

fn b64(v: &Value) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The token in Secret `ns/name` of `context`.
fn token_in(w: &World, context: &str, name: &str) -> Option<String> {
    b64(w
        .get(context, "", "secrets", NS, name)?
        .pointer("/data/token")?)
}

/// The token the remote secret of `cluster` in `holder` holds.
fn held(w: &World, holder: &str, cluster: &str) -> Option<String> {
    let s = w.get(
        &ctx(holder),
        "",
        "secrets",
        NS,
        &format!("istio-remote-secret-{cluster}"),
    )?;
    let kc: Value = serde_saphyr::from_str(&b64(s.pointer(&format!("/data/{cluster}"))?)?).ok()?;
    kc.pointer("/users/0/user/token")
        .and_then(Value::as_str)
        .map(String::from)
}

/// A TokenReview of `token` in `context`, as the simulated API server answers it.
fn reviewed(w: &World, context: &str, token: &str) -> bool {
    let answer = kubesim::review::token_review(
        &w.cluster(context),
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}),
    );
    answer["status"]["authenticated"] == true
}

/// When `context`'s API server last answered `verb` on a path ending in
/// `path_end` (successfully).
fn last(w: &World, context: &str, verb: &str, path_end: &str) -> std::time::SystemTime {
    w.cluster(context)
        .requests()
        .into_iter()
        .filter(|r| r.verb == verb && r.path.split('?').next().unwrap().ends_with(path_end))
        .filter(|r| r.status < 300)
        .map(|r| r.at)
        .max()
        .unwrap_or_else(|| panic!("no {verb} of …{path_end} in {context}"))
}

/// Waits (at most 10 s) until the API server of `context` refuses `token`
/// (its revocation is seen by the server's authenticator).
fn refused(w: &World, context: &str, token: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !reviewed(w, context, token) && !w.cluster(context).authorised(token) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The links of the state: `(step, cluster, holder)`.
fn links(w: &World) -> Vec<(String, String, String)> {
    let st = w.state_json();
    st["steps"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["kind"] == "attach")
        .map(|(id, r)| {
            let cluster = id.split('/').next().unwrap().to_string();
            let holder = r["context"]
                .as_str()
                .unwrap()
                .trim_start_matches("kind-")
                .to_string();
            (id.clone(), cluster, holder)
        })
        .collect()
}

/// Every link's remote secret holds the token of its own Secret
/// `istio-reader-token-<holder>` in the cluster it reads, which that
/// cluster accepts; no two links share one; the state records the token
/// Secret and the token's fingerprint, never the token.
fn each_link_has_its_own_token(w: &World) -> BTreeMap<String, String> {
    let st = std::fs::read_to_string(w.state_path()).unwrap();
    let mut tokens = BTreeMap::new();
    for (step, cluster, holder) in links(w) {
        let name = format!("istio-reader-token-{holder}");
        let own = token_in(w, &ctx(&cluster), &name)
            .or_else(|| token_in(w, &ctx(&cluster), &format!("{name}-2")))
            .unwrap_or_else(|| panic!("{step}: no token Secret {name} in {cluster}"));
        let held = held(w, &holder, &cluster).unwrap_or_else(|| panic!("{step}: no token held"));
        assert_eq!(
            sha(&held),
            sha(&own),
            "{step}: the remote secret holds another token"
        );
        assert!(reviewed(w, &ctx(&cluster), &held), "{step}: token refused");
        let rec = &w.state_json()["steps"][&step]["outputs"];
        assert!(
            rec["token_secret"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{NS}/{name}")),
            "{rec}"
        );
        assert_eq!(
            rec["token_sha256"].as_str().unwrap()[..16],
            sha(&own),
            "{step}"
        );
        assert!(!st.contains(&held), "{step}: the state holds the token");
        assert!(
            tokens.insert(sha(&held), step.clone()).is_none(),
            "{step} shares a token"
        );
        assert!(
            !w.exists(&ctx(&cluster), "", "secrets", NS, SHARED),
            "{cluster}"
        );
    }
    tokens.into_iter().map(|(s, step)| (step, s)).collect()
}

#[test]
fn each_link_has_its_own_token_and_a_leaving_primary_revokes_exactly_its_own() {
    let w = World::new(&two_primaries_and_a_remote(), CONTEXTS).with_test_root();
    w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();
    let tokens = each_link_has_its_own_token(&w);
    assert_eq!(
        tokens.keys().collect::<Vec<_>>(),
        [
            "cluster1/attach@cluster2",
            "cluster2/attach@cluster1",
            "cluster3/attach",
            "cluster3/attach@cluster2"
        ]
    );
    // cluster3 is read by both control planes, each with its own token.
    let via1 = held(&w, "cluster1", "cluster3").unwrap();
    let via2 = held(&w, "cluster2", "cluster3").unwrap();
    let c1_via2 = held(&w, "cluster2", "cluster1").unwrap();

    // cluster2 leaves: its links' tokens (in cluster1 and cluster3) are
    // revoked; cluster1's token for cluster3 still works.
    let toml = w.mesh_toml();
    let without2 = toml.replace(
        "[[cluster]]\nname = \"cluster2\"\ncontext = \"kind-cluster2\"\nnetwork = \"network1\"\nrole = \"primary\"\n",
        "",
    );
    assert_ne!(toml, without2);
    w.write_mesh(&without2);
    let plan = w.ok(&["plan"]);
    assert!(
        plan.contains("cluster3/attach@cluster2: Secret istio-system/istio-remote-secret-cluster3 in cluster2: cluster2's istiod stops seeing cluster3's services; the link's token (istio-reader-token-cluster2 in cluster3) is revoked"),
        "{plan}"
    );
    let out = w.ok(&["apply", "--auto-approve"]);
    w.assert_clean();
    assert!(
        !w.exists(
            "kind-cluster3",
            "",
            "secrets",
            NS,
            "istio-reader-token-cluster2"
        ),
        "{out}"
    );
    assert!(!w.exists(
        "kind-cluster1",
        "",
        "secrets",
        NS,
        "istio-reader-token-cluster2"
    ));
    assert!(
        refused(&w, "kind-cluster3", &via2),
        "cluster2's token for cluster3 still works"
    );
    assert!(
        refused(&w, "kind-cluster1", &c1_via2),
        "cluster2's token for cluster1 still works"
    );
    // The other link into cluster3 is untouched and accepted.
    assert_eq!(sha(&held(&w, "cluster1", "cluster3").unwrap()), sha(&via1));
    assert!(reviewed(&w, "kind-cluster3", &via1));
    assert!(w.cluster("kind-cluster3").authorised(&via1));
    let (code, checks) = check(&w);
    assert_eq!(code, 0, "{checks:#?}");
    let token_check = checks
        .iter()
        .find(|c| c["check"] == "link cluster3/attach: token")
        .unwrap();
    assert!(
        token_check["detail"]
            .as_str()
            .unwrap()
            .contains("(the link's own token, Secret istio-system/istio-reader-token-cluster1)"),
        "{token_check}"
    );
}

/// `mesh check --format json`: its exit code and its checks.
fn check(w: &World) -> (i32, Vec<Value>) {
    let o = w.mesh(&["check", "--format", "json"]);
    let checks: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check printed no JSON ({e}):\n{}", text(&o)));
    (
        o.status.code().unwrap_or(-1),
        checks.as_array().cloned().unwrap_or_default(),
    )
}

/// Turns an applied mesh into what mesh recorded and left before each link
/// had its own token: one reader token Secret per cluster (as `istioctl
/// create-remote-secret` names it), every remote secret holding it, no
/// link token Secrets, and `attach` records of the remote secret alone.
fn as_before_link_tokens(w: &World) {
    let clusters: std::collections::BTreeSet<String> =
        links(w).into_iter().map(|(_, c, _)| c).collect();
    for c in &clusters {
        create_secret(
            w,
            &ctx(c),
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                "metadata": {"name": SHARED, "namespace": NS,
                    "annotations": {"kubernetes.io/service-account.name": "istio-reader-service-account"}}
            }),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let shared = |c: &str| token_in(w, &ctx(c), SHARED);
    while clusters.iter().any(|c| shared(c).is_none()) {
        assert!(
            Instant::now() < deadline,
            "the token controller filled no token"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let path = w.state_path();
    let mut st: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (step, cluster, holder) in links(w) {
        let token = shared(&cluster).unwrap();
        let own = held(w, &holder, &cluster).unwrap();
        let mut secret = w
            .get(
                &ctx(&holder),
                "",
                "secrets",
                NS,
                &format!("istio-remote-secret-{cluster}"),
            )
            .unwrap();
        let kc = b64(&secret["data"][&cluster])
            .unwrap()
            .replace(&own, &token);
        use base64::Engine as _;
        secret["data"][&cluster] = json!(base64::engine::general_purpose::STANDARD.encode(&kc));
        replace_secret(w, &ctx(&holder), secret);
        delete_secret(w, &ctx(&cluster), &format!("istio-reader-token-{holder}"));
        let rec = &mut st["steps"][&step];
        let input = rec["input"].as_str().unwrap();
        let old = input.split("---\n").next().unwrap().to_string();
        rec["input_fingerprint"] = json!(providers::sha256_hex(old.as_bytes()));
        rec["input"] = json!(old);
        rec["outputs"] = json!({"kubeconfig_sha256": providers::sha256_hex(kc.as_bytes())});
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&st).unwrap()).unwrap();
}

/// Watches every link while `run` runs: whenever a remote secret holds a
/// token its cluster refuses (the same token before and after the
/// review, so the sample is not a replacement caught half-way), that is a
/// gap. Returns what `run` returned and the gaps seen, and how many
/// samples were taken.
fn watching_links<T>(w: &World, run: impl FnOnce() -> T) -> (T, Vec<String>, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let ls = links(w);
    let (gaps, samples) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut gaps = Vec::new();
            let mut samples = 0;
            while !stop.load(Ordering::SeqCst) {
                for (step, cluster, holder) in &ls {
                    let Some(before) = held(w, holder, cluster) else {
                        gaps.push(format!("{step}: no remote secret"));
                        continue;
                    };
                    let ok = reviewed(w, &ctx(cluster), &before);
                    let after = held(w, holder, cluster);
                    samples += 1;
                    if !ok && after.as_deref() == Some(before.as_str()) {
                        gaps.push(format!(
                            "{step}: holds refused token sha256:{}",
                            sha(&before)
                        ));
                    }
                }
            }
            (gaps, samples)
        });
        let out = run();
        stop.store(true, Ordering::SeqCst);
        let (gaps, samples) = watcher.join().unwrap();
        ((out, gaps), samples)
    });
    let ((out, gaps), samples) = (gaps, samples);
    eprintln!(
        "{samples} samples of the links' tokens while it ran, {} gaps",
        gaps.len()
    );
    (out, gaps, samples)
}

#[test]
fn a_state_from_before_link_tokens_migrates_with_no_moment_without_a_valid_token() {
    let w = World::new(&two_primaries_and_a_remote(), CONTEXTS).with_test_root();
    w.ok(&["apply", "--auto-approve"]);
    as_before_link_tokens(&w);
    let shared3 = token_in(&w, "kind-cluster3", SHARED).unwrap();
    // The plan updates each link, saying why.
    let plan = w.ok(&["plan"]);
    for (step, cluster, holder) in links(&w) {
        assert!(
            plan.contains(&format!("~ {step} (update)")),
            "{step}:\n{plan}"
        );
        assert!(
            plan.contains(&format!(
                "its own token: Secret istio-system/istio-reader-token-{holder} in {cluster}, instead of the reader token the links to {cluster} share"
            )),
            "{step}:\n{plan}"
        );
    }
    assert!(
        plan.contains("Plan: 0 to create, 4 to update, 0 to delete."),
        "{plan}"
    );

    // Only cluster1's link to cluster3 first: cluster2 still holds the shared
    // token of cluster3, which stays.
    let (out, gaps, samples) = watching_links(&w, || {
        w.ok(&[
            "-v",
            "apply",
            "--auto-approve",
            "--target",
            "cluster3/attach",
        ])
    });
    assert!(
        gaps.is_empty() && samples > 0,
        "{gaps:?} ({samples} samples)"
    );
    assert!(
        out.contains("kept the shared token Secret istio-system/istio-reader-service-account-istio-remote-secret-token in `cluster3`: the remote secret in `cluster2` still holds it"),
        "{out}"
    );
    assert!(w.exists("kind-cluster3", "", "secrets", NS, SHARED));
    assert!(reviewed(&w, "kind-cluster3", &shared3));

    // The rest: every link gets its own, then the shared tokens go.
    let (out, gaps, samples) = watching_links(&w, || w.ok(&["-v", "apply", "--auto-approve"]));
    assert!(
        gaps.is_empty() && samples > 0,
        "{gaps:?} ({samples} samples)"
    );
    assert!(
        out.contains("revoked the reader token the links shared: deleted Secret istio-system/istio-reader-service-account-istio-remote-secret-token in `cluster3`"),
        "{out}"
    );
    each_link_has_its_own_token(&w);
    assert!(refused(&w, "kind-cluster3", &shared3));
    // cluster3's shared token went after both remote secrets had their own.
    let gone = last(&w, "kind-cluster3", "delete", &format!("/secrets/{SHARED}"));
    for holder in ["kind-cluster1", "kind-cluster2"] {
        assert!(last(&w, holder, "patch", "/secrets/istio-remote-secret-cluster3") < gone);
    }
    w.assert_clean();
}

#[test]
fn replace_rotates_a_link_token_with_no_gap_and_revokes_the_old_one() {
    let w = World::new(&a_primary_and_two_remotes(), CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let first = held(&w, "cluster1", "cluster2").unwrap();
    let other = held(&w, "cluster1", "cluster3").unwrap();
    assert_eq!(
        sha(&token_in(&w, "kind-cluster2", "istio-reader-token-cluster1").unwrap()),
        sha(&first)
    );
    let plan = w.ok(&["plan", "--replace", "cluster2/attach"]);
    assert!(plan.contains("replaced by --replace"), "{plan}");
    let (_, gaps, samples) = watching_links(&w, || {
        w.ok(&["apply", "--auto-approve", "--replace", "cluster2/attach"])
    });
    assert!(
        gaps.is_empty() && samples > 0,
        "{gaps:?} ({samples} samples)"
    );
    // In this order: the new token, the remote secret replaced in place,
    // the old token revoked.
    let made = last(
        &w,
        "kind-cluster2",
        "create",
        "/namespaces/istio-system/secrets",
    );
    let written = last(
        &w,
        "kind-cluster1",
        "patch",
        "/secrets/istio-remote-secret-cluster2",
    );
    let revoked = last(
        &w,
        "kind-cluster2",
        "delete",
        "/secrets/istio-reader-token-cluster1",
    );
    assert!(made < written && written < revoked);
    let second = held(&w, "cluster1", "cluster2").unwrap();
    assert_ne!(sha(&first), sha(&second));
    assert_eq!(
        sha(&token_in(&w, "kind-cluster2", "istio-reader-token-cluster1-2").unwrap()),
        sha(&second)
    );
    assert!(!w.exists(
        "kind-cluster2",
        "",
        "secrets",
        NS,
        "istio-reader-token-cluster1"
    ));
    assert!(refused(&w, "kind-cluster2", &first));
    assert!(reviewed(&w, "kind-cluster2", &second));
    // The other link is untouched.
    assert_eq!(sha(&held(&w, "cluster1", "cluster3").unwrap()), sha(&other));
    w.assert_clean();
    // Once more: back to the first name.
    w.ok(&["apply", "--auto-approve", "--replace", "cluster2/attach"]);
    assert!(w.exists(
        "kind-cluster2",
        "",
        "secrets",
        NS,
        "istio-reader-token-cluster1"
    ));
    assert!(!w.exists(
        "kind-cluster2",
        "",
        "secrets",
        NS,
        "istio-reader-token-cluster1-2"
    ));
    assert!(refused(&w, "kind-cluster2", &second));
    each_link_has_its_own_token(&w);
    w.assert_clean();
}

#[test]
fn a_revoked_link_token_is_drift_and_apply_issues_a_new_one() {
    let w = World::new(&a_primary_and_two_remotes(), CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let old = held(&w, "cluster1", "cluster2").unwrap();
    delete_secret(&w, "kind-cluster2", "istio-reader-token-cluster1");
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = text(&o);
    assert!(
        plan.contains("the link's token Secret istio-system/istio-reader-token-cluster1 in `cluster2` is gone (its token is revoked)")
            && plan.contains("Plan: 0 to create, 1 to update, 0 to delete."),
        "{plan}"
    );
    w.ok(&["apply", "--auto-approve"]);
    let new = held(&w, "cluster1", "cluster2").unwrap();
    assert_ne!(sha(&old), sha(&new));
    assert!(reviewed(&w, "kind-cluster2", &new));
    each_link_has_its_own_token(&w);
    w.assert_clean();
}

/// `rotate_after` (the `attach` kind's `Env::rotate_after`, which the mesh
/// file's `[credentials]` is to set): a link token older than it is drift,
/// with its age; a younger one is not. Read in-process, as refresh reads.
#[test]
fn a_link_token_older_than_rotate_after_is_drift_with_its_age() {
    use providers::kinds::attach;
    let w = World::new(&a_primary_and_two_remotes(), CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let st = w.state_json();
    let rec = &st["steps"]["cluster2/attach"];
    let outputs: BTreeMap<String, Value> = serde_json::from_value(rec["outputs"].clone()).unwrap();
    let recorded = providers::env::Recorded {
        input: rec["input"].as_str().unwrap(),
        outputs: &outputs,
    };
    let input = providers::StepInput::Attach(attach::Input {
        remote: "cluster2".into(),
        remote_context: "kind-cluster2".into(),
        primary: "cluster1".into(),
        api_server: None,
        remote_kubeconfig: None,
        reader: attach::Reader::default(),
    });
    let target = providers::Target {
        cluster: "cluster1".into(),
        context: "kind-cluster1".into(),
        kubeconfig: None,
    };
    let drift = |rotate_after: Duration| {
        let mut env = providers::env::Env::new(
            providers::cluster::Clusters::new(Some(w.set().kubeconfig_path())),
            providers::istioctl::Istioctl::new("istioctl"),
            None,
        );
        env.rotate_after = Some(rotate_after);
        let cx = providers::Ctx::new(&env, "cluster2/attach", &target);
        w.rt.block_on(providers::StepKind::Attach.read(cx, &recorded, Some(&input)))
            .unwrap()
            .drift
    };
    assert_eq!(
        drift(Duration::from_secs(90 * 86_400)),
        Vec::<String>::new()
    );
    let old = drift(Duration::ZERO);
    assert_eq!(
        old,
        [
            "the link's token istio-system/istio-reader-token-cluster1 in `cluster2` is 0 min old \
          (rotate_after 0 min): apply replaces it"
        ],
    );
}

/// kill -9 of `mesh apply --replace cluster2/attach` at points of the
/// rotation (right after the new token Secret is created, after the remote
/// secret is written, after the old token is deleted; the points are
/// watched for in the simulator's request log, then the process is killed
/// at once): the remote secret always holds a token its cluster accepts,
/// and a plain re-apply converges to one token Secret per link and a
/// clean plan. `MESH_SOAK_ROUNDS` rounds (default 6).
#[test]
fn killing_mesh_during_a_rotation_never_leaves_a_link_without_a_valid_token() {
    let rounds: usize = std::env::var("MESH_SOAK_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6);
    let w = World::new(&a_primary_and_two_remotes(), CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let mut killed = 0;
    for round in 0..rounds {
        let (c1, c2) = (w.cluster("kind-cluster1"), w.cluster("kind-cluster2"));
        let (from1, from2) = (c1.requests().len(), c2.requests().len());
        let point = round % 3;
        let hit = || {
            let ok = |r: &kubesim::RequestRecord| r.status < 300;
            match point {
                0 => c2.requests()[from2..]
                    .iter()
                    .any(|r| ok(r) && r.verb == "create" && r.path.contains("/secrets")),
                1 => c1.requests()[from1..].iter().any(|r| {
                    ok(r) && r.verb == "patch" && r.path.contains("istio-remote-secret-cluster2")
                }),
                _ => c2.requests()[from2..].iter().any(|r| {
                    ok(r) && r.verb == "delete" && r.path.contains("/secrets/istio-reader-token")
                }),
            }
        };
        if w.run_killed_when(
            &["apply", "--auto-approve", "--replace", "cluster2/attach"],
            hit,
        ) {
            killed += 1;
        }
        // Right after the kill: the link still holds a token cluster2 accepts.
        let token = held(&w, "cluster1", "cluster2").expect("no remote secret");
        assert!(
            reviewed(&w, "kind-cluster2", &token),
            "round {round} (point {point}): the remote secret holds a refused token sha256:{}",
            sha(&token)
        );
        // A plain apply converges: one token Secret for the link, a clean plan.
        w.ok(&["apply", "--auto-approve"]);
        w.assert_clean();
        each_link_has_its_own_token(&w);
        let names: Vec<bool> = [
            "istio-reader-token-cluster1",
            "istio-reader-token-cluster1-2",
        ]
        .iter()
        .map(|n| w.exists("kind-cluster2", "", "secrets", NS, n))
        .collect();
        assert_eq!(
            names.iter().filter(|b| **b).count(),
            1,
            "round {round}: {names:?}"
        );
    }
    eprintln!("{killed} of {rounds} rotations killed mid-way; every link kept a valid token");
}

/// A mesh whose state was lost: `mesh import` adopts each link with its
/// own token Secret recorded (as apply records it), and plans clean.
#[test]
fn a_lost_state_re_imported_records_each_links_own_token() {
    let w = World::new(&two_primaries_and_a_remote(), CONTEXTS).with_test_root();
    w.ok(&["apply", "--auto-approve"]);
    let before = w.state_json();
    std::fs::remove_file(w.state_path()).unwrap();
    let out = w.ok(&["import"]);
    assert!(out.contains("Imported"), "{out}");
    let after = w.state_json();
    for (step, _, _) in links(&w) {
        for key in [
            "token_secret",
            "token_sha256",
            "token_cluster",
            "token_context",
        ] {
            assert_eq!(
                after["steps"][&step]["outputs"][key], before["steps"][&step]["outputs"][key],
                "{step} {key}"
            );
        }
    }
    each_link_has_its_own_token(&w);
    w.assert_clean();
}

/// `[credentials] rotate_after` in the mesh file: a fresh token passes
/// (plan clean, `mesh check` shows its age); one older than the limit is
/// drift with its age, `mesh check` warns, and apply rotates it with no gap
/// (a new token Secret, the old one revoked); a limit that does not parse
/// or is under an hour is an error where it is written.
#[test]
fn rotate_after_in_the_mesh_file_ages_tokens_and_apply_rotates_them() {
    // [credentials] before the clusters' array of tables.
    let toml = a_primary_and_two_remotes().replacen(
        "[[cluster]]",
        "[credentials]\nrotate_after = \"30d\"\n\n[[cluster]]",
        1,
    );
    let w = World::new(&toml, CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let check = w.mesh(&["check", "--format", "json"]);
    let checks: Value = serde_json::from_slice(&check.stdout).unwrap();
    let age = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"] == "cluster2" && c["check"] == "link cluster2/attach: token age")
        .unwrap_or_else(|| panic!("no token age check: {checks:#}"));
    assert_eq!(age["status"], "PASS", "{age:#}");

    // The link's token, made 40 days ago.
    let token = w.state_json()["steps"]["cluster2/attach"]["outputs"]["token_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let name = token.rsplit('/').next().unwrap().to_string();
    {
        let c2 = w.cluster("kind-cluster2");
        let mut store = c2.store();
        let when = k8s_openapi::jiff::Timestamp::from_second(providers::ca::now() - 40 * 86_400)
            .unwrap()
            .to_string();
        assert!(store.backdate("", "secrets", NS, &name, &when));
    }
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("cluster2/attach"), "{t}");
    let json = w.mesh(&["plan", "--format", "json"]);
    let plan: Value = serde_json::from_slice(&json.stdout).unwrap();
    let reason = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["step"] == "cluster2/attach")
        .map(|c| c["reason"].as_str().unwrap_or_default().to_string())
        .unwrap();
    assert!(reason.contains("old (rotate_after 30"), "{reason}");
    // The rotation as a reviewer sees it in the pull request.
    support::golden(
        "rotate-link-token.md",
        &String::from_utf8_lossy(&w.mesh(&["plan", "--format", "markdown"]).stdout),
    );
    // `mesh check`: the age is a warning; the drift that refresh reports
    // (the same as the plan's) is what fails, with `mesh apply` its fix.
    let check = w.mesh(&["check", "--format", "json"]);
    assert_eq!(check.status.code(), Some(2), "{}", text(&check));
    let checks: Value = serde_json::from_slice(&check.stdout).unwrap();
    let failed: Vec<&Value> = checks
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "FAIL")
        .collect();
    assert!(
        !failed.is_empty()
            && failed.iter().all(|c| c["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("rotate_after")),
        "{failed:#?}"
    );
    let age = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cluster"] == "cluster2" && c["check"] == "link cluster2/attach: token age")
        .unwrap();
    assert_eq!(age["status"], "WARN", "{age:#}");
    w.ok(&["apply", "--auto-approve"]);
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rotated = w.state_json()["steps"]["cluster2/attach"]["outputs"]["token_secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rotated, token, "not rotated");
    assert!(
        w.get("kind-cluster2", "", "secrets", NS, &name).is_none(),
        "the old token Secret was not revoked"
    );

    // Bad limits, where they are written.
    for (value, want) in [
        ("\"30m\"", "under one hour"),
        ("\"soon\"", "is not a duration"),
    ] {
        let bad = toml.replace("rotate_after = \"30d\"", &format!("rotate_after = {value}"));
        w.write_mesh(&bad);
        let o = w.mesh(&["validate"]);
        let t = text(&o);
        assert_ne!(o.status.code(), Some(0), "{t}");
        assert!(t.contains(want) && t.contains("mesh.toml:"), "{value}: {t}");
    }
}

/// A link's old token is revoked only once every istiod of the primary has
/// taken the rewritten remote secret, by Istio's own evidence: its log's
/// "stopping previous cluster C after new cluster synced", or a pod that
/// started after the write. While the simulated istiod keeps its old
/// client (as istio/istio#60612), the apply waits `[credentials]
/// sync_timeout`, fails naming the pod and what it waits for, and keeps
/// the previous token, which still authenticates; the advice it gives
/// (restart istiod, apply again) then finishes the rotation without
/// rotating again.
#[test]
fn a_link_token_is_revoked_only_after_every_istiod_took_the_new_secret() {
    let toml = a_primary_and_two_remotes() + "\n[credentials]\nsync_timeout = \"2s\"\n";
    let w = World::new(&toml, CONTEXTS);
    w.ok(&["apply", "--auto-approve"]);

    // istiod takes the new secret: the apply reads its log after the write
    // and revokes the old token only then.
    let first = held(&w, "cluster1", "cluster2").unwrap();
    let from = w.cluster("kind-cluster1").requests().len();
    let out = w.ok(&[
        "-v",
        "apply",
        "--auto-approve",
        "--replace",
        "cluster2/attach",
    ]);
    assert!(
        out.contains("every istiod in `cluster1` took the new remote secret of `cluster2`: pod istiod-kubesim swapped its client at"),
        "{out}"
    );
    // The write (the apply's first patch of the secret; a second records
    // that every istiod took it), then istiod's log, then the revocation.
    let written = w.cluster("kind-cluster1").requests()[from..]
        .iter()
        .find(|r| r.verb == "patch" && r.path.contains("/secrets/istio-remote-secret-cluster2"))
        .map(|r| r.at)
        .expect("the remote secret written");
    let asked = last(&w, "kind-cluster1", "log", "/pods/istiod-kubesim/log");
    let revoked = last(
        &w,
        "kind-cluster2",
        "delete",
        "/secrets/istio-reader-token-cluster1",
    );
    assert!(written < asked && asked < revoked);
    assert!(refused(&w, "kind-cluster2", &first));
    let second = held(&w, "cluster1", "cluster2").unwrap();

    // istiod keeps its old client: the step fails, the previous token stays.
    w.cluster("kind-cluster1").set_faults(kubesim::Faults {
        istiod_keeps_old_clients: true,
        ..Default::default()
    });
    let o = w.mesh(&["apply", "--auto-approve", "--replace", "cluster2/attach"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    for part in [
        "the remote secret istio-system/istio-remote-secret-cluster2 in `cluster1` holds the link's new token, but not every istiod there took it within 2 s",
        "pod istiod-kubesim: it has not logged \"stopping previous cluster cluster2 after new cluster synced\" since the remote secret was written",
        "The previous token (istio-system/istio-reader-token-cluster1-2 in `cluster2`) is kept",
        "kubectl --context kind-cluster1 -n istio-system rollout restart deployment -l app=istiod",
    ] {
        assert!(said.contains(part), "{part}\n{said}");
    }
    let third = held(&w, "cluster1", "cluster2").unwrap();
    assert_ne!(sha(&third), sha(&second));
    assert!(
        reviewed(&w, "kind-cluster2", &second),
        "the previous token was revoked"
    );
    assert!(reviewed(&w, "kind-cluster2", &third));
    assert!(
        !said.contains(&second) && !said.contains(&third),
        "a token in the output"
    );

    // The advice, as given: restart istiod (the new pod reads the new
    // secret), then apply, which finishes the rotation: no third token.
    let o = std::process::Command::new("kubectl")
        .env("KUBECONFIG", w.set().kubeconfig_path())
        .args([
            "--context",
            "kind-cluster1",
            "-n",
            "istio-system",
            "rollout",
            "restart",
            "deployment",
            "-l",
            "app=istiod",
        ])
        .output()
        .expect("kubectl");
    assert!(o.status.success(), "{}", text(&o));
    let out = w.ok(&["-v", "apply", "--auto-approve"]);
    for part in [
        "finishing what an earlier apply began: the remote secret in `cluster1` holds the link's new token (istio-system/istio-reader-token-cluster1 in `cluster2`) and the previous one (istio-system/istio-reader-token-cluster1-2) is still there",
        "every istiod in `cluster1` took the new remote secret of `cluster2`: pod istiod-kubesim started after the write",
        "revoked the link's previous token: deleted Secret istio-system/istio-reader-token-cluster1-2 in `cluster2`",
    ] {
        assert!(out.contains(part), "{part}\n{out}");
    }
    assert_eq!(sha(&held(&w, "cluster1", "cluster2").unwrap()), sha(&third));
    assert!(refused(&w, "kind-cluster2", &second));
    each_link_has_its_own_token(&w);
    w.assert_clean();

    // A bad bound, where it is written.
    for (value, want) in [
        ("\"0s\"", "sync_timeout is zero"),
        ("\"later\"", "is not a duration"),
    ] {
        w.write_mesh(&toml.replace("sync_timeout = \"2s\"", &format!("sync_timeout = {value}")));
        let o = w.mesh(&["validate"]);
        let t = text(&o);
        assert_ne!(o.status.code(), Some(0), "{t}");
        assert!(t.contains(want) && t.contains("mesh.toml:"), "{value}: {t}");
    }
}
