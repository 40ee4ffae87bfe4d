//! The preflight `plan` and `apply` make before anything else touches a
//! cluster (engine::preflight decides what, providers::preflight checks):
//! a plan that cannot be applied is an error, not "7 to create".

use crate::pipeline::Operation;
use crate::world::World;
use anyhow::Result;
use engine::config::MeshFile;
use engine::planner::{self, Mode};
use engine::topology::StepGraph;
use state::State;

/// How many clusters are checked at once.
const PARALLELISM: usize = 64;

/// What the preflight of one command checks.
pub struct Preflight {
    pub operation: Operation,
    pub mode: Mode,
    /// Whether the command refreshes: what refresh reads is checked too.
    pub refresh: bool,
    /// `--strict`: warnings are errors.
    pub strict: bool,
}

impl Preflight {
    /// What did not happen when a check failed, and what to do: each
    /// finding is between the two.
    fn outcome_and_advice(&self) -> (&'static str, String) {
        let op = self.operation.as_str();
        match self.operation {
            Operation::Plan => (
                "no plan was made",
                "Fix them, or plan from the state alone (reading no cluster) with --no-refresh."
                    .into(),
            ),
            // A cluster gone for good holds steps destroy cannot undo.
            _ if self.mode == Mode::Destroy => (
                "nothing was changed",
                format!(
                    "Fix them and run `mesh {op}` again. A cluster that is gone for good: \
                     `mesh state rm CLUSTER` forgets its steps (nothing is sent to it), then \
                     destroy the rest."
                ),
            ),
            _ => (
                "nothing was changed",
                format!("Fix them and run `mesh {op}` again."),
            ),
        }
    }
}

/// Checks what the plan of `how.mode` against `recorded` touches (with
/// `how.refresh`, what refresh reads too); prints the warnings; an error
/// when a check failed, or a warning did with `how.strict`. The error says
/// what did not happen, then each finding, then what to do.
pub async fn check(
    world: &World,
    mesh: &MeshFile,
    graph: &StepGraph,
    recorded: Option<&State>,
    how: &Preflight,
) -> Result<()> {
    let (mode, refresh, strict) = (how.mode, how.refresh, how.strict);
    // The plan before refresh: refresh only turns recorded steps into
    // changes, and their clusters are checked when it runs.
    let plan = planner::plan(&mesh.mesh.id, graph, recorded, None, mode);
    let dk = world.default_kubeconfig();
    let needs = engine::preflight::needs(&plan, graph, recorded, refresh, dk.as_deref());
    let found = engine::preflight::run(
        &world.env,
        &needs,
        mesh.mesh.istio_version.as_deref(),
        &mesh.mesh.keep_revisions,
        world.loopback_reachable(),
        PARALLELISM,
    )
    .await;
    let mut errors = found.errors;
    if strict {
        errors.extend(
            found
                .warnings
                .iter()
                .map(|w| format!("{w} (an error with --strict)")),
        );
    } else {
        for w in &found.warnings {
            crate::errln!("warning: {w}");
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let (outcome, advice) = how.outcome_and_advice();
    let lines: Vec<String> = errors.iter().map(|e| format!("  - {e}")).collect();
    anyhow::bail!(
        "the preflight checks failed, so {outcome}:\n{}\n{advice}",
        lines.join("\n")
    )
}
