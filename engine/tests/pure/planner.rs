//! The planner against recorded states: pure, no IO, no async.

use engine::config::parse;
use engine::planner::{self, Mode, Refresh};
use engine::topology::{self, StepGraph};
use plans::{Action, Plan};
use providers::{Known, Observation};
use serde_json::{Value, json};
use state::{State, Status};
use std::collections::BTreeMap;
use std::path::Path;

const SEED: &str = r#"
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
"#;

const THIRD: &str = r#"
[[cluster]]
name = "cluster3"
context = "kind-cluster3"
network = "network1"
role = "remote"
primary = "cluster1"
"#;

const ADDRESS: &str = "172.18.0.200";

fn graph(src: &str) -> StepGraph {
    let mesh = parse(src, Path::new("mesh.toml")).expect("valid mesh file");
    topology::compile(&mesh).expect("compiles")
}

/// What a successful apply of `plan` would record: every changed step with
/// its input rendered with the outputs known by then.
fn applied(graph: &StepGraph, plan: &Plan, prior: Option<State>) -> State {
    let mut st = prior.unwrap_or_else(|| State::new("mesh1"));
    for c in &plan.changes {
        if c.action == Action::Delete {
            st.steps.remove(&c.step);
        }
    }
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
            outputs.insert("address".to_string(), json!(ADDRESS));
        }
        let rec = planner::record(step, graph, &input, outputs, Status::Applied, "t".into());
        st.steps.insert(step.id.clone(), rec);
    }
    st
}

fn actions(plan: &Plan) -> Vec<(String, Action)> {
    plan.changes
        .iter()
        .filter(|c| c.action != Action::NoOp)
        .map(|c| (c.step.clone(), c.action))
        .collect()
}

fn change<'a>(plan: &'a Plan, step: &str) -> &'a plans::Change {
    plan.changes
        .iter()
        .find(|c| c.step == step)
        .unwrap_or_else(|| panic!("{step} not in plan"))
}

#[test]
fn seed_without_state_creates_seven_steps_in_order() {
    let g = graph(SEED);
    let plan = planner::plan("mesh1", &g, None, None, Mode::Converge);
    let ids: Vec<&str> = plan.changes.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(
        ids,
        [
            "cluster1/install-control-plane",
            "cluster1/install-eastwest-gateway",
            "cluster1/eastwest-address",
            "cluster1/expose-istiod",
            "cluster2/prepare-namespace",
            "cluster2/install-remote",
            "cluster2/attach",
        ]
    );
    assert!(plan.changes.iter().all(|c| c.action == Action::Create));
    assert_eq!(
        (
            plan.summary.create,
            plan.summary.update,
            plan.summary.delete
        ),
        (7, 0, 0)
    );
    let remote = change(&plan, "cluster2/install-remote");
    assert!(
        remote
            .after
            .as_deref()
            .unwrap()
            .contains("remotePilotAddress: (known after apply)")
    );
    assert_eq!(
        remote.depends_on,
        [
            "cluster1/eastwest-address",
            "cluster1/expose-istiod",
            "cluster2/prepare-namespace"
        ]
    );
    assert!(remote.before.is_none());
    assert!(remote.diff.as_deref().unwrap().contains("+"));
}

#[test]
fn an_applied_state_plans_no_changes_and_knows_the_address() {
    let g = graph(SEED);
    let first = planner::plan("mesh1", &g, None, None, Mode::Converge);
    let st = applied(&g, &first, None);
    let plan = planner::plan("mesh1", &g, Some(&st), None, Mode::Converge);
    assert!(!plan.summary.has_changes(), "{:?}", actions(&plan));
    assert_eq!(plan.summary.unchanged, 7);
    let remote = change(&plan, "cluster2/install-remote");
    assert!(remote.after.as_deref().unwrap().contains(ADDRESS));
}

#[test]
fn adding_a_remote_creates_only_its_three_steps() {
    let g = graph(SEED);
    let st = applied(
        &g,
        &planner::plan("mesh1", &g, None, None, Mode::Converge),
        None,
    );
    let bigger = graph(&format!("{SEED}{THIRD}"));
    let plan = planner::plan("mesh1", &bigger, Some(&st), None, Mode::Converge);
    assert_eq!(
        actions(&plan),
        [
            ("cluster3/prepare-namespace".into(), Action::Create),
            ("cluster3/install-remote".into(), Action::Create),
            ("cluster3/attach".into(), Action::Create),
        ]
    );
    // The new remote sees the address already recorded for its primary.
    assert!(
        change(&plan, "cluster3/install-remote")
            .after
            .as_deref()
            .unwrap()
            .contains(ADDRESS)
    );
}

