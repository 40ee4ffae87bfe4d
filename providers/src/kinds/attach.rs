//! `R/attach`: what `istioctl create-remote-secret --name R | kubectl apply`
//! in the primary does, done natively.

use crate::rendered::Rendered;

#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The remote cluster's name (the Secret's name, annotation and data key).
    pub remote: String,
    /// The remote's kubeconfig context (its server is the default API URL).
    pub remote_context: String,
    /// The primary, where the Secret is written.
    pub primary: String,
    /// `api_server` from the mesh file, if set.
    pub api_server: Option<String>,
}

pub fn render(_input: &Input) -> Rendered {
    todo!()
}
