//! How plans made with `--target`, `--replace` and `--refresh-only` show.

use plans::render::{self, TextOptions};
use plans::{Action, Change, Drift, Plan};
use serde_json::Value;
use std::collections::BTreeMap;

fn no_op(step: &str) -> Change {
    Change {
        step: step.into(),
        kind: step.split('/').nth(1).unwrap().into(),
        cluster: step.split('/').next().unwrap().into(),
        action: Action::NoOp,
        depends_on: vec![],
        reason: None,
        before: Some("a\n".into()),
        after: Some("a\n".into()),
        diff: None,
    }
}

fn targeted() -> Plan {
    let mut update = no_op("cluster2/attach");
    update.action = Action::Update;
    update.reason = Some("replaced by --replace".into());
    update.diff = Some(String::new());
    let mut plan = Plan::new("mesh1", vec![update]);
    plan.targets = vec!["cluster2".into()];
    plan.replace = vec!["cluster2/attach".into()];
    plan.warnings = vec![
        "targeting is in effect (--target cluster2): the plan may not be complete. \
         `mesh plan` without it shows the rest."
            .into(),
    ];
    plan
}

fn refreshed() -> Plan {
    let mut plan = Plan::new(
        "mesh1",
        vec![no_op("cluster1/eastwest-address"), no_op("cluster2/attach")],
    );
    plan.refresh_only = true;
    plan.drift = Some(vec![
        Drift {
            step: "cluster1/eastwest-address".into(),
            kind: "eastwest-address".into(),
            cluster: "cluster1".into(),
            found: vec!["load-balancer address changed from 1.1.1.1 to 2.2.2.2".into()],
            outputs: Some(BTreeMap::from([(
                "address".to_string(),
                Value::from("2.2.2.2"),
            )])),
            status: "applied".into(),
        },
        Drift {
            step: "cluster2/attach".into(),
            kind: "attach".into(),
            cluster: "cluster2".into(),
            found: vec!["Secret istio-system/s | missing".into()],
            outputs: None,
            status: "tainted".into(),
        },
    ]);
    plan
}

#[test]
fn warnings_come_first_in_every_format() {
    let plan = targeted();
    let t = render::text(&plan, &TextOptions { color: false });
    assert!(
        t.starts_with("Warning: targeting is in effect (--target cluster2)"),
        "{t}"
    );
    let md = render::markdown(&plan);
    assert!(
        md.starts_with(
            "### mesh plan: `mesh1`\n\n> **Warning:** targeting is in effect (--target cluster2)"
        ),
        "{md}"
    );
    assert!(md.contains("`mesh plan` without it"), "{md}");
    let json: Value = serde_json::from_str(&render::json(&plan)).unwrap();
    assert_eq!(json["targets"], serde_json::json!(["cluster2"]));
    assert_eq!(json["replace"], serde_json::json!(["cluster2/attach"]));
    assert!(json["warnings"][0].as_str().unwrap().contains("targeting"));
    assert!(json.get("drift").is_none() && json.get("refresh_only").is_none());
    // A saved plan round-trips the verbs.
    let back: Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, plan);
}

#[test]
fn a_refresh_only_plan_shows_what_it_records() {
    let plan = refreshed();
    assert!(plan.has_changes() && !plan.summary.has_changes());
    let t = render::text(&plan, &TextOptions { color: false });
    assert!(
        t.contains(
            "~ cluster1/eastwest-address (record)\n    found: load-balancer address changed from 1.1.1.1 to 2.2.2.2\n    would record: outputs address = 2.2.2.2\n"
        ),
        "{t}"
    );
    assert!(
        t.contains("would record: tainted (the next apply runs it again)"),
        "{t}"
    );
    assert!(
        t.ends_with(
            "Refresh-only plan: 2 steps to record in the state; nothing in any cluster changes.\n"
        ),
        "{t}"
    );
    let md = render::markdown(&plan);
    assert!(
        md.contains("| `cluster2/attach` | attach | cluster2 | Secret istio-system/s \\| missing | tainted (the next apply runs it again) |"),
        "{md}"
    );
    let json: Value = serde_json::from_str(&render::json(&plan)).unwrap();
    assert_eq!(json["refresh_only"], true);
    assert_eq!(json["drift"][1]["status"], "tainted");
    assert_eq!(json["drift"][1]["outputs"], Value::Null);

    let mut clean = refreshed();
    clean.drift = Some(vec![]);
    assert!(!clean.has_changes());
    let t = render::text(&clean, &TextOptions { color: false });
    assert_eq!(
        t,
        "No changes. The state matches the clusters (2 recorded steps read).\n"
    );
}

#[test]
fn plans_made_with_other_verbs_differ() {
    let a = refreshed();
    let mut b = refreshed();
    b.drift.as_mut().unwrap()[0].outputs = Some(BTreeMap::from([(
        "address".to_string(),
        Value::from("3.3.3.3"),
    )]));
    let d = a.first_difference(&b).unwrap();
    assert!(d.contains("cluster1/eastwest-address"), "{d}");
    let mut c = targeted();
    c.targets = vec!["cluster3".into()];
    assert!(
        targeted()
            .first_difference(&c)
            .unwrap()
            .contains("--target")
    );
    assert_eq!(targeted().first_difference(&targeted()), None);
}