#[test]
fn removing_a_remote_deletes_its_steps_in_reverse_order_first() {
    let bigger = graph(&format!("{SEED}{THIRD}"));
    let st = applied(
        &bigger,
        &planner::plan("mesh1", &bigger, None, None, Mode::Converge),
        None,
    );
    let plan = planner::plan("mesh1", &graph(SEED), Some(&st), None, Mode::Converge);
    assert_eq!(
        actions(&plan),
        [
            ("cluster3/attach".into(), Action::Delete),
            ("cluster3/install-remote".into(), Action::Delete),
            ("cluster3/prepare-namespace".into(), Action::Delete),
        ]
    );
    // Deletes come before everything else.
    assert_eq!(plan.changes[0].step, "cluster3/attach");
    let d = change(&plan, "cluster3/attach");
    assert_eq!(d.reason.as_deref(), Some("no longer in the mesh file"));
    assert!(d.after.is_none() && d.before.is_some());
}

#[test]
fn destroy_deletes_everything_in_reverse_dependency_order() {
    let g = graph(SEED);
    let st = applied(
        &g,
        &planner::plan("mesh1", &g, None, None, Mode::Converge),
        None,
    );
    let plan = planner::plan("mesh1", &g, Some(&st), None, Mode::Destroy);
    assert_eq!(plan.summary.delete, 7);
    let pos = |id: &str| plan.changes.iter().position(|c| c.step == id).unwrap();
    for c in &plan.changes {
        for dep in &c.depends_on {
            assert!(
                pos(&c.step) < pos(dep),
                "{} must be deleted before {dep}",
                c.step
            );
        }
    }
    // Nothing recorded: nothing to destroy.
    let empty = planner::plan("mesh1", &g, None, None, Mode::Destroy);
    assert!(empty.changes.is_empty());
}

#[test]
fn drift_from_refresh_updates_with_its_reason() {
    let g = graph(SEED);
    let st = applied(
        &g,
        &planner::plan("mesh1", &g, None, None, Mode::Converge),
        None,
    );
    let mut refresh = Refresh::new();
    refresh.insert(
        "cluster2/prepare-namespace".into(),
        Observation {
            drift: vec!["annotation topology.istio.io/controlPlaneClusters removed".into()],
            outputs: BTreeMap::new(),
            ..Default::default()
        },
    );
    let plan = planner::plan("mesh1", &g, Some(&st), Some(&refresh), Mode::Converge);
    assert_eq!(
        actions(&plan),
        [("cluster2/prepare-namespace".into(), Action::Update)]
    );
    assert_eq!(
        change(&plan, "cluster2/prepare-namespace")
            .reason
            .as_deref(),
        Some("drift: annotation topology.istio.io/controlPlaneClusters removed")
    );
}

/// Drift is shown beside an input change, never hidden by it: the update
/// starts from what the cluster has now (issue: a `cacerts` edited between
/// rotation phases showed only `input changed`).
#[test]
fn drift_is_shown_beside_an_input_change() {
    let g = graph(SEED);
    let mut st = applied(
        &g,
        &planner::plan("mesh1", &g, None, None, Mode::Converge),
        None,
    );
    st.steps
        .get_mut("cluster2/prepare-namespace")
        .unwrap()
        .input_fingerprint = "0".repeat(64);
    let mut refresh = Refresh::new();
    refresh.insert(
        "cluster2/prepare-namespace".into(),
        Observation {
            drift: vec!["label topology.istio.io/network removed".into()],
            outputs: BTreeMap::new(),
            ..Default::default()
        },
    );
    let plan = planner::plan("mesh1", &g, Some(&st), Some(&refresh), Mode::Converge);
    assert_eq!(
        change(&plan, "cluster2/prepare-namespace")
            .reason
            .as_deref(),
        Some("input changed; drift: label topology.istio.io/network removed")
    );
}

