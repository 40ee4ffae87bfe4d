//! The mesh file's shape as plain serde types, for the JSON Schema
//! (docs/mesh.schema.json, for editors) and as a cross-check of the parser:
//! every file the parser accepts also deserialises into these.
//! The doc comments become the schema's descriptions.

use schemars::JsonSchema;
use serde::Deserialize;

/// A mesh file (mesh.toml): one Istio mesh, its clusters and their roles.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "mesh.toml")]
pub struct RawMeshFile {
    pub mesh: RawMesh,
    #[serde(default)]
    pub istioctl: Option<RawIstioctl>,
    #[serde(default)]
    pub state: Option<RawState>,
    #[serde(default)]
    pub trust: Option<RawTrust>,
    #[serde(default)]
    pub policy: Option<RawPolicy>,
    #[serde(default)]
    pub credentials: Option<RawCredentials>,
    /// Revision tags (`istioctl tag set`): tag name → the installed revision it
    /// points at (`default` drives `istio-injection=enabled`; a revision name, or
    /// `default` for the unrevisioned control plane). Set on every cluster.
    #[serde(default)]
    pub tags: Option<std::collections::BTreeMap<String, String>>,
    /// The clusters, as an array of tables (`[[cluster]]`).
    #[serde(default)]
    pub cluster: Vec<RawCluster>,
}

/// The mesh as a whole.
/// `[mesh] dataplane`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawDataplane {
    Sidecar,
    Ambient,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMesh {
    /// The Istio meshID (letters, digits, `.`, `_`, `-`).
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]+$"))]
    pub id: String,
    /// An Istio revision for every install in this mesh (a DNS-1123 label, not `default`).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub revision: Option<String>,
    /// Refuse to run if `istioctl version --remote=false` reports another version.
    pub istio_version: Option<String>,
    /// Other revisions kept installed beside `revision` (a canary upgrade), each
    /// with the istioctl that installed it (`[[mesh.keep_revision]]`).
    #[serde(default)]
    pub keep_revision: Vec<RawKeepRevision>,
    /// How workloads join the mesh: sidecars (the default) or Istio's ambient
    /// mode (multi-primary only, with `[trust]`).
    pub dataplane: Option<RawDataplane>,
}

/// How the remote secrets' tokens age.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    /// A link's reader token older than this is drift, which the next apply rotates
    /// with no gap (`90d`, `720h`; at least an hour).
    pub rotate_after: Option<String>,
    /// How long an apply that rewrote a remote secret waits for every istiod of its
    /// control plane to take it before revoking the old token (default `5m`).
    pub sync_timeout: Option<String>,
}

/// A revision kept installed beside the mesh's `revision`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawKeepRevision {
    /// The revision (a DNS-1123 label), or `default` for the unrevisioned control plane.
    pub name: String,
    /// The Istio version its istioctl must report.
    pub istio_version: Option<String>,
    /// The istioctl that installed it: the only one that re-runs or uninstalls it.
    pub istioctl: String,
}

/// How istioctl is run.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIstioctl {
    /// The istioctl binary: a name looked up in PATH, or a path. Default `istioctl`.
    pub path: Option<String>,
    /// `istioctl install --readiness-timeout`: how long istioctl waits for what it
    /// installed to become ready (`30s`, `5m`, `1h`). Default `300s`, istioctl's own.
    pub readiness_timeout: Option<String>,
    /// When mesh stops an istioctl run that has not finished (`30s`, `5m`, `1h`).
    /// Must be longer than `readiness_timeout`. Default: twice `readiness_timeout` plus 2 minutes.
    pub timeout: Option<String>,
}

/// Where the state is kept.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// The state file, relative to the mesh file. Default `mesh.state.json`.
    pub path: Option<String>,
    /// `local` (the file, default) or `kubernetes` (a Secret, locked by a Lease).
    pub backend: Option<String>,
    /// Kubernetes backend: the context of the cluster that keeps the state.
    /// Default: the first primary's.
    pub context: Option<String>,
    /// Kubernetes backend: the namespace (it must exist; never istio-system,
    /// which destroy deletes). Default `default`.
    pub namespace: Option<String>,
    /// Kubernetes backend: the Secret's name. Default: the mesh id.
    pub name: Option<String>,
}

/// The mesh's root of trust: every primary gets its own intermediate CA,
/// signed by this root, as Istio's `cacerts` Secret. Required with more
/// than one primary. `mesh ca init` makes a root.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTrust {
    /// The root certificate (PEM), relative to the mesh file.
    pub root_cert: String,
    /// The root's private key (PEM, mode 0600), relative to the mesh file.
    /// Read at apply time only; never in plans, state or logs.
    pub root_key: String,
    /// Validity of each primary's intermediate CA, in days. Default 365.
    #[schemars(range(min = 1, max = 3650))]
    pub intermediate_days: Option<u32>,
}

/// What a plan may not do: `mesh plan` and `mesh apply` refuse a plan that
/// breaks a rule, unless `--allow <rule>` overrides it (the plan records it).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// Step-ID globs no plan may delete, e.g. `*/install-control-plane`
    /// (`*` any characters but `/`, `?` one, `[a-c]` one of a set).
    pub deny_delete: Option<Vec<String>>,
    /// How many clusters one apply may change (1 or more). Default: no limit.
    #[schemars(range(min = 1))]
    pub max_clusters_changed: Option<u32>,
    /// An `istio_version` change must add a new revision (a canary upgrade),
    /// not upgrade the installs in place. Default false.
    pub require_canary: Option<bool>,
}

/// The role of a cluster in the mesh.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawRole {
    /// Runs the Istio control plane (istiod) and its east-west gateway.
    Primary,
    /// Uses the control plane of its `primary`.
    Remote,
}

/// One cluster.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// The Istio clusterName: a DNS-1123 label, unique in the file (it names Secrets).
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"))]
    pub name: String,
    /// The kubeconfig context that reaches this cluster, unique in the file.
    pub context: String,
    /// The network the cluster is on (only one network per primary and its remotes for now).
    pub network: String,
    pub role: RawRole,
    /// For remotes: the name of the primary whose control plane this cluster uses.
    pub primary: Option<String>,
    /// A kubeconfig file for this cluster (`~/` expanded, relative to the mesh file).
    /// Default: `--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`.
    pub kubeconfig: Option<String>,
    /// The https:// URL other clusters use to reach this API server
    /// (default: the context's server; kind needs this).
    pub api_server: Option<String>,
    /// Merged into `spec.values` of the control plane's IstioOperator (a primary)
    /// or of the remote profile's (a remote). Not into the east-west gateway's.
    pub values: Option<serde_json::Map<String, serde_json::Value>>,
    /// Merged into `spec.values` of the east-west gateway's IstioOperator only.
    pub eastwest_values: Option<serde_json::Map<String, serde_json::Value>>,
}
