//! The plan model. Its serde form *is* the JSON output's contract
//! (docs/plan-json.md): keep field names stable.

use serde::{Deserialize, Serialize};

/// Bumped when the JSON form changes incompatibly.
pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    /// The mesh ID.
    pub mesh: String,
    /// Every step, in execution order: deletes first (reverse dependency
    /// order), then the rest in dependency order. Includes `no-op` steps.
    pub changes: Vec<Change>,
    pub summary: Summary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// `<cluster>/<kind>`.
    pub step: String,
    pub kind: String,
    pub cluster: String,
    pub action: Action,
    pub depends_on: Vec<String>,
    /// Why: e.g. "not in state", "input changed", "drift: annotation removed".
    pub reason: Option<String>,
    /// Recorded rendered input (sensitive values as fingerprints); None for create.
    pub before: Option<String>,
    /// New rendered input; None for delete.
    pub after: Option<String>,
    /// Unified diff of before → after; None for no-op.
    pub diff: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Delete,
    NoOp,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::NoOp => "no-op",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
}

impl Summary {
    pub fn of(changes: &[Change]) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            match c.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Delete => s.delete += 1,
                Action::NoOp => s.unchanged += 1,
            }
        }
        s
    }

    pub fn has_changes(&self) -> bool {
        self.create + self.update + self.delete > 0
    }
}

impl Plan {
    pub fn new(mesh: impl Into<String>, changes: Vec<Change>) -> Plan {
        Plan {
            format_version: FORMAT_VERSION.to_string(),
            mesh: mesh.into(),
            summary: Summary::of(&changes),
            changes,
        }
    }
}
