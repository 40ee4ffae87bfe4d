//! `mesh import`: adopting a mesh installed by hand (Istio's guide, another
//! tool). Every step of the mesh file is looked at in its cluster, in
//! dependency order (an adopted east-west address renders the remote's
//! input), and each whose live objects are what mesh would apply is
//! recorded as applied. Nothing in a cluster changes.

use crate::planner;
use crate::refresh::RefreshError;
use crate::topology::StepGraph;
use providers::env::Env;
use providers::{Adoption, Ctx, Known};
use state::{State, Status};

/// What import found.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// Recorded as applied, in order.
    pub adopted: Vec<String>,
    /// Not recorded: the step and why.
    pub differs: Vec<(String, String)>,
}

/// Looks at every step of `graph` and records the matching ones in `state`.
pub async fn import(
    env: &Env,
    graph: &StepGraph,
    state: &mut State,
    now: impl Fn() -> String,
) -> Result<Report, Vec<RefreshError>> {
    let mut report = Report::default();
    let mut errors = Vec::new();
    for step in graph.in_order() {
        let lookup =
            |id: &str, key: &str| match state.steps.get(id).and_then(|r| r.outputs.get(key)) {
                Some(v) => Known::Known(v.clone()),
                None => Known::AfterApply,
            };
        let input = planner::render_step(step, &lookup);
        if input.unknown {
            let missing: Vec<&str> = graph
                .dependencies(&step.id)
                .into_iter()
                .filter(|d| !state.steps.contains_key(*d))
                .collect();
            report.differs.push((
                step.id.clone(),
                format!("its input needs {} first", missing.join(", ")),
            ));
            continue;
        }
        let cx = Ctx::new(env, &step.id, &step.target);
        match step.input.adopt(cx, &input.text).await {
            Ok(Adoption::Adopted(outputs)) => {
                let rec = planner::record(step, graph, &input, outputs, Status::Applied, now());
                state.steps.insert(step.id.clone(), rec);
                report.adopted.push(step.id.clone());
            }
            Ok(Adoption::Differs(why)) => report.differs.push((step.id.clone(), why.join("; "))),
            Err(e) => errors.push(RefreshError::of(step.id.clone(), &e)),
        }
    }
    if errors.is_empty() {
        Ok(report)
    } else {
        Err(errors)
    }
}
