//! Upgrading Istio under a running mesh, on kubesim (the project's
//! Kubernetes API simulator, with its simulated istioctl standing in for
//! each istioctl by the version its path names): a canary from 1.28 to
//! 1.29 on a primary and its remote (the new revision installed beside the
//! old, both routed, the `default` tag moved, the old revision removed in a
//! later apply), each plan clean after its apply; and the refusals: an
//! in-place skip of a minor release, a kept revision re-run by another
//! istioctl, a tag move and the removal of its revision in one apply, and
//! the mesh file mistakes of `keep_revision` and `[tags]`.

use serde_json::Value;

use crate::support::{World, golden, succeeded as ok, text};

const CONTEXTS: &[&str] = &["kind-cluster1", "kind-cluster2"];

/// The seed topology (a primary and its remote) with `head` as its [mesh]
/// and istioctl settings and `tail` after the clusters.
fn mesh(head: &str, tail: &str) -> String {
    format!(
        "{head}\n\n[[cluster]]\nname = \"cluster1\"\ncontext = \"kind-cluster1\"\nnetwork = \"network1\"\nrole = \"primary\"\n\n\
         [[cluster]]\nname = \"cluster2\"\ncontext = \"kind-cluster2\"\nnetwork = \"network1\"\nrole = \"remote\"\nprimary = \"cluster1\"\n\n{tail}"
    )
}

const V128: &str = "[mesh]\nid = \"mesh1\"\nistio_version = \"1.28\"\n\n[istioctl]\npath = \"/opt/istio-1.28.0/bin/istioctl\"";

/// The canary: 1-29 installed by istioctl 1.29 beside the unrevisioned
/// 1.28, which its own istioctl keeps; `default` where `tag` says.
fn canary(tag: &str) -> String {
    mesh(
        "[mesh]\nid = \"mesh1\"\nrevision = \"1-29\"\nistio_version = \"1.29\"\n\n\
         [[mesh.keep_revision]]\nname = \"default\"\nistio_version = \"1.28\"\nistioctl = \"/opt/istio-1.28.0/bin/istioctl\"\n\n\
         [istioctl]\npath = \"/opt/istio-1.29.0/bin/istioctl\"",
        &format!("[tags]\ndefault = \"{tag}\"\n"),
    )
}

/// The old revision gone: only 1-29, `default` on it.
fn upgraded() -> String {
    mesh(
        "[mesh]\nid = \"mesh1\"\nrevision = \"1-29\"\nistio_version = \"1.29\"\n\n\
         [istioctl]\npath = \"/opt/istio-1.29.0/bin/istioctl\"",
        "[tags]\ndefault = \"1-29\"\n",
    )
}

/// What a mesh command printed on stdout, whatever its exit code.
fn stdout_of(w: &World, args: &[&str]) -> String {
    String::from_utf8_lossy(&w.mesh(args).stdout).into_owned()
}

/// Istioctl runs that change something (not `version`, which preflight
/// runs before every command).
fn changing_runs(w: &World) -> usize {
    w.istioctl_log()
        .iter()
        .filter(|r| r["argv"][0] != "version")
        .count()
}

/// Every cluster's tag `tag` points at `rev` (None: it has none).
fn assert_tag_everywhere(w: &World, tag: &str, rev: Option<&str>) {
    for ctx in CONTEXTS {
        assert_eq!(tag_points(w, ctx, tag).as_deref(), rev, "{ctx}");
    }
}

/// The revision the tag's webhook points at in `ctx`.
fn tag_points(w: &World, ctx: &str, tag: &str) -> Option<String> {
    w.get(
        ctx,
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "",
        &format!("istio-revision-tag-{tag}"),
    )
    .and_then(|o| {
        o.pointer("/metadata/labels/istio.io~1rev")
            .and_then(Value::as_str)
            .map(String::from)
    })
}

