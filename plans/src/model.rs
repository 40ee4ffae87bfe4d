//! The plan model. Its serde form *is* the JSON output's contract
//! (docs/plan-json.md): keep field names stable.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Bumped when the JSON form changes incompatibly.
pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    /// The mesh ID.
    pub mesh: String,
    /// A `--refresh-only` plan: nothing in any cluster changes; applying it
    /// records [`Plan::drift`] in the state. (Absent from the JSON when false.)
    #[serde(default, skip_serializing_if = "is_false")]
    pub refresh_only: bool,
    /// `--target`: cluster names or step IDs; the plan covers only them and
    /// what they depend on. Empty: every step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// `--replace`: step IDs run again even when nothing changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<String>,
    /// What a reader must know before trusting the plan (targeting in effect).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Every step, in execution order: deletes first (reverse dependency
    /// order), then the rest in dependency order. Includes `no-op` steps.
    pub changes: Vec<Change>,
    /// A `--refresh-only` plan's findings: what it would record, per
    /// recorded step that drifted. `None` for any other plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Vec<Drift>>,
    pub summary: Summary,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a `--refresh-only` refresh found for one recorded step, and what
/// applying the plan records for it (docs/state.md, "Refresh only").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub step: String,
    pub kind: String,
    pub cluster: String,
    /// What the refresh found, one phrase each (the plan's `drift: …`).
    pub found: Vec<String>,
    /// The step's outputs as they would be recorded, when the cluster has
    /// other values than the state (a new east-west address); `None` when
    /// they stay as recorded.
    pub outputs: Option<BTreeMap<String, Value>>,
    /// The status the step would be recorded with: `tainted` when its
    /// objects are missing or changed (the next apply runs it again).
    pub status: String,
}

impl Drift {
    /// "would record: …" in words, for the text and Markdown plans.
    pub fn would_record(&self) -> String {
        let mut parts = Vec::new();
        if let Some(outputs) = &self.outputs {
            let shown: Vec<String> = outputs
                .iter()
                .map(|(k, v)| match v.as_str() {
                    Some(s) => format!("{k} = {s}"),
                    None => format!("{k} = {v}"),
                })
                .collect();
            parts.push(format!("outputs {}", shown.join(", ")));
        }
        if self.status == "tainted" {
            parts.push("tainted (the next apply runs it again)".into());
        }
        if parts.is_empty() {
            parts.push("nothing".into());
        }
        format!("would record: {}", parts.join("; "))
    }
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
            refresh_only: false,
            targets: Vec::new(),
            replace: Vec::new(),
            warnings: Vec::new(),
            summary: Summary::of(&changes),
            changes,
            drift: None,
        }
    }

    /// Whether applying the plan would change anything: a cluster, or (a
    /// `--refresh-only` plan) the state.
    pub fn has_changes(&self) -> bool {
        self.summary.has_changes() || self.drift.as_ref().is_some_and(|d| !d.is_empty())
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
        // How the plan was asked for decides what an apply does, as much as
        // its changes do.
        if self.refresh_only != other.refresh_only {
            return Some(format!(
                "refresh-only {} against {}",
                self.refresh_only, other.refresh_only
            ));
        }
        if self.targets != other.targets {
            return Some(format!(
                "--target {:?} against {:?}",
                self.targets, other.targets
            ));
        }
        if self.replace != other.replace {
            return Some(format!(
                "--replace {:?} against {:?}",
                self.replace, other.replace
            ));
        }
        if self.drift != other.drift {
            let (a, b) = (
                self.drift.as_deref().unwrap_or_default(),
                other.drift.as_deref().unwrap_or_default(),
            );
            let step = a
                .iter()
                .zip(b)
                .find(|(x, y)| x != y)
                .map(|(x, _)| x.step.as_str())
                .or_else(|| {
                    a.get(b.len())
                        .or_else(|| b.get(a.len()))
                        .map(|d| d.step.as_str())
                })
                .unwrap_or("?");
            return Some(format!(
                "{step}: what the refresh found and would record differs"
            ));
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
