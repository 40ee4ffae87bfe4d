//! `P/expose-istiod`: Gateway `istiod-gateway` and VirtualService `istiod-vs`
//! (or `istiod-vs-<rev>`) in istio-system, server-side applied.

use crate::rendered::Rendered;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub revision: Option<String>,
}

pub fn render(_input: &Input) -> Rendered {
    todo!()
}
