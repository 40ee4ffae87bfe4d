//! The plan formats and saved plans.

use plans::render::{self, TextOptions};
use plans::{
    Action, Change, Command, Plan, PolicyReport, PolicyResult, Removal, SavedPlan, SavedPlanError,
    Violation,
};
use std::os::unix::fs::PermissionsExt;

fn change(step: &str, action: Action, before: Option<&str>, after: Option<&str>) -> Change {
    Change {
        step: step.into(),
        kind: step.split('/').nth(1).unwrap().into(),
        cluster: step.split('/').next().unwrap().into(),
        action,
        depends_on: vec![],
        reason: Some(match action {
            Action::Create => "not in the state yet".into(),
            Action::Update => "input changed".into(),
            Action::Delete => "no longer in the mesh file".into(),
            Action::NoOp => String::new(),
        })
        .filter(|r: &String| !r.is_empty()),
        diff: match action {
            Action::NoOp => None,
            _ => Some(plans::diff::unified(
                before.unwrap_or(""),
                after.unwrap_or(""),
                step,
            )),
        },
        before: before.map(Into::into),
        after: after.map(Into::into),
    }
}

fn sample() -> Plan {
    Plan::new(
        "mesh1",
        vec![
            change(
                "cluster3/attach",
                Action::Delete,
                Some("kind: Secret\nname: s\n"),
                None,
            ),
            change(
                "cluster1/install-control-plane",
                Action::NoOp,
                Some("a\n"),
                Some("a\n"),
            ),
            change(
                "cluster2/install-remote",
                Action::Update,
                Some("profile: remote\nremotePilotAddress: 1.1.1.1\n"),
                Some("profile: remote\nremotePilotAddress: 2.2.2.2\n"),
            ),
            change(
                "cluster4/prepare-namespace",
                Action::Create,
                None,
                Some("kind: Namespace\n"),
            ),
        ],
    )
}

#[test]
fn text_lists_changes_with_symbols_and_the_summary() {
    let t = render::text(&sample(), &TextOptions { color: false });
    assert!(
        t.contains(
            "- cluster3/attach (delete)\n    reason: no longer in the mesh file\n    -kind: Secret"
        ),
        "{t}"
    );
    assert!(t.contains("~ cluster2/install-remote (update)"));
    assert!(
        t.contains("    -remotePilotAddress: 1.1.1.1\n    +remotePilotAddress: 2.2.2.2"),
        "{t}"
    );
    assert!(t.contains("+ cluster4/prepare-namespace (create)\n    reason: not in the state yet\n    +kind: Namespace"));
    assert!(
        !t.contains("install-control-plane"),
        "no-ops are not listed"
    );
    assert!(
        t.trim_end()
            .ends_with("Plan: 1 to create, 1 to update, 1 to delete.")
    );
    assert!(!t.contains('\x1b'));
    let c = render::text(&sample(), &TextOptions { color: true });
    assert!(c.contains("\x1b[32m") && c.contains("\x1b[31m") && c.contains("\x1b[0m"));
}

#[test]
fn no_changes() {
    let p = Plan::new(
        "mesh1",
        vec![change("c/x", Action::NoOp, Some("a\n"), Some("a\n"))],
    );
    let t = render::text(&p, &TextOptions::default());
    assert!(t.starts_with("No changes."), "{t}");
    assert!(render::markdown(&p).contains("**No changes.**"));
    assert_eq!(p.summary.unchanged, 1);
}

#[test]
fn markdown_has_summary_table_and_collapsible_diffs() {
    let m = render::markdown(&sample());
    assert!(
        m.starts_with(
            "### mesh plan: `mesh1`\n\n**`+1` `~1` `-1`** · 1 to create, 1 to update, 1 to delete · 1 unchanged\n"
        ),
        "{m}"
    );
    assert!(m.contains("| action | step | kind | cluster | reason |"));
    assert!(m.contains(
        "| update | `cluster2/install-remote` | install-remote | cluster2 | input changed |"
    ));
    assert!(m.contains("<details><summary><code>cluster3/attach</code> (delete)</summary>\n\n```diff\n-kind: Secret"));
    assert_eq!(m.matches("<details>").count(), 3);
    assert_eq!(m.matches("</details>").count(), 3);
    assert_eq!(m, render::markdown(&sample()), "deterministic");
}

