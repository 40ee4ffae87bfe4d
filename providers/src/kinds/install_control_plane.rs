//! `P/install-control-plane`: `istioctl install` of the primary's control plane.

use crate::rendered::Rendered;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub mesh_id: String,
    pub cluster: String,
    pub network: String,
    pub revision: Option<String>,
    /// `values.pilot.env.EXTERNAL_ISTIOD: true`: set when the primary has remotes.
    pub external_istiod: bool,
    /// The cluster's `[cluster.values]`, deep-merged into `spec.values`.
    pub values: Map<String, Value>,
}

pub fn render(_input: &Input) -> Rendered {
    todo!("render the primary's IstioOperator")
}
