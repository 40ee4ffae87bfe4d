//! The state file's model. Its JSON is a contract (docs/state.md): fields
//! are only ever added, and `format_version` says when that is not enough.

use crate::StateError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The format this mesh writes; it refuses files with a larger one.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format_version: u32,
    /// A random ID made with the state: a saved plan made against another
    /// state (another lineage) is refused.
    pub lineage: String,
    /// Incremented on every write.
    pub serial: u64,
    pub mesh_id: String,
    /// Keyed by step ID (`cluster2/attach`), so the file is ordered.
    pub steps: BTreeMap<String, StepRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    pub kind: String,
    /// The cluster of the step ID.
    pub cluster: String,
    /// The kubeconfig context the step acted on: destroy needs it even after
    /// the cluster has left the mesh file.
    pub context: String,
    /// Step IDs, so that steps gone from the mesh file are still deleted in
    /// reverse dependency order.
    pub depends_on: Vec<String>,
    /// sha256 (hex) of `input`.
    pub input_fingerprint: String,
    /// The rendered input as applied; sensitive values appear only as
    /// `(sensitive, sha256:…)`.
    pub input: String,
    pub outputs: BTreeMap<String, Value>,
    pub status: Status,
    /// RFC 3339, UTC.
    pub updated_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Applied,
    /// Began applying and failed or was interrupted: the next apply runs it
    /// again, destroy cleans it up.
    Tainted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Applied => "applied",
            Status::Tainted => "tainted",
        }
    }
}

impl State {
    /// A new, empty state with a fresh lineage.
    pub fn new(mesh_id: &str) -> State {
        State {
            format_version: FORMAT_VERSION,
            lineage: random_id(),
            serial: 0,
            mesh_id: mesh_id.to_string(),
            steps: BTreeMap::new(),
        }
    }

    /// Refuses a state that belongs to another mesh.
    pub fn check_mesh_id(&self, expected: &str) -> Result<(), StateError> {
        if self.mesh_id == expected {
            Ok(())
        } else {
            Err(StateError::OtherMesh {
                found: self.mesh_id.clone(),
                expected: expected.to_string(),
            })
        }
    }

    pub fn record(&mut self, id: impl Into<String>, record: StepRecord) {
        self.steps.insert(id.into(), record);
    }

    pub fn remove(&mut self, id: &str) -> Option<StepRecord> {
        self.steps.remove(id)
    }
}

/// 128 random bits as hex.
pub(crate) fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