#[test]
fn markdown_stays_under_the_limit_and_says_what_it_cut() {
    let big: String = (0..5000)
        .map(|i| format!("line {i} of a long document\n"))
        .collect();
    let p = Plan::new(
        "mesh1",
        vec![
            change("c1/install-control-plane", Action::Create, None, Some(&big)),
            change("c2/install-remote", Action::Create, None, Some("small\n")),
        ],
    );
    for limit in [4_000, 20_000, 65_000] {
        let m = render::markdown_with_limit(&p, limit);
        assert!(m.len() <= limit, "{} > {limit}", m.len());
        assert!(m.contains("lines not shown"), "{m}");
        assert!(m.contains("+small"), "small diffs are kept whole");
        assert_eq!(m.matches("</details>").count(), 2);
    }
    // Very many steps: the table itself is cut.
    let many: Vec<Change> = (0..3000)
        .map(|i| change(&format!("c{i}/attach"), Action::Create, None, Some("x\n")))
        .collect();
    let m = render::markdown_with_limit(&Plan::new("mesh1", many), 65_000);
    assert!(m.len() <= 65_000);
    assert!(m.contains("more changed steps"));
}

#[test]
fn content_cannot_break_fences_or_tables() {
    let mut c = change(
        "c/attach",
        Action::Create,
        None,
        Some("```\n| not a cell\n"),
    );
    c.reason = Some("a | b `c`".into());
    let m = render::markdown(&Plan::new("m", vec![c]));
    assert!(m.contains("````diff\n+```\n+| not a cell\n````"), "{m}");
    assert!(m.contains("a \\| b \\`c\\`"), "{m}");
}

#[test]
fn json_has_exactly_the_contract_keys() {
    let j: serde_json::Value = serde_json::from_str(&render::json(&sample())).unwrap();
    let mut top: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort();
    assert_eq!(
        top,
        [
            "changes",
            "command",
            "format_version",
            "mesh",
            "notes",
            "policy",
            "refused",
            "removals",
            "summary"
        ]
    );
    assert_eq!(j["command"], "plan");
    assert_eq!(
        j["policy"],
        serde_json::json!({
            "result": "passed", "deny_delete": [], "max_clusters_changed": null,
            "require_canary": false, "allowed": [], "violations": []
        })
    );
    let mut keys: Vec<&str> = j["changes"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "action",
            "after",
            "before",
            "cluster",
            "depends_on",
            "diff",
            "kind",
            "reason",
            "step"
        ]
    );
    assert_eq!(j["changes"][1]["action"], "no-op");
    assert_eq!(
        j["summary"],
        serde_json::json!({"create": 1, "update": 1, "delete": 1, "unchanged": 1})
    );
    let back: Plan = serde_json::from_value(j).unwrap();
    assert_eq!(back, sample());
}

fn saved() -> SavedPlan {
    SavedPlan {
        plan: sample(),
        destroy: false,
        lineage: Some("abc".into()),
        serial: 3,
        mesh_file_sha256: "f".repeat(64),
        mesh_version: "0.1.0".into(),
        refreshed: true,
    }
}

#[test]
fn saved_plans_round_trip_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.plan");
    saved().write(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(SavedPlan::read(&path).unwrap(), saved());
}

