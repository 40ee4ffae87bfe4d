//! `R/install-remote`: `istioctl install` of the remote profile, pointing at
//! the primary's east-west address.

use crate::kinds::OutputLookup;
use crate::rendered::Rendered;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub cluster: String,
    pub network: String,
    /// The primary's name: its `eastwest-address` step gives `remotePilotAddress`.
    pub primary: String,
    pub revision: Option<String>,
    pub values: Map<String, Value>,
}

pub fn render(_input: &Input, _outputs: OutputLookup<'_>) -> Rendered {
    todo!()
}
