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

impl Plan {
    /// The first way `other` differs from this plan in what an apply would
    /// do: the steps, their order, kind, cluster, action, dependencies,
    /// inputs before and after, and the summary. `None` when an apply of
    /// either does exactly the same. Reasons and diffs are derived text
    /// and not compared.
    pub fn first_difference(&self, other: &Plan) -> Option<String> {
        if self.mesh != other.mesh {
            return Some(format!("mesh `{}` against `{}`", self.mesh, other.mesh));
        }
        for (i, (a, b)) in self.changes.iter().zip(&other.changes).enumerate() {
            if a.step != b.step {
                return Some(format!(
                    "change {} is {} here and {} in the other",
                    i + 1,
                    a.step,
                    b.step
                ));
            }
            let field = |name: &str, x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| {
                Some(format!("{}: {name} {x:?} against {y:?}", a.step))
            };
            if a.kind != b.kind {
                return field("kind", &a.kind, &b.kind);
            }
            if a.cluster != b.cluster {
                return field("cluster", &a.cluster, &b.cluster);
            }
            if a.action != b.action {
                return field("action", &a.action.as_str(), &b.action.as_str());
            }
            if a.depends_on != b.depends_on {
                return field("depends_on", &a.depends_on, &b.depends_on);
            }
            let fingerprint = |s: &Option<String>| s.as_deref().map(fingerprint);
            if a.before != b.before {
                return field(
                    "recorded input",
                    &fingerprint(&a.before),
                    &fingerprint(&b.before),
                );
            }
            if a.after != b.after {
                return field("input", &fingerprint(&a.after), &fingerprint(&b.after));
            }
        }
        if self.changes.len() != other.changes.len() {
            let (longer, n) = if self.changes.len() > other.changes.len() {
                (&self.changes, other.changes.len())
            } else {
                (&other.changes, self.changes.len())
            };
            return Some(format!(
                "{} steps against {}: {} is in one only",
                self.changes.len(),
                other.changes.len(),
                longer[n].step
            ));
        }
        if self.summary != other.summary {
            return Some(format!(
                "summary {:?} against {:?}",
                self.summary, other.summary
            ));
        }
        None
    }
}

/// `sha256:<first 12 hex digits>` of a text, to name an input in a message
/// without printing it.
fn fingerprint(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
