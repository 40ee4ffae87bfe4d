//! What steps need from the outside world when they run: cluster
//! connections, istioctl, limits, and a way to say what they wait for.

use crate::cluster::{ClusterError, Clusters};
use crate::istioctl::{Istioctl, IstioctlError};
use crate::rendered::Target;
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
    /// The mesh file's clusters and links, for steps that look past their
    /// own two clusters (an `attach` revoking a token other links shared).
    /// Empty when the command did not set it.
    pub fleet: Fleet,
    /// `[credentials] rotate_after`: a link token older than this is drift,
    /// and the next apply replaces it. None: tokens do not age.
    pub rotate_after: Option<Duration>,
    /// `[credentials] sync_timeout`: how long a step that rewrote a remote
    /// secret waits for every istiod to take it before revoking the old
    /// token.
    pub sync_timeout: Duration,
}

/// The mesh file's clusters, as the step graph has them.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Each cluster's target (context and kubeconfig).
    pub targets: BTreeMap<String, Target>,
    /// Each cluster: the control planes that hold a remote secret for it
    /// (its `attach` steps' targets).
    pub holders: BTreeMap<String, Vec<Target>>,
}

impl Env {
    pub fn new(clusters: Clusters, istioctl: Istioctl, kubeconfig: Option<PathBuf>) -> Env {
        Env {
            clusters,
            istioctl,
            kubeconfig,
            wait_timeout: Duration::from_secs(300),
            progress: Arc::new(|_, _| {}),
            fleet: Fleet::default(),
            rotate_after: None,
            sync_timeout: Duration::from_secs(300),
        }
    }

    pub fn say(&self, step: &str, what: &str) {
        (self.progress)(step, what)
    }
}

/// Where a verb runs: the run's environment, the step's ID (for progress
/// and messages) and the cluster its objects live in.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub env: &'a Env,
    pub step: &'a str,
    pub target: &'a Target,
}

impl<'a> Ctx<'a> {
    pub fn new(env: &'a Env, step: &'a str, target: &'a Target) -> Self {
        Ctx { env, step, target }
    }

    /// Tells the progress view what the step is doing now.
    pub fn say(&self, what: &str) {
        self.env.say(self.step, what)
    }

    /// The step's cluster.
    pub async fn connect(&self) -> Result<crate::cluster::Connection, StepError> {
        Ok(self.env.clusters.connect(self.target).await?)
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
    /// What the cluster holds forbids the step (a preview's finding): the
    /// plan is refused, naming the cluster and the object, before anything
    /// changes.
    #[error("{0}")]
    Refused(String),
    /// The step stopped before it sent anything that could change a
    /// cluster (a program it needs is missing): its record stays as it was.
    #[error("{0}")]
    NotRun(String),
}

impl StepError {
    /// The cluster (name, context) when the error is that a cluster cannot
    /// be reached or used at all (kubeconfig, context, connection), not
    /// something about one object: such an error is reported once per
    /// cluster, not once per step.
    pub fn unreachable_cluster(&self) -> Option<(&str, &str)> {
        match self {
            StepError::Cluster(
                ClusterError::Kubeconfig {
                    cluster, context, ..
                }
                | ClusterError::Context {
                    cluster, context, ..
                },
            ) => Some((cluster, context)),
            StepError::Cluster(ClusterError::Api {
                cluster,
                context,
                cause,
                ..
            }) if matches!(
                **cause,
                kube::Error::HyperError(_) | kube::Error::Service(_)
            ) =>
            {
                Some((cluster, context))
            }
            _ => None,
        }
    }
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
    /// The recorded YAML documents, parsed. A record that is not a list of
    /// Kubernetes-shaped documents (a hand-edited or damaged state) is an
    /// error that says so, never a panic further down.
    pub fn documents(&self) -> Result<Vec<Value>, StepError> {
        let corrupt = |why: String| {
            StepError::Failed(format!(
                "the state's record of this step is damaged: its `input` {why}. \
                 Restore the state from its `.backup`, or re-create the record with `mesh apply`"
            ))
        };
        let docs = serde_saphyr::from_multiple::<Value>(&self.yaml())
            .map_err(|e| corrupt(format!("is not YAML ({e})")))?;
        for (i, doc) in docs.iter().enumerate() {
            let field = |k: &str| doc.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            if !doc.is_object() || field("apiVersion").is_none() || field("kind").is_none() {
                return Err(corrupt(format!(
                    "document {} is not a Kubernetes object with `apiVersion` and `kind`",
                    i + 1
                )));
            }
        }
        Ok(docs)
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