#[test]
fn files_that_are_not_plans_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [
        ("empty", &b""[..]),
        ("garbage", &[0xff, 0x00, 0x13][..]),
        ("json", &b"{\"hello\": 1}"[..]),
        ("state", &b"{\"format_version\": 1, \"lineage\": \"x\", \"serial\": 1, \"mesh_id\": \"m\", \"steps\": {}}"[..]),
        ("future", &b"{\"mesh_saved_plan\": 9}"[..]),
        ("broken", &b"{\"mesh_saved_plan\": 1, \"plan\": 3}"[..]),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        let e = SavedPlan::read(&p).unwrap_err();
        assert!(matches!(e, SavedPlanError::NotAPlan { .. }), "{name}: {e}");
        assert!(e.to_string().contains("mesh plan --out"), "{e}");
    }
    let e = SavedPlan::read(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(e, SavedPlanError::Read { .. }));
}

#[test]
fn stale_plans_are_refused_with_the_reason() {
    let s = saved();
    let sha = "f".repeat(64);
    assert!(s.check_fresh(Some("abc"), 3, &sha).is_ok());
    let reason = |r: Result<(), SavedPlanError>| r.unwrap_err().to_string();
    assert!(reason(s.check_fresh(Some("abc"), 3, "0")).contains("mesh file changed"));
    assert!(reason(s.check_fresh(Some("abc"), 5, &sha)).contains("serial 3 → 5"));
    assert!(reason(s.check_fresh(Some("xyz"), 3, &sha)).contains("another state"));
    assert!(reason(s.check_fresh(None, 0, &sha)).contains("no state now"));
    let fresh = SavedPlan {
        lineage: None,
        serial: 0,
        ..saved()
    };
    assert!(fresh.check_fresh(None, 0, &sha).is_ok());
    assert!(reason(fresh.check_fresh(Some("new"), 1, &sha)).contains("before any state"));
    assert!(reason(fresh.check_fresh(Some("new"), 1, &sha)).starts_with("stale plan"));
}

#[test]
fn a_saved_plan_of_an_unknown_plan_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    saved().write(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut v = v;
    v["plan"]["format_version"] = serde_json::json!("99");
    std::fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
    let e = SavedPlan::read(&path).unwrap_err();
    assert!(matches!(e, SavedPlanError::NotAPlan { .. }), "{e}");
    assert!(e.to_string().contains("format_version \"99\""), "{e}");
}

#[test]
fn first_difference_names_the_step_and_field_and_ignores_reasons() {
    use plans::{Action, Change, Plan};
    let change = |step: &str, action: Action, after: Option<&str>| Change {
        step: step.into(),
        kind: "attach".into(),
        cluster: "c2".into(),
        action,
        depends_on: vec![],
        reason: Some("input changed".into()),
        before: None,
        after: after.map(String::from),
        diff: None,
    };
    let a = Plan::new(
        "m",
        vec![
            change("c2/attach", Action::Create, Some("x")),
            change("c3/attach", Action::NoOp, Some("y")),
        ],
    );
    let mut same = a.clone();
    same.changes[0].reason = Some("other words".into());
    assert_eq!(a.first_difference(&same), None);

    let mut b = a.clone();
    b.changes[1].action = Action::Delete;
    assert_eq!(
        a.first_difference(&b).unwrap(),
        "c3/attach: action \"no-op\" against \"delete\""
    );
    let mut b = a.clone();
    b.changes[0].after = Some("secret".into());
    let d = a.first_difference(&b).unwrap();
    assert!(d.starts_with("c2/attach: input Some(\"sha256:"), "{d}");
    assert!(
        !d.contains("secret"),
        "inputs are named by fingerprint: {d}"
    );
    let mut b = a.clone();
    b.changes.pop();
    assert!(
        a.first_difference(&b)
            .unwrap()
            .contains("c3/attach is in one only")
    );
    let mut b = a.clone();
    b.summary.unchanged = 0;
    assert!(a.first_difference(&b).unwrap().starts_with("summary"));
}

/// A plan of format 1 written before the review fields existed still reads,
/// with their defaults.
#[test]
fn a_plan_without_the_review_fields_still_reads() {
    let mut j: serde_json::Value = serde_json::from_str(&render::json(&sample())).unwrap();
    for key in ["command", "notes", "removals", "refused", "policy"] {
        j.as_object_mut().unwrap().remove(key);
    }
    let back: Plan = serde_json::from_value(j).unwrap();
    assert_eq!(back, sample());
}

