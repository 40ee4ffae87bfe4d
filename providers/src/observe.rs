//! What a refresh (a step kind's `read`) reports about a recorded step.

use serde_json::Value;
use std::collections::BTreeMap;

/// The live view of one recorded step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// How the cluster differs from what mesh recorded, one short phrase each
    /// ("annotation topology.istio.io/controlPlaneClusters removed"). Empty
    /// when the cluster matches.
    pub drift: Vec<String>,
    /// The step's outputs as the cluster has them now (e.g. the current
    /// east-west address), replacing the recorded ones for this plan.
    pub outputs: BTreeMap<String, Value>,
    /// Why the plan must not run, from what only the cluster shows (a
    /// create's preview: Gateway API CRDs of another release). Each names
    /// the cluster and the object.
    pub refused: Vec<String>,
}

impl Observation {
    pub fn in_sync(outputs: BTreeMap<String, Value>) -> Self {
        Observation {
            drift: Vec::new(),
            outputs,
            refused: Vec::new(),
        }
    }
}
