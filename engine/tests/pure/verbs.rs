//! The planner's verbs (`--replace`, `--target`, `--refresh-only`): pure,
//! no IO. The end-to-end tests are in tests/sim/verbs.rs.

use engine::config::parse;
use engine::planner::{self, Mode, Options, Refresh};
use engine::topology::{self, StepGraph};
use plans::{Action, Plan};
use providers::{Known, Observation};
use serde_json::{Value, json};
use state::{State, Status};
use std::collections::BTreeMap;
use std::path::Path;

const MESH: &str = r#"
[mesh]
id = "mesh1"

[[cluster]]
name = "cluster1"
context = "kind-cluster1"
network = "network1"
role = "primary"

[[cluster]]
name = "cluster2"
context = "kind-cluster2"
network = "network1"
role = "remote"
primary = "cluster1"

[[cluster]]
name = "cluster3"
context = "kind-cluster3"
network = "network1"
role = "remote"
primary = "cluster1"
"#;

fn graph(src: &str) -> StepGraph {
    let mesh = parse(src, Path::new("mesh.toml")).expect("valid mesh file");
    topology::compile(&mesh).expect("compiles")
}

/// Every step of `graph` recorded as applied, the east-west address known.
fn applied(graph: &StepGraph) -> State {
    let mut st = State::new("mesh1");
    for step in graph.in_order() {
        let known = st.clone();
        let lookup =
            move |id: &str, key: &str| match known.steps.get(id).and_then(|r| r.outputs.get(key)) {
                Some(v) => Known::Known(v.clone()),
                None => Known::AfterApply,
            };
        let input = planner::render_step(step, &lookup);
        let mut outputs = BTreeMap::new();
        if step.id.ends_with("/eastwest-address") {
            outputs.insert("address".to_string(), json!("172.18.0.200"));
        }
        let rec = planner::record(step, graph, &input, outputs, Status::Applied, "t".into());
        st.steps.insert(step.id.clone(), rec);
    }
    st
}

fn actions(plan: &Plan) -> Vec<(&str, Action)> {
    plan.changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| (c.step.as_str(), c.action))
        .collect()
}

fn steps(plan: &Plan) -> Vec<&str> {
    plan.changes.iter().map(|c| c.step.as_str()).collect()
}

fn options(replace: &[&str], targets: &[&str]) -> Options {
    Options {
        replace: replace.iter().map(|s| s.to_string()).collect(),
        targets: targets.iter().map(|s| s.to_string()).collect(),
        refresh_only: false,
        renamed: Vec::new(),
    }
    .normalised()
}

#[test]
fn replace_turns_a_no_op_into_an_update_with_its_reason() {
    let g = graph(MESH);
    let st = applied(&g);
    let opts = options(&["cluster2/attach"], &[]);
    let plan = planner::plan_with("mesh1", &g, Some(&st), None, Mode::Converge, &opts);
    assert_eq!(actions(&plan), [("cluster2/attach", Action::Update)]);
    let c = plan
        .changes
        .iter()
        .find(|c| c.step == "cluster2/attach")
        .unwrap();
    assert_eq!(c.reason.as_deref(), Some("replaced by --replace"));
    assert_eq!(plan.replace, ["cluster2/attach"]);
    // A step that changes anyway keeps its other reason after this one.
    let mut st = st;
    st.steps.get_mut("cluster2/attach").unwrap().status = Status::Tainted;
    let plan = planner::plan_with("mesh1", &g, Some(&st), None, Mode::Converge, &opts);
    let c = plan
        .changes
        .iter()
        .find(|c| c.step == "cluster2/attach")
        .unwrap();
    assert!(
        c.reason
            .as_deref()
            .unwrap()
            .starts_with("replaced by --replace; tainted: "),
        "{c:?}"
    );
}

#[test]
fn unknown_names_are_refused_with_close_matches() {
    let g = graph(MESH);
    let st = applied(&g);
    let e = options(&["cluster2/atach"], &[])
        .check(&g, Some(&st))
        .unwrap_err()
        .to_string();
    assert!(e.contains("Did you mean `cluster2/attach`?"), "{e}");
    // A kind without its cluster: every step of that kind.
    let e = options(&["attach"], &[])
        .check(&g, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`cluster2/attach`, `cluster3/attach`"), "{e}");
    let e = options(&[], &["clustr2", "cluster9/attach"])
        .check(&g, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--target clustr2") && e.contains("`cluster2`"),
        "{e}"
    );
    assert!(e.contains("--target cluster9/attach"), "{e}");
    // Recorded steps gone from the mesh file can be targeted (their
    // delete), not replaced.
    let mut st = st;
    let mut gone = st.steps["cluster3/attach"].clone();
    gone.cluster = "cluster4".into();
    st.steps.insert("cluster4/attach".into(), gone);
    assert!(options(&[], &["cluster4"]).check(&g, Some(&st)).is_ok());
    let e = options(&["cluster4/attach"], &[])
        .check(&g, Some(&st))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no longer in the mesh file"), "{e}");
}

#[test]
fn a_target_brings_what_it_depends_on_and_nothing_else() {
    let g = graph(MESH);
    let plan = planner::plan_with(
        "mesh1",
        &g,
        None,
        None,
        Mode::Converge,
        &options(&[], &["cluster3/install-remote"]),
    );
    assert_eq!(
        steps(&plan),
        [
            "cluster1/install-control-plane",
            "cluster1/install-eastwest-gateway",
            "cluster1/eastwest-address",
            "cluster1/expose-istiod",
            "cluster3/prepare-namespace",
            "cluster3/install-remote",
        ]
    );
    assert_eq!(plan.summary.create, 6);
    assert_eq!(plan.targets, ["cluster3/install-remote"]);
    assert!(plan.warnings[0].contains("not for routine use"), "{plan:?}");
    // The same flags in another order make the same plan.
    let a = options(&[], &["cluster3", "cluster2"]);
    let b = options(&[], &["cluster2", "cluster3", "cluster2"]);
    assert_eq!(a, b);
}

#[test]
fn a_targeted_delete_brings_the_deletes_of_what_depends_on_it() {
    let g = graph(MESH);
    let st = applied(&g);
    let plan = planner::plan_with(
        "mesh1",
        &g,
        Some(&st),
        None,
        Mode::Destroy,
        &options(&[], &["cluster1/eastwest-address"]),
    );
    // install-remote of both remotes used the address; their attach ran
    // after them. Nothing of cluster1's other steps.
    let mut deleted: Vec<&str> = steps(&plan);
    assert_eq!(deleted.last(), Some(&"cluster1/eastwest-address"));
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "cluster1/eastwest-address",
            "cluster2/attach",
            "cluster2/install-remote",
            "cluster3/attach",
            "cluster3/install-remote",
        ]
    );
    assert!(plan.changes.iter().all(|c| c.action == Action::Delete));
}