#[test]
fn a_new_load_balancer_address_updates_the_remote_downstream() {
    let g = graph(SEED);
    let st = applied(
        &g,
        &planner::plan("mesh1", &g, None, None, Mode::Converge),
        None,
    );
    let mut refresh = Refresh::new();
    refresh.insert(
        "cluster1/eastwest-address".into(),
        Observation {
            drift: vec!["address changed from 172.18.0.200 to 172.18.0.201".into()],
            outputs: BTreeMap::from([("address".to_string(), Value::from("172.18.0.201"))]),
            ..Default::default()
        },
    );
    let plan = planner::plan("mesh1", &g, Some(&st), Some(&refresh), Mode::Converge);
    assert_eq!(
        actions(&plan),
        [
            ("cluster1/eastwest-address".into(), Action::Update),
            ("cluster2/install-remote".into(), Action::Update),
        ]
    );
    let diff = change(&plan, "cluster2/install-remote")
        .diff
        .clone()
        .unwrap();
    assert!(
        diff.contains("-") && diff.contains("172.18.0.200") && diff.contains("172.18.0.201"),
        "{diff}"
    );
}

#[test]
fn a_tainted_step_runs_again() {
    let g = graph(SEED);
    let mut st = applied(
        &g,
        &planner::plan("mesh1", &g, None, None, Mode::Converge),
        None,
    );
    st.steps.get_mut("cluster2/install-remote").unwrap().status = Status::Tainted;
    let plan = planner::plan("mesh1", &g, Some(&st), None, Mode::Converge);
    assert_eq!(
        actions(&plan),
        [("cluster2/install-remote".into(), Action::Update)]
    );
    assert!(
        change(&plan, "cluster2/install-remote")
            .reason
            .as_deref()
            .unwrap()
            .starts_with("tainted")
    );
}

#[test]
fn a_changed_input_shows_a_diff() {
    let g = graph(SEED);
    let st = applied(
        &g,
        &planner::plan("mesh1", &g, None, None, Mode::Converge),
        None,
    );
    let changed = graph(&SEED.replace("id = \"mesh1\"", "id = \"mesh1\"\nrevision = \"canary\""));
    let plan = planner::plan("mesh1", &changed, Some(&st), None, Mode::Converge);
    let cp = change(&plan, "cluster1/install-control-plane");
    assert_eq!(cp.action, Action::Update);
    // The old revision's control plane stays, and the plan says how to remove it.
    assert_eq!(
        cp.reason.as_deref(),
        Some(
            "input changed; Istio revision `default` stays installed beside the new one (a \
             canary: listed in [[mesh.keep_revision]], mesh keeps tracking it, and removing it \
             there uninstalls it)"
        )
    );
    assert_eq!(
        change(&plan, "cluster1/expose-istiod").reason.as_deref(),
        Some(
            "input changed; VirtualService istio-system/istiod-vs stays: it is the default route \
             (SNI *) that default-revision sidecars and the remotes' default injection webhook \
             use; it goes with the control plane"
        )
    );
    assert!(
        cp.diff.as_deref().unwrap().contains("+  revision: canary"),
        "{}",
        cp.diff.as_deref().unwrap()
    );
    // The revision renames the VirtualService.
    assert!(
        change(&plan, "cluster1/expose-istiod")
            .after
            .as_deref()
            .unwrap()
            .contains("istiod-vs-canary")
    );
}

#[test]
fn plans_are_deterministic() {
    let g = graph(&format!("{SEED}{THIRD}"));
    let a = planner::plan("mesh1", &g, None, None, Mode::Converge);
    let b = planner::plan(
        "mesh1",
        &graph(&format!("{SEED}{THIRD}")),
        None,
        None,
        Mode::Converge,
    );
    assert_eq!(a, b);
}

#[test]
fn diff_compares_two_versions_of_the_mesh_file() {
    let base = graph(SEED);
    let head = graph(&format!("{SEED}{THIRD}"));
    let plan = planner::diff("mesh1", &base, &head);
    assert_eq!(plan.summary.create, 3);
    assert_eq!(plan.summary.unchanged, 7);
    assert_eq!(
        change(&plan, "cluster3/attach").reason.as_deref(),
        Some("added by this version of the mesh file")
    );
    let back = planner::diff("mesh1", &head, &base);
    assert_eq!(back.summary.delete, 3);
    let same = planner::diff("mesh1", &base, &base);
    assert!(!same.summary.has_changes());
}
