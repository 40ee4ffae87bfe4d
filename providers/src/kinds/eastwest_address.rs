//! `P/eastwest-address`: wait until the east-west gateway's LoadBalancer
//! Service has an external IP; its output `address` feeds the remotes.

use crate::rendered::Rendered;
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// How long apply waits for the address.
    pub timeout_secs: u64,
}

/// What the step waits for; it applies nothing.
pub fn render(input: &Input) -> Rendered {
    Rendered {
        documents: vec![json!({
            "wait": {
                "service": "istio-system/istio-eastwestgateway",
                "for": ".status.loadBalancer.ingress[0].ip",
                "timeout": format!("{}s", input.timeout_secs),
            }
        })],
        unknown: false,
    }
}
