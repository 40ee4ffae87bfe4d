//! `P/eastwest-address`: wait until the east-west gateway's LoadBalancer
//! Service has an external IP; its output `address` feeds the remotes.

use crate::rendered::Rendered;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// How long apply waits for the address.
    pub timeout_secs: u64,
}

pub fn render(_input: &Input) -> Rendered {
    todo!()
}
