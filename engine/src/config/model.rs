//! The validated mesh file. Every value here has passed validation.

use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct MeshFile {
    /// Where the file was read from (for messages and relative paths).
    pub path: PathBuf,
    pub mesh: MeshSection,
    pub istioctl: IstioctlSection,
    pub state: StateSection,
    /// `[trust]`: the mesh's root of trust, when it has one.
    pub trust: Option<TrustSection>,
    /// `[policy]`: what a plan may not do (no rules when absent).
    pub policy: PolicySection,
    /// `[credentials]`: how the remote secrets' tokens age.
    pub credentials: CredentialsSection,
    /// `[tags]`: revision tag → revision (`default` drives
    /// `istio-injection=enabled`), set on every cluster where injection
    /// happens.
    pub tags: std::collections::BTreeMap<String, String>,
    /// In file order.
    pub clusters: Vec<Cluster>,
    /// Warnings (not errors) found while loading, e.g. a root key readable
    /// by others. Already worded for the user.
    pub warnings: Vec<String>,
}

/// `[credentials]`: each link's reader token older than `rotate_after` is
/// drift, which the next apply rotates without a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialsSection {
    pub rotate_after: Option<Duration>,
    /// How long an apply that rewrote a remote secret waits for every
    /// istiod of its control plane to take it before it revokes the old
    /// token (else the step fails and the old token stays).
    pub sync_timeout: Duration,
}

/// `[credentials] sync_timeout` when not written.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for CredentialsSection {
    fn default() -> Self {
        CredentialsSection {
            rotate_after: None,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
        }
    }
}

/// `[trust]`: a root CA from which every primary gets its own intermediate.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustSection {
    /// The root certificate's path, resolved against the mesh file's folder.
    pub root_cert: PathBuf,
    /// The root key's path: read at apply time only.
    pub root_key: PathBuf,
    /// Validity of each primary's intermediate CA.
    pub intermediate_days: u32,
    /// The root certificate (PEM, public), read by [`crate::config::load`];
    /// empty when the file was only parsed.
    pub root_cert_pem: String,
    /// Where `root_cert` and `root_key` are written (byte spans), for errors
    /// found when the files are read.
    pub spans: (std::ops::Range<usize>, std::ops::Range<usize>),
}

impl TrustSection {
    pub const DEFAULT_INTERMEDIATE_DAYS: u32 = 365;
}

/// `[policy]`: rules every plan is checked against before anything runs
/// (`engine::policy`); `--allow RULE` overrides one for one plan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicySection {
    /// Step-ID globs no plan may delete (`*/install-control-plane`).
    pub deny_delete: Vec<String>,
    /// How many clusters one apply may change; None: no limit.
    pub max_clusters_changed: Option<u32>,
    /// An `istio_version` change must come with a new revision (a canary
    /// upgrade), not upgrade the control planes in place.
    pub require_canary: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeshSection {
    pub id: String,
    /// The revision new installs use (None: Istio's unrevisioned control
    /// plane, which revision tags call `default`).
    pub revision: Option<String>,
    pub istio_version: Option<String>,
    /// `[[mesh.keep_revision]]`: other revisions kept installed beside
    /// `revision` (a canary upgrade), each with the istioctl that
    /// installed it. In file order.
    pub keep_revisions: Vec<KeptRevision>,
    /// `dataplane`: sidecars (the default) or Istio's ambient mode.
    pub dataplane: Dataplane,
}

/// How workloads join the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dataplane {
    /// A sidecar proxy in each pod: every topology.
    #[default]
    Sidecar,
    /// Istio's ambient mode: a ztunnel per node, no sidecars; multi-primary
    /// only.
    Ambient,
}

/// A revision kept installed beside the mesh's `revision`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptRevision {
    /// A revision, or `default` for the unrevisioned control plane.
    pub name: String,
    pub istio_version: Option<String>,
    /// The istioctl that installed it (and the only one that re-runs it).
    pub istioctl: String,
    /// Where its `istioctl` is written (`mesh.toml:12:12`), for the error
    /// when that istioctl is not of `istio_version`.
    pub written_at: String,
}

impl MeshSection {
    /// The name of the mesh's own revision as revision tags name it:
    /// `default` for the unrevisioned control plane.
    pub fn revision_name(&self) -> &str {
        self.revision.as_deref().unwrap_or("default")
    }

    /// Every installed revision's name: `revision` first, then the kept.
    pub fn revision_names(&self) -> Vec<&str> {
        std::iter::once(self.revision_name())
            .chain(self.keep_revisions.iter().map(|k| k.name.as_str()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct IstioctlSection {
    pub path: Option<String>,
    /// `istioctl install --readiness-timeout`: how long istioctl waits for
    /// what it installed to become ready.
    pub readiness_timeout: Duration,
    /// When mesh stops an istioctl run: longer than the readiness wait.
    pub timeout: Duration,
}

impl IstioctlSection {
    /// istioctl's own default.
    pub const DEFAULT_READINESS_TIMEOUT: Duration = Duration::from_secs(300);

    /// Twice the readiness wait plus two minutes: istioctl waits once per
    /// install, and applying the manifests takes time too.
    pub fn default_timeout(readiness: Duration) -> Duration {
        readiness * 2 + Duration::from_secs(120)
    }
}

impl Default for IstioctlSection {
    fn default() -> Self {
        IstioctlSection {
            path: None,
            readiness_timeout: Self::DEFAULT_READINESS_TIMEOUT,
            timeout: Self::default_timeout(Self::DEFAULT_READINESS_TIMEOUT),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateSection {
    pub path: Option<String>,
    /// `backend = "kubernetes"`: the state in a Secret of a cluster, locked
    /// by a Lease. None: the local file.
    pub kubernetes: Option<KubernetesState>,
}

/// Where the Kubernetes backend keeps the state.
#[derive(Debug, Clone, PartialEq)]
pub struct KubernetesState {
    /// The kubeconfig context (default: the first primary's).
    pub context: String,
    /// The kubeconfig file of that context's cluster, if the mesh file names one.
    pub kubeconfig: Option<String>,
    /// Never istio-system (destroy deletes it). Default `default`.
    pub namespace: String,
    /// The Secret's name (default: the mesh id); the Lease is `<name>-lock`.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Remote,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub context: String,
    pub network: String,
    pub role: Role,
    /// Set for remotes only.
    pub primary: Option<String>,
    pub kubeconfig: Option<String>,
    pub api_server: Option<String>,
    /// `[cluster.values]`: merged into the control plane's (primary) or the
    /// remote profile's (remote) IstioOperator `spec.values`.
    pub values: Map<String, Value>,
    /// `[cluster.eastwest_values]`: merged into the east-west gateway's
    /// IstioOperator `spec.values` only (it is a separate install, and an
    /// ingress setting such as a NodePort must not reach it).
    pub eastwest_values: Map<String, Value>,
}

impl MeshFile {
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
    /// More than one network among the clusters.
    pub fn is_multi_network(&self) -> bool {
        self.clusters
            .iter()
            .any(|c| c.network != self.clusters[0].network)
    }

    pub fn primaries(&self) -> impl Iterator<Item = &Cluster> {
        self.clusters.iter().filter(|c| c.role == Role::Primary)
    }
    pub fn remotes_of<'a>(&'a self, primary: &'a str) -> impl Iterator<Item = &'a Cluster> + 'a {
        self.clusters
            .iter()
            .filter(move |c| c.primary.as_deref() == Some(primary))
    }
}