fn violation(rule: &str, step: Option<&str>, allowed: bool) -> Violation {
    Violation {
        rule: rule.into(),
        step: step.map(String::from),
        message: "the plan deletes it, and deny_delete has `*/install-control-plane`".into(),
        allowed,
    }
}

fn reviewed() -> Plan {
    let mut p = sample();
    p.changes[0].depends_on = vec![
        "cluster3/install-remote".into(),
        "cluster1/install-control-plane".into(),
    ];
    p.notes = vec!["cluster3 (a remote of cluster1) leaves the mesh".into()];
    p.removals = vec![Removal {
        step: "cluster3/attach".into(),
        removes: "Secret istio-system/istio-remote-secret-cluster3 in cluster1".into(),
    }];
    p.policy = PolicyReport {
        result: PolicyResult::Violated,
        deny_delete: vec!["*/attach".into()],
        max_clusters_changed: Some(10),
        require_canary: false,
        allowed: vec![],
        violations: vec![violation("deny_delete", Some("cluster3/attach"), false)],
    };
    p
}

/// The comment a reviewer reads: the labels, a refused policy with the
/// override to use, what goes, what it means, and where each change happens.
#[test]
fn markdown_review_blocks() {
    let m = render::markdown(&reviewed());
    let caution = "> [!CAUTION]\n> **Policy violated: `mesh plan` and `mesh apply` refuse this plan.**\n\
                   > - `deny_delete`: `cluster3/attach`: the plan deletes it, and deny_delete has `*/install-control-plane`\n\
                   >\n> Change the mesh file, or, once reviewed, plan with `--allow deny_delete` (the plan records it).\n\n";
    assert!(m.contains(caution), "{m}");
    assert!(
        m.contains(
            "> [!WARNING]\n> **This plan removes 1 step:**\n\
             > - `cluster3/attach`: Secret istio-system/istio-remote-secret-cluster3 in cluster1\n\n"
        ),
        "{m}"
    );
    assert!(
        m.contains("**What changes**\n\n- cluster3 (a remote of cluster1) leaves the mesh\n"),
        "{m}"
    );
    assert!(
        m.contains("| delete | `cluster3/attach` | attach | secret for cluster3 in cluster1 |"),
        "{m}"
    );
    // In that order, before the table.
    let at = |s: &str| m.find(s).unwrap();
    assert!(at("[!CAUTION]") < at("[!WARNING]"));
    assert!(at("[!WARNING]") < at("**What changes**"));
    assert!(at("**What changes**") < at("| action |"));

    let mut over = reviewed();
    over.policy.allowed = vec!["deny_delete".into()];
    over.policy.violations[0].allowed = true;
    over.policy.result = PolicyResult::Overridden;
    let m = render::markdown(&over);
    assert!(
        m.contains("> [!IMPORTANT]\n> **Policy overridden by `--allow deny_delete`.**\n"),
        "{m}"
    );
    assert!(m.contains("(allowed)"), "{m}");
    assert!(!m.contains("[!CAUTION]"));

    let mut passed = reviewed();
    passed.policy.violations.clear();
    passed.policy.result = PolicyResult::Passed;
    let m = render::markdown(&passed);
    assert!(
        m.contains(
            "**Policy:** passed (`deny_delete [\"*/attach\"]`, `max_clusters_changed 10`)\n"
        ),
        "{m}"
    );
}