#[test]
fn refresh_only_records_outputs_and_taints_other_drift() {
    let g = graph(MESH);
    let st = applied(&g);
    let mut refresh = Refresh::new();
    refresh.insert(
        "cluster1/eastwest-address".into(),
        Observation {
            drift: vec!["load-balancer address changed from 172.18.0.200 to 172.18.0.201".into()],
            outputs: BTreeMap::from([("address".to_string(), Value::from("172.18.0.201"))]),
            ..Default::default()
        },
    );
    refresh.insert(
        "cluster2/prepare-namespace".into(),
        Observation {
            drift: vec!["namespace istio-system missing".into()],
            outputs: BTreeMap::new(),
            ..Default::default()
        },
    );
    refresh.insert("cluster3/attach".into(), Observation::default());
    let opts = Options {
        refresh_only: true,
        ..Default::default()
    };
    let plan = planner::plan_with(
        "mesh1",
        &g,
        Some(&st),
        Some(&refresh),
        Mode::Converge,
        &opts,
    );
    assert!(plan.refresh_only);
    assert!(actions(&plan).is_empty(), "nothing changes in a cluster");
    assert_eq!(plan.summary.unchanged, st.steps.len());
    assert!(plan.has_changes());
    let drift = plan.drift.as_deref().unwrap();
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert_eq!(drift[0].step, "cluster1/eastwest-address");
    assert_eq!(drift[0].status, "applied");
    assert_eq!(
        drift[0].outputs.as_ref().unwrap()["address"],
        "172.18.0.201"
    );
    assert_eq!(
        drift[0].would_record(),
        "would record: outputs address = 172.18.0.201"
    );
    assert_eq!(drift[1].step, "cluster2/prepare-namespace");
    assert_eq!(drift[1].status, "tainted");
    assert_eq!(drift[1].outputs, None);

    let mut recorded = st.clone();
    let done = planner::record_drift(&mut recorded, drift, "now");
    assert_eq!(done.len(), 2);
    assert_eq!(
        recorded.steps["cluster1/eastwest-address"].outputs["address"],
        "172.18.0.201"
    );
    assert_eq!(
        recorded.steps["cluster2/prepare-namespace"].status,
        Status::Tainted
    );
    // Inputs are kept: what was applied is still what destroy undoes.
    assert_eq!(
        recorded.steps["cluster2/prepare-namespace"].input,
        st.steps["cluster2/prepare-namespace"].input
    );
    // The next plan, even without a refresh, starts from what was recorded.
    let next = planner::plan("mesh1", &g, Some(&recorded), None, Mode::Converge);
    assert_eq!(
        actions(&next),
        [
            ("cluster2/prepare-namespace", Action::Update),
            ("cluster2/install-remote", Action::Update),
            ("cluster3/install-remote", Action::Update),
        ]
    );

    // A target narrows what is recorded (to the step and what it depends on).
    let opts = Options {
        refresh_only: true,
        targets: vec!["cluster2/prepare-namespace".into()],
        ..Default::default()
    };
    let plan = planner::plan_with(
        "mesh1",
        &g,
        Some(&st),
        Some(&refresh),
        Mode::Converge,
        &opts,
    );
    let drift = plan.drift.as_deref().unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].step, "cluster2/prepare-namespace");
}

#[test]
fn a_saved_plan_must_have_been_made_with_the_same_verbs() {
    let g = graph(MESH);
    let st = applied(&g);
    let plain = planner::plan("mesh1", &g, Some(&st), None, Mode::Converge);
    let targeted = planner::plan_with(
        "mesh1",
        &g,
        Some(&st),
        None,
        Mode::Converge,
        &options(&[], &["cluster2"]),
    );
    let d = plain.first_difference(&targeted).unwrap();
    assert!(d.contains("--target"), "{d}");
    let replaced = planner::plan_with(
        "mesh1",
        &g,
        Some(&st),
        None,
        Mode::Converge,
        &options(&["cluster2/attach"], &[]),
    );
    assert!(plain.first_difference(&replaced).is_some());
    // The JSON of a plan without verbs has none of their keys.
    let json: Value = serde_json::to_value(&plain).unwrap();
    for key in ["targets", "replace", "warnings", "refresh_only", "drift"] {
        assert!(json.get(key).is_none(), "{key} in {json}");
    }
}
