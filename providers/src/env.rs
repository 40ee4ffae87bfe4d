//! What steps need from the outside world when they run: cluster
//! connections, istioctl, limits, and a way to say what they wait for.

use crate::cluster::{ClusterError, Clusters};
use crate::istioctl::{Istioctl, IstioctlError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Told (step ID, what the step is doing now), for the progress view.
pub type ProgressFn = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// Shared by every step of one run.
pub struct Env {
    pub clusters: Clusters,
    pub istioctl: Istioctl,
    /// `--kubeconfig`, passed on to istioctl for clusters without their own.
    pub kubeconfig: Option<PathBuf>,
    /// How long waits (load-balancer address, token, namespace deletion) may take.
    pub wait_timeout: Duration,
    /// Called with (step ID, what the step is doing now) for the progress view.
    pub progress: ProgressFn,
}

impl Env {
    pub fn new(clusters: Clusters, istioctl: Istioctl, kubeconfig: Option<PathBuf>) -> Env {
        Env {
            clusters,
            istioctl,
            kubeconfig,
            wait_timeout: Duration::from_secs(300),
            progress: Arc::new(|_, _| {}),
        }
    }

    pub fn say(&self, step: &str, what: &str) {
        (self.progress)(step, what)
    }
}

/// Why a step failed. Messages name the cluster and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Istioctl(#[from] IstioctlError),
    /// A step-specific failure, already worded for the user.
    #[error("{0}")]
    Failed(String),
}

/// What a successful apply leaves behind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub outputs: BTreeMap<String, Value>,
    /// What the step ran and printed (secrets already redacted).
    pub log: String,
}

/// A step as the state recorded it: all destroy and read may rely on, so
/// that a step removed from the mesh file can still be destroyed.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// The rendered input as applied (`# context:` line, then YAML documents).
    pub input: &'a str,
    pub outputs: &'a BTreeMap<String, Value>,
}

impl Recorded<'_> {
    /// The recorded YAML documents, parsed.
    pub fn documents(&self) -> Vec<Value> {
        let yaml: String = self
            .input
            .lines()
            .filter(|l| !l.starts_with("# context:"))
            .map(|l| format!("{l}\n"))
            .collect();
        serde_saphyr::from_multiple::<Value>(&yaml).unwrap_or_default()
    }

    /// The recorded YAML without the context line.
    pub fn yaml(&self) -> String {
        self.input
            .lines()
            .filter(|l| !l.starts_with("# context:"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    pub fn output_str(&self, key: &str) -> Option<&str> {
        self.outputs.get(key).and_then(Value::as_str)
    }
}