/// `mesh diff` comments say they are a diff, and say what `mesh plan`
/// would refuse.
#[test]
fn a_diff_has_its_own_title_and_its_refusals() {
    let mut p = sample();
    p.command = Command::Diff;
    p.refused = vec!["the mesh ID changes from `mesh1` to `mesh2`".into()];
    let m = render::markdown(&p);
    assert!(m.starts_with("### mesh diff: `mesh1`\n"), "{m}");
    assert!(
        m.contains(
            "> [!CAUTION]\n> **`mesh plan` refuses this change.**\n> - the mesh ID changes from `mesh1` to `mesh2`\n"
        ),
        "{m}"
    );
    let t = render::text(&p, &TextOptions::default());
    assert!(
        t.contains("Refused: `mesh plan` will not make this change:\n  - the mesh ID changes"),
        "{t}"
    );
    let none = Plan {
        command: Command::Diff,
        ..Plan::new(
            "mesh1",
            vec![change("c/x", Action::NoOp, Some("a\n"), Some("a\n"))],
        )
    };
    assert_eq!(
        render::markdown(&none),
        "### mesh diff: `mesh1`\n\n**No changes.** Both versions of the mesh file make the same steps (1 steps unchanged).\n"
    );
}

/// The text form shows the policy, the removals and the notes too.
#[test]
fn text_shows_the_review() {
    let t = render::text(&reviewed(), &TextOptions::default());
    assert!(
        t.contains("This plan removes:\n  - cluster3/attach: Secret istio-system/istio-remote-secret-cluster3 in cluster1\n"),
        "{t}"
    );
    assert!(
        t.contains("What changes:\n  - cluster3 (a remote of cluster1) leaves the mesh\n"),
        "{t}"
    );
    assert!(
        t.contains("Policy: violated (deny_delete [\"*/attach\"], max_clusters_changed 10); `mesh plan` and `mesh apply` refuse it without --allow deny_delete\n  - deny_delete: cluster3/attach: "),
        "{t}"
    );
    assert!(
        t.trim_end()
            .ends_with("Plan: 1 to create, 1 to update, 1 to delete.")
    );
}

/// A thousand removals and notes still leave a comment under the limit.
#[test]
fn long_review_lists_are_cut_with_a_note() {
    let mut p = reviewed();
    p.removals = (0..1000)
        .map(|i| Removal {
            step: format!("c{i}/install-remote"),
            removes: format!("Istio's remote profile in c{i} (`istioctl uninstall --purge`)"),
        })
        .collect();
    p.notes = (0..1000).map(|i| format!("c{i} leaves the mesh")).collect();
    let m = render::markdown_with_limit(&p, 20_000);
    assert!(m.len() <= 20_000, "{}", m.len());
    assert!(
        m.contains("> - … and 960 more (`--format json` lists them all)"),
        "{m}"
    );
    assert!(m.contains("- … and 960 more"), "{m}");
}

#[test]
fn an_attach_says_which_primary_holds_its_secret() {
    let mut c = change("c3/attach", Action::Create, None, Some("x\n"));
    c.depends_on = vec![
        "c3/install-remote".into(),
        "c1/install-control-plane".into(),
    ];
    assert_eq!(c.secret_holder(), Some("c1"));
    assert_eq!(c.location(), "secret for c3 in c1");
    assert_eq!(c.clusters(), ["c3", "c1"]);
    let mut x = change("c1/attach@c2", Action::Create, None, Some("x\n"));
    x.kind = "attach".into();
    x.cluster = "c1".into();
    assert_eq!(x.location(), "secret for c1 in c2");
    let other = change("c3/install-remote", Action::Create, None, Some("x\n"));
    assert_eq!(other.secret_holder(), None);
    assert_eq!(other.location(), "c3");
}

/// `apply PLANFILE` must reach the policy result the saved plan recorded.
#[test]
fn first_difference_compares_the_policy_verdict() {
    let a = reviewed();
    let mut b = a.clone();
    b.policy.violations[0].message = "other words".into();
    b.notes.clear();
    assert_eq!(
        a.first_difference(&b),
        None,
        "messages and notes are derived text"
    );
    b.policy.allowed = vec!["deny_delete".into()];
    b.policy.violations[0].allowed = true;
    b.policy.result = PolicyResult::Overridden;
    let d = a.first_difference(&b).unwrap();
    assert!(d.starts_with("policy: violated"), "{d}");
}
