//! The validated mesh file. Every value here has passed validation.

use serde_json::{Map, Value};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub struct MeshFile {
    /// Where the file was read from (for messages and relative paths).
    pub path: PathBuf,
    pub mesh: MeshSection,
    pub istioctl: IstioctlSection,
    pub state: StateSection,
    /// In file order.
    pub clusters: Vec<Cluster>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MeshSection {
    pub id: String,
    pub revision: Option<String>,
    pub istio_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct IstioctlSection {
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateSection {
    pub path: Option<String>,
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
    /// `[cluster.values]`, merged into every IstioOperator's `spec.values`.
    pub values: Map<String, Value>,
}

impl MeshFile {
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
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