fn plan_is_clean(w: &World) {
    let o = w.mesh(&["plan", "--detailed-exitcode"]);
    if o.status.code() != Some(0) {
        let json = w.mesh(&["plan", "--format", "json"]);
        let plan: Value = serde_json::from_slice(&json.stdout).unwrap_or_default();
        let why: Vec<String> = plan["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["action"] != "no-op")
            .map(|c| format!("{}: {}", c["step"], c["reason"]))
            .collect();
        panic!("plan not clean:\n{}\n{why:#?}", text(&o));
    }
}

/// The east-west address, as recorded.
fn address(w: &World) -> Value {
    w.state_json()["steps"]["cluster1/eastwest-address"]["outputs"]["address"].clone()
}

#[test]
fn a_canary_upgrade_installs_beside_moves_the_tag_and_removes_the_old_revision_later() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    plan_is_clean(&w);
    let addr = address(&w);

    // 1. The canary starts: 1-29 beside the unrevisioned 1.28, `default`
    // still on the old one.
    w.write_mesh(&canary("default"));
    golden(
        "upgrade-canary-start.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    let plan = ok(&w.mesh(&["plan"]));
    for step in [
        "cluster1/install-control-plane#default",
        "cluster2/install-remote#default",
        "cluster1/revision-tag#default",
        "cluster2/revision-tag#default",
    ] {
        assert!(plan.contains(step), "{step} not planned:\n{plan}");
    }
    let out = ok(&w.mesh(&["apply", "--auto-approve"]));
    assert!(out.contains("Apply complete"), "{out}");
    plan_is_clean(&w);
    for name in ["istiod", "istiod-1-29"] {
        assert!(
            w.exists("kind-cluster1", "apps", "deployments", "istio-system", name),
            "cluster1 lacks Deployment {name}"
        );
    }
    for name in ["istio-sidecar-injector", "istio-sidecar-injector-1-29"] {
        assert!(
            w.exists(
                "kind-cluster2",
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                "",
                name
            ),
            "cluster2 lacks webhook {name}"
        );
    }
    for vs in ["istiod-vs", "istiod-vs-1-29"] {
        assert!(
            w.exists(
                "kind-cluster1",
                "networking.istio.io",
                "virtualservices",
                "istio-system",
                vs
            ),
            "cluster1 lacks VirtualService {vs}"
        );
    }
    assert_tag_everywhere(&w, "default", Some("default"));
    // The kept revision's installs ran with its own istioctl, recorded
    // with them (their destroy uses it), at its own Istio version.
    let st = w.state_json();
    for step in [
        "cluster1/install-control-plane#default",
        "cluster2/install-remote#default",
    ] {
        assert_eq!(
            st["steps"][step]["outputs"]["istioctl"], "/opt/istio-1.28.0/bin/istioctl",
            "{step}"
        );
        let input = st["steps"][step]["input"].as_str().unwrap();
        assert!(
            input.contains("mesh/istio-version: \"1.28\""),
            "{step}: {input}"
        );
    }
    assert_eq!(address(&w), addr, "the east-west address moved");

    // 2. The tag moves: new pods of `istio-injection=enabled` namespaces go
    // to 1-29, on the primary and the remote.
    w.write_mesh(&canary("1-29"));
    golden(
        "upgrade-tag-move.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    plan_is_clean(&w);
    assert_tag_everywhere(&w, "default", Some("1-29"));

    // 3. The old revision is removed, but not while a namespace of any
    // cluster still asks for it by name.
    w.write_mesh(&upgraded());
    {
        let c2 = w.cluster("kind-cluster2");
        let mut store = c2.store();
        let rt = store.find_type("", "v1", "namespaces").unwrap();
        store
            .create(
                &rt,
                "",
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": "shop", "labels": {"istio.io/rev": "default"}}}),
                "kubectl",
            )
            .unwrap();
    }
    let o = w.mesh(&["apply", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("namespace `shop` in cluster2 is labelled `istio.io/rev=default`"),
        "{t}"
    );
    assert!(w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod"
    ));
    {
        let c2 = w.cluster("kind-cluster2");
        let mut store = c2.store();
        let rt = store.find_type("", "v1", "namespaces").unwrap();
        store.delete(&rt, "", "shop").unwrap();
    }
    // Its uninstall, by revision; 1-29 and the tag stay.
    golden(
        "upgrade-remove-old.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    let plan = ok(&w.mesh(&["plan"]));
    assert!(
        plan.contains("cluster1/install-control-plane#default"),
        "{plan}"
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    plan_is_clean(&w);
    assert!(!w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod"
    ));
    assert!(w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod-1-29"
    ));
    assert!(!w.exists(
        "kind-cluster2",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "",
        "istio-sidecar-injector"
    ));
    assert_tag_everywhere(&w, "default", Some("1-29"));
    let uninstalls: Vec<Value> = w
        .istioctl_log()
        .into_iter()
        .filter(|r| r["argv"][0] == "uninstall")
        .collect();
    assert_eq!(uninstalls.len(), 2, "{uninstalls:#?}");
    for u in &uninstalls {
        let argv: Vec<&str> = u["argv"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            argv.windows(2).any(|p| p == ["--revision", "default"]),
            "{argv:?}"
        );
        assert!(!argv.contains(&"--purge"), "{argv:?}");
    }
    assert_eq!(address(&w), addr, "the east-west address moved");
    // Destroy: the tags, then the revision, then everything.
    ok(&w.mesh(&["destroy", "--auto-approve"]));
    assert_tag_everywhere(&w, "default", None);
    for ctx in CONTEXTS {
        assert!(
            !w.exists(ctx, "", "namespaces", "", "istio-system"),
            "{ctx} keeps istio-system"
        );
    }
}

#[test]
fn a_tag_move_and_the_removal_of_its_revision_in_one_apply_are_refused() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&canary("default"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    // Straight to the end: the tag moves off `default` while `default` is
    // uninstalled.
    w.write_mesh(&upgraded());
    let before = changing_runs(&w);
    let o = w.mesh(&["apply", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("the plan is refused")
            && t.contains("revision-tag#default")
            && t.contains("Move the tag first"),
        "{t}"
    );
    assert_eq!(changing_runs(&w), before, "something ran");
}

#[test]
fn an_in_place_skip_of_a_minor_release_is_refused_and_one_minor_is_allowed() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let skip = mesh(
        "[mesh]\nid = \"mesh1\"\nistio_version = \"1.30\"\n\n[istioctl]\npath = \"/opt/istio-1.30.0/bin/istioctl\"",
        "",
    );
    w.write_mesh(&skip);
    golden(
        "upgrade-refused-skip.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    let o = w.mesh(&["plan"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("skips 1 minor release") && t.contains("one minor release at a time"),
        "{t}"
    );
    let one = mesh(
        "[mesh]\nid = \"mesh1\"\nistio_version = \"1.29\"\n\n[istioctl]\npath = \"/opt/istio-1.29.0/bin/istioctl\"",
        "",
    );
    w.write_mesh(&one);
    golden(
        "upgrade-in-place.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    // Istio's precheck runs first, on the control plane, with the new
    // istioctl, and the plan shows what it found.
    let plan = ok(&w.mesh(&["plan"]));
    assert!(
        plan.contains("`istioctl x precheck` on cluster1: no issues"),
        "{plan}"
    );
    assert!(
        w.istioctl_log()
            .iter()
            .any(|r| r["argv"][0] == "x" && r["argv"][1] == "precheck"),
        "precheck did not run"
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    plan_is_clean(&w);
}

#[test]
fn a_kept_revision_is_never_re_run_by_another_istioctl() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&canary("default"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&canary("default").replace(
        "istio_version = \"1.28\"\nistioctl = \"/opt/istio-1.28.0/bin/istioctl\"",
        "istio_version = \"1.29\"\nistioctl = \"/opt/istio-1.29.0/bin/istioctl\"",
    ));
    let o = w.mesh(&["plan"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("only ever re-run by that istioctl"), "{t}");
}

#[test]
fn keep_revision_and_tag_mistakes_are_named_where_they_are() {
    for (tail_or_head, want) in [
        (
            "[mesh]\nid = \"mesh1\"\nrevision = \"1-29\"\n\n[[mesh.keep_revision]]\nname = \"1-29\"\nistioctl = \"/x/istioctl\"",
            "listed again in keep_revision",
        ),
        (
            "[mesh]\nid = \"mesh1\"\nrevision = \"1-29\"\n\n[[mesh.keep_revision]]\nname = \"default\"",
            "missing `istioctl`",
        ),
        (
            "[mesh]\nid = \"mesh1\"\nrevision = \"1-29\"\n\n[[mesh.keep_revision]]\nname = \"a\"\nistioctl = \"/x\"\n\n[[mesh.keep_revision]]\nname = \"a\"\nistioctl = \"/y\"",
            "kept twice",
        ),
    ] {
        let w = World::new(&mesh(tail_or_head, ""), CONTEXTS);
        let o = w.mesh(&["validate"]);
        let t = text(&o);
        assert_ne!(o.status.code(), Some(0), "{t}");
        assert!(t.contains(want) && t.contains("mesh.toml:"), "{want}: {t}");
    }
    let w = World::new(&mesh(V128, "[tags]\ndefault = \"1-30\"\n"), CONTEXTS);
    let o = w.mesh(&["validate"]);
    let t = text(&o);
    assert_ne!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("names revision `1-30`, which this mesh does not install")
            && t.contains("mesh.toml:"),
        "{t}"
    );
}

/// A kept revision's istioctl of another version than its `istio_version`
/// is refused before anything runs, naming where its `istioctl` is written.
#[test]
fn a_kept_istioctl_of_another_version_is_refused_where_it_is_written() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let wrong = canary("default").replace(
        "istioctl = \"/opt/istio-1.28.0/bin/istioctl\"",
        "istioctl = \"/opt/istio-1.27.2/bin/istioctl\"",
    );
    w.write_mesh(&wrong);
    let line = wrong
        .lines()
        .position(|l| l.contains("istio-1.27.2"))
        .unwrap()
        + 1;
    let before = changing_runs(&w);
    let o = w.mesh(&["apply", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("kept revision `default`")
            && t.contains(&format!("mesh.toml:{line}:"))
            && t.contains("1.27.2"),
        "{t}"
    );
    assert_eq!(changing_runs(&w), before, "something ran");
}

/// A third cluster, a remote of cluster1, for the tests that need one
/// cluster neither the primary nor the remote they act on.
const CLUSTER3: &str = "[[cluster]]\nname = \"cluster3\"\ncontext = \"kind-cluster3\"\nnetwork = \"network1\"\nrole = \"remote\"\nprimary = \"cluster1\"\n\n";

/// `toml` (one of the meshes above) with cluster3 after its clusters.
fn with_cluster3(toml: &str) -> String {
    match toml.find("[tags]") {
        Some(i) => format!("{}{CLUSTER3}{}", &toml[..i], &toml[i..]),
        None => format!("{toml}{CLUSTER3}"),
    }
}

// Hardening III, 2. The check that no namespace still asks for a revision
// being uninstalled skipped a cluster it could not read (and took a
// failed listing for "none"): a check that cannot look must refuse.
#[test]
fn a_revision_is_not_uninstalled_while_a_cluster_cannot_be_checked_for_it() {
    let contexts = ["kind-cluster1", "kind-cluster2", "kind-cluster3"];
    let w = World::new(&with_cluster3(&mesh(V128, "")), &contexts);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&with_cluster3(&canary("default")));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&with_cluster3(&canary("1-29")));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    // The old revision goes from cluster3 first (it is reachable and no
    // namespace asks for it), so the rest of the removal touches only
    // cluster1 and cluster2.
    w.write_mesh(&with_cluster3(&upgraded()));
    ok(&w.mesh(&["apply", "--auto-approve", "--target", "cluster3"]));
    let json = stdout_of(&w, &["plan", "--no-refresh", "--format", "json"]);
    let plan: Value = serde_json::from_str(&json).unwrap();
    let on_cluster3: Vec<&Value> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cluster"] == "cluster3" && c["action"] != "no-op")
        .collect();
    assert!(on_cluster3.is_empty(), "{on_cluster3:#?}");
    assert!(
        json.contains("cluster1/install-control-plane#default"),
        "{json}"
    );

    // cluster3's API server is down: its namespaces cannot be listed.
    w.cluster("kind-cluster3").set_faults(kubesim::Faults {
        refuse_connections: true,
        ..Default::default()
    });
    let before = changing_runs(&w);
    let o = w.mesh(&[
        "apply",
        "--auto-approve",
        "--no-refresh",
        "--target",
        "cluster1",
        "--target",
        "cluster2",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    for want in [
        "the plan is refused, nothing was changed",
        "cannot tell whether a namespace in cluster3 is still labelled `istio.io/rev=default` \
         (or a workload's pod template, or a tag), and this plan uninstalls revision `default`",
        "cluster `cluster3` (context `kind-cluster3`",
        "Fix access to cluster3",
        "`mesh state rm cluster3`",
    ] {
        assert!(t.contains(want), "lacks `{want}`:\n{t}");
    }
    assert_eq!(changing_runs(&w), before, "something ran:\n{t}");
    assert!(
        w.exists(
            "kind-cluster1",
            "apps",
            "deployments",
            "istio-system",
            "istiod"
        ),
        "the kept revision's istiod was uninstalled"
    );
    assert!(w.exists(
        "kind-cluster2",
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        "",
        "istio-sidecar-injector"
    ));
}

/// The canary without `[tags]`: the installer's `default` tag stays on the
/// old revision.
fn canary_untagged() -> String {
    mesh(
        "[mesh]\nid = \"mesh1\"\nrevision = \"1-29\"\nistio_version = \"1.29\"\n\n\
         [[mesh.keep_revision]]\nname = \"default\"\nistio_version = \"1.28\"\nistioctl = \"/opt/istio-1.28.0/bin/istioctl\"\n\n\
         [istioctl]\npath = \"/opt/istio-1.29.0/bin/istioctl\"",
        "",
    )
}

/// Day two, 2: a revision is not removed while any tag on any cluster
/// points at it: the installer's `default` (no `[tags]` in the mesh file)
/// and one made by hand with `istioctl tag set`, each named with what to
/// do. Once they have moved, the removal runs.
#[test]
fn a_revision_is_not_removed_while_a_tag_of_any_making_points_at_it() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&canary_untagged());
    ok(&w.mesh(&["apply", "--auto-approve"]));
    assert_eq!(
        tag_points(&w, "kind-cluster1", "default").as_deref(),
        Some("default")
    );
    // A tag made by hand on the old revision, as `istioctl tag set` makes it.
    hand_tag(&w, &["tag", "set", "prod", "--revision", "default"]);
    assert_eq!(
        tag_points(&w, "kind-cluster1", "prod").as_deref(),
        Some("default")
    );

    w.write_mesh(&mesh(
        "[mesh]\nid = \"mesh1\"\nrevision = \"1-29\"\nistio_version = \"1.29\"\n\n\
         [istioctl]\npath = \"/opt/istio-1.29.0/bin/istioctl\"",
        "",
    ));
    let before = changing_runs(&w);
    let o = w.mesh(&["apply", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    for want in [
        "the plan is refused, nothing was changed",
        "tag `default` in cluster1 (MutatingWebhookConfiguration istio-revision-tag-default) \
         points at revision `default`, and this plan uninstalls `default`",
        "tag `prod` in cluster1 (MutatingWebhookConfiguration istio-revision-tag-prod) points \
         at revision `default`",
        "istioctl --context kind-cluster1 tag set prod --revision <revision> --overwrite",
    ] {
        assert!(t.contains(want), "lacks `{want}`:\n{t}");
    }
    assert_eq!(changing_runs(&w), before, "something ran:\n{t}");

    // Moved (mesh's `default` by [tags], `prod` by hand): the removal runs.
    w.write_mesh(&canary("1-29"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    hand_tag(
        &w,
        &["tag", "set", "prod", "--revision", "1-29", "--overwrite"],
    );
    w.write_mesh(&upgraded());
    ok(&w.mesh(&["apply", "--auto-approve"]));
    assert_eq!(
        tag_points(&w, "kind-cluster1", "prod").as_deref(),
        Some("1-29")
    );
    plan_is_clean(&w);
}

/// The simulated `istioctl ARGS… --context kind-cluster1`, as a user runs it.
fn hand_tag(w: &World, args: &[&str]) {
    let kubeconfig = w.set().kubeconfig_path().display().to_string();
    let mut argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    argv.extend(
        [
            "-y",
            "--context",
            "kind-cluster1",
            "--kubeconfig",
            &kubeconfig,
        ]
        .map(String::from),
    );
    let code = kubesim::istioctl::main(argv, std::io::empty());
    assert_eq!(code, 0, "istioctl {args:?} failed");
}

/// The rollback of a canary whose tag had moved: 1.28 unrevisioned again,
/// 1-29 kept beside it, `default` back on `default`.
fn rolled_back() -> String {
    mesh(
        &format!(
            "{V128}\n\n[[mesh.keep_revision]]\nname = \"1-29\"\nistio_version = \"1.29\"\nistioctl = \"/opt/istio-1.29.0/bin/istioctl\""
        ),
        "[tags]\ndefault = \"default\"\n",
    )
}

/// The uid of the object, which a delete and re-create changes.
fn uid(w: &World, ctx: &str, group: &str, plural: &str, ns: &str, name: &str) -> Value {
    w.get(ctx, group, plural, ns, name)
        .unwrap_or_else(|| panic!("{ctx}: no {plural} {ns}/{name}"))["metadata"]["uid"]
        .clone()
}

/// The uids of what a rollback to `default` must never delete: its istiod,
/// the Service its tag's webhook calls, the remote's injector.
fn rollback_target_uids(w: &World) -> [Value; 3] {
    [
        uid(
            w,
            "kind-cluster1",
            "apps",
            "deployments",
            "istio-system",
            "istiod",
        ),
        uid(w, "kind-cluster1", "", "services", "istio-system", "istiod"),
        uid(
            w,
            "kind-cluster2",
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "",
            "istio-sidecar-injector",
        ),
    ]
}

/// A rollback never removes the control plane it rolls back to: the
/// kept `default` becomes the mesh's revision again without an uninstall
/// (its istiod and injector are the very objects that ran before), the
/// tag moves back, and 1-29 goes in a later apply, as any kept revision.
#[test]
fn a_rollback_keeps_the_revision_it_rolls_back_to_and_removes_the_other_later() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&canary("default"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&canary("1-29"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    assert_tag_everywhere(&w, "default", Some("1-29"));
    // The kept unrevisioned install run again (`--replace`, as a drift
    // repair does): istioctl points `default` back at it, and the same
    // apply sets the tag again, after it.
    let replace = ["--replace", "cluster1/install-control-plane#default"];
    let plan = ok(&w.mesh(&[&["plan"][..], &replace].concat()));
    assert!(
        plan.contains(
            "set again: cluster1/install-control-plane#default installs without a revision"
        ),
        "{plan}"
    );
    ok(&w.mesh(&[&["apply", "--auto-approve"][..], &replace].concat()));
    assert_tag_everywhere(&w, "default", Some("1-29"));
    plan_is_clean(&w);
    let before = rollback_target_uids(&w);

    // Rolled back with the new release's istioctl: an in-place upgrade of
    // the target in disguise, refused before anything runs.
    w.write_mesh(
        &rolled_back()
            .replacen("istio_version = \"1.28\"", "istio_version = \"1.29\"", 1)
            .replacen("istio-1.28.0", "istio-1.29.0", 1),
    );
    let changing = changing_runs(&w);
    let o = w.mesh(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(
            "rolls back to revision `default`, which Istio 1.28 installed, but gives it Istio 1.29"
        ),
        "{}",
        text(&o)
    );
    assert_eq!(changing_runs(&w), changing, "a refused plan ran istioctl");

    w.write_mesh(&rolled_back());
    golden(
        "upgrade-rollback.md",
        &stdout_of(&w, &["plan", "--format", "markdown"]),
    );
    let runs = w.istioctl_log().len();
    ok(&w.mesh(&["apply", "--auto-approve"]));
    plan_is_clean(&w);
    let uninstalls: Vec<Value> = w.istioctl_log()[runs..]
        .iter()
        .filter(|r| r["argv"][0] == "uninstall")
        .cloned()
        .collect();
    assert!(uninstalls.is_empty(), "{uninstalls:#?}");
    let after = rollback_target_uids(&w);
    assert_eq!(
        before, after,
        "the rollback's target was removed and made again"
    );
    assert!(w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod-1-29"
    ));
    assert_tag_everywhere(&w, "default", Some("default"));
    let st = w.state_json();
    assert!(
        st["steps"]
            .get("cluster1/install-control-plane#default")
            .is_none()
    );
    assert!(
        st["steps"]
            .get("cluster1/install-control-plane#1-29")
            .is_some()
    );

    // The abandoned revision goes last, in its own apply.
    w.write_mesh(&mesh(V128, "[tags]\ndefault = \"default\"\n"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    plan_is_clean(&w);
    assert!(!w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod-1-29"
    ));
    assert_eq!(
        uid(
            &w,
            "kind-cluster1",
            "apps",
            "deployments",
            "istio-system",
            "istiod"
        ),
        before[0]
    );
    assert_tag_everywhere(&w, "default", Some("default"));
}

/// Tag drift covers all of what `istioctl tag set` made: the tag's Service
/// deleted, its webhook's CA bundle gone stale, Istio's default validator
/// deleted. Each is a planned repair naming what is off (cluster1 only),
/// the apply re-sets the tag, and the plan is clean again.
#[test]
fn tag_drift_covers_its_service_its_client_config_and_the_default_validator() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&canary("1-29"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.assert_clean();
    let kubectl = |args: &[&str]| {
        let o = std::process::Command::new("kubectl")
            .env("KUBECONFIG", w.set().kubeconfig_path())
            .args(["--context", "kind-cluster1"])
            .args(args)
            .output()
            .expect("kubectl");
        assert!(o.status.success(), "{args:?}: {}", text(&o));
    };
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "-n",
                "istio-system",
                "delete",
                "service",
                "istiod-revision-tag-default",
            ],
            "Service istio-system/istiod-revision-tag-default missing",
        ),
        (
            &[
                "patch",
                "mutatingwebhookconfiguration",
                "istio-revision-tag-default",
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"c3RhbGU="}]"#,
            ],
            "revision tag `default`'s webhook does not call istiod as revision `1-29`'s injector (istio-sidecar-injector-1-29) does",
        ),
        (
            &[
                "delete",
                "validatingwebhookconfiguration",
                "istiod-default-validator",
            ],
            "ValidatingWebhookConfiguration istiod-default-validator missing: Istio configuration is no longer validated",
        ),
    ];
    for (change, want) in cases {
        kubectl(change);
        let o = w.mesh(&["plan", "--detailed-exitcode"]);
        let plan = text(&o);
        assert_eq!(o.status.code(), Some(2), "{plan}");
        assert!(
            plan.contains("~ cluster1/revision-tag#default") && plan.contains(want),
            "{want}\n{plan}"
        );
        assert!(
            !plan.contains("cluster2/revision-tag#default (update)"),
            "{plan}"
        );
        ok(&w.mesh(&["apply", "--auto-approve"]));
        w.assert_clean();
    }
}

/// A kept revision re-applied on its own (`--replace`, as a drift repair
/// does) takes nothing the mesh's revision holds: the ingress gateway of
/// Istio's default profile stays the mesh revision's (the very object:
/// `istioctl install` relabels a shared gateway for whichever revision ran
/// last, and `uninstall --revision` deletes it with that revision), and
/// the CRDs keep the newer istioctl's writing. Removing the kept revision
/// then leaves the gateway.
#[test]
fn a_kept_revision_re_applied_takes_neither_the_ingress_gateway_nor_the_crds() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let gateway = |w: &World| {
        w.get(
            "kind-cluster1",
            "apps",
            "deployments",
            "istio-system",
            "istio-ingressgateway",
        )
    };
    let rev_of = |o: Option<Value>| {
        o.and_then(|o| {
            o.pointer("/metadata/labels/istio.io~1rev")
                .and_then(Value::as_str)
                .map(String::from)
        })
    };
    let crd = |w: &World| {
        w.get(
            "kind-cluster1",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
            "gateways.networking.istio.io",
        )
    };
    let uid_before =
        gateway(&w).expect("the default profile's ingress gateway")["metadata"]["uid"].clone();
    assert_eq!(rev_of(gateway(&w)).as_deref(), Some("default"));

    w.write_mesh(&canary("1-29"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    plan_is_clean(&w);
    assert_eq!(
        rev_of(gateway(&w)).as_deref(),
        Some("1-29"),
        "the canary took the gateway"
    );
    assert_eq!(
        rev_of(crd(&w)).as_deref(),
        Some("1-29"),
        "the newer istioctl wrote the CRDs"
    );

    let replace = ["--replace", "cluster1/install-control-plane#default"];
    ok(&w.mesh(&[&["apply", "--auto-approve"][..], &replace].concat()));
    plan_is_clean(&w);
    assert_eq!(
        rev_of(gateway(&w)).as_deref(),
        Some("1-29"),
        "the kept revision took the ingress gateway back"
    );
    assert_eq!(
        rev_of(crd(&w)).as_deref(),
        Some("1-29"),
        "the kept revision's older istioctl wrote the CRDs again"
    );

    w.write_mesh(&upgraded());
    ok(&w.mesh(&["apply", "--auto-approve"]));
    plan_is_clean(&w);
    assert!(!w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod"
    ));
    let after = gateway(&w).expect("removing the old revision deleted the ingress gateway");
    assert_eq!(
        after["metadata"]["uid"], uid_before,
        "the ingress gateway was made again"
    );
}

/// Dropping `default` from `[tags]` releases it: the tag stays as it is
/// (its webhook, Istio's validator) and only its record goes, since
/// `istioctl tag remove default` would leave `istio-injection=enabled`
/// namespaces without sidecars (the legacy injector stays deactivated) and
/// Istio's configuration unvalidated.
#[test]
fn dropping_the_default_tag_releases_it_and_keeps_injection_and_validation() {
    let w = World::new(&mesh(V128, "[tags]\ndefault = \"default\"\n"), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    assert_tag_everywhere(&w, "default", Some("default"));
    w.write_mesh(&mesh(V128, ""));
    let plan = ok(&w.mesh(&["plan"]));
    assert!(
        plan.contains("released: tag `default` stays on revision `default` as it is"),
        "{plan}"
    );
    assert!(!plan.contains("is removed from"), "{plan}");
    let runs = w.istioctl_log().len();
    // `--target` leaves the install out of the plan: still a release.
    ok(&w.mesh(&[
        "apply",
        "--auto-approve",
        "--target",
        "cluster1/revision-tag#default",
    ]));
    assert_eq!(
        tag_points(&w, "kind-cluster1", "default").as_deref(),
        Some("default")
    );
    ok(&w.mesh(&["apply", "--auto-approve"]));
    let removes: Vec<Value> = w.istioctl_log()[runs..]
        .iter()
        .filter(|r| r["argv"][0] == "tag")
        .cloned()
        .collect();
    assert!(removes.is_empty(), "{removes:#?}");
    assert_tag_everywhere(&w, "default", Some("default"));
    for ctx in CONTEXTS {
        assert!(
            w.exists(
                ctx,
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                "",
                "istiod-default-validator"
            ),
            "{ctx}: Istio's validator is gone"
        );
    }
    let st = w.state_json();
    assert!(st["steps"].get("cluster1/revision-tag#default").is_none());
    plan_is_clean(&w);
}

/// Writes `obj` (a namespaced object of `plural` in `group/version`) into
/// the cluster of `ctx`, as a team's kubectl would.
fn put(w: &World, ctx: &str, (group, version, plural): (&str, &str, &str), obj: Value) {
    let c = w.cluster(ctx);
    let mut store = c.store();
    let rt = store.find_type(group, version, plural).unwrap();
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    store.create(&rt, &ns, obj, "kubectl").unwrap();
}

/// Deletes `ns/name` of `plural` in `group/version` from the cluster of
/// `ctx`, as a team's kubectl would.
fn remove(
    w: &World,
    ctx: &str,
    (group, version, plural): (&str, &str, &str),
    ns: &str,
    name: &str,
) {
    let c = w.cluster(ctx);
    let mut store = c.store();
    let rt = store.find_type(group, version, plural).unwrap();
    store.delete(&rt, ns, name).unwrap();
}

/// A revision is not removed while a workload's pod template asks for it
/// by label (Istio's injector selects pods by `istio.io/rev` too), nor
/// when a namespace is labelled for it between the plan and the
/// uninstall: the uninstall reads its cluster again right before it runs.
#[test]
fn a_revision_is_not_uninstalled_while_a_workload_asks_for_it_or_a_namespace_labelled_since_the_plan()
 {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&canary("1-29"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&upgraded());

    put(
        &w,
        "kind-cluster2",
        ("", "v1", "namespaces"),
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    put(
        &w,
        "kind-cluster2",
        ("apps", "v1", "deployments"),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "cart", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "cart"}}, "replicas": 0,
                "template": {"metadata": {"labels": {"app": "cart", "istio.io/rev": "default"}},
                    "spec": {"containers": [{"name": "cart", "image": "cart"}]}}}}),
    );
    let o = w.mesh(&["apply", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains(
            "Deployment shop/cart in cluster2 asks for revision `default` in its pod template"
        ),
        "{t}"
    );
    remove(
        &w,
        "kind-cluster2",
        ("apps", "v1", "deployments"),
        "shop",
        "cart",
    );

    // A namespace labelled right after the apply's own plan read cluster1.
    w.cluster("kind-cluster1").set_faults(kubesim::Faults {
        after_list: Some((
            "namespaces".into(),
            "istio.io/rev=default".into(),
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "late", "labels": {"istio.io/rev": "default"}}}),
        )),
        ..Default::default()
    });
    let o = w.mesh(&["apply", "--auto-approve"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("revision default was not uninstalled: since the plan, namespace `late` in cluster1 is labelled `istio.io/rev=default`"),
        "{t}"
    );
    assert!(w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod"
    ));
    remove(&w, "kind-cluster1", ("", "v1", "namespaces"), "", "late");
    ok(&w.mesh(&["apply", "--auto-approve"]));
    plan_is_clean(&w);
    assert!(!w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod"
    ));
}

