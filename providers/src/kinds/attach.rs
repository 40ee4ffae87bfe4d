//! `R/attach`: what `istioctl create-remote-secret --name R | kubectl apply`
//! in the primary does, done natively.

use crate::rendered::Rendered;
use serde_json::{Map, Value, json};
use std::path::PathBuf;

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
    /// The remote's own kubeconfig (its `kubeconfig` key), if set.
    pub remote_kubeconfig: Option<PathBuf>,
}

/// The Secret the primary will hold, as `istioctl create-remote-secret`
/// prints it, with its one data key described rather than shown: the
/// kubeconfig (and its token) is made at apply time and never rendered.
pub fn render(input: &Input) -> Rendered {
    let server = match &input.api_server {
        Some(s) => s.clone(),
        None => format!("(the server of context {})", input.remote_context),
    };
    let mut data = Map::new();
    data.insert(
        input.remote.clone(),
        Value::from(format!(
            "(sensitive: kubeconfig for {server} with the token of istio-system/istio-reader-service-account in {}, made at apply time)",
            input.remote
        )),
    );
    Rendered {
        documents: vec![json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("istio-remote-secret-{}", input.remote),
                "namespace": "istio-system",
                "labels": {"istio/multiCluster": "true"},
                "annotations": {"networking.istio.io/cluster": input.remote},
            },
            "stringData": data,
        })],
        unknown: false,
    }
}
