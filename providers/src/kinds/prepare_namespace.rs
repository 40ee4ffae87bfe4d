//! `R/prepare-namespace`: istio-system in the remote, annotated with the
//! primary that manages it (`topology.istio.io/controlPlaneClusters`).

use crate::rendered::Rendered;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The primary cluster's name.
    pub primary: String,
}

pub fn render(_input: &Input) -> Rendered {
    todo!()
}