/// `--target` never splits a revision's removal (the remote's profile of
/// it would keep calling a deleted istiod), and a plan that reads no
/// cluster says the removal's checks are still to come.
#[test]
fn a_revision_removal_is_not_split_by_target_and_no_refresh_says_what_it_did_not_check() {
    let w = World::new(&mesh(V128, ""), CONTEXTS);
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&canary("1-29"));
    ok(&w.mesh(&["apply", "--auto-approve"]));
    w.write_mesh(&upgraded());
    let o = w.mesh(&["apply", "--auto-approve", "--target", "cluster1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("--target uninstalls revision `default` with cluster1/install-control-plane#default but leaves cluster2/install-remote#default"),
        "{t}"
    );
    assert!(w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod"
    ));
    let plan = ok(&w.mesh(&["plan", "--no-refresh"]));
    assert!(
        plan.contains("not checked (no refresh): whether a namespace, a workload or a tag in any cluster still uses revision `default`"),
        "{plan}"
    );
    // The advice: target both.
    ok(&w.mesh(&[
        "apply",
        "--auto-approve",
        "--target",
        "cluster1",
        "--target",
        "cluster2/install-remote#default",
    ]));
    assert!(!w.exists(
        "kind-cluster1",
        "apps",
        "deployments",
        "istio-system",
        "istiod"
    ));
}
