//! `P/install-eastwest-gateway`: `istioctl install` of the east-west gateway
//! (what `samples/multicluster/gen-eastwest-gateway.sh --network N` prints).

use crate::rendered::Rendered;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub network: String,
    pub revision: Option<String>,
    /// The cluster's `[cluster.values]`, deep-merged into `spec.values`.
    pub values: Map<String, Value>,
}

pub fn render(_input: &Input) -> Rendered {
    todo!()
}
