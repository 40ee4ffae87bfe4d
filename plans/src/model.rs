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
    // The fields below were added after format 1 was published: a reader of
    // an older plan gets their defaults.
    /// What made the plan: `plan` (`mesh plan`, `apply`, `destroy`) or
    /// `diff` (`mesh diff`: two versions of the mesh file, no state).
    #[serde(default)]
    pub command: Command,
    /// What the changes mean, one plain-language line each ("cluster4
    /// moves to network2"), in a fixed order.
    #[serde(default)]
    pub notes: Vec<String>,
    /// What each delete removes, in the plan's order.
    #[serde(default)]
    pub removals: Vec<Removal>,
    /// Why `mesh plan` would refuse this change (a `diff` shows what a
    /// plan cannot: a mesh ID change). Empty for a plan.
    #[serde(default)]
    pub refused: Vec<String>,
    /// The mesh file's `[policy]` and how this plan fares against it.
    #[serde(default)]
    pub policy: PolicyReport,
}

/// What made a plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    #[default]
    Plan,
    Diff,
}

/// What one delete removes, in plain language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    pub step: String,
    /// E.g. "namespace istio-system in cluster3, with everything in it".
    pub removes: String,
}

/// The policy of the mesh file (`[policy]`) as it was checked against a
/// plan: the rules, the `--allow` overrides, and every violation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReport {
    /// `passed` (no violation), `overridden` (every violation is of a rule
    /// named by `--allow`) or `violated` (plan and apply refuse the plan).
    pub result: PolicyResult,
    /// Step-ID globs the plan may not delete.
    pub deny_delete: Vec<String>,
    /// How many clusters one apply may change; null when unlimited.
    pub max_clusters_changed: Option<u32>,
    /// Whether an Istio version change must come with a new revision.
    pub require_canary: bool,
    /// The rules `--allow` overrides for this plan.
    pub allowed: Vec<String>,
    /// Every violation, allowed or not, by rule then plan order.
    pub violations: Vec<Violation>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyResult {
    #[default]
    Passed,
    Overridden,
    Violated,
}

impl PolicyResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyResult::Passed => "passed",
            PolicyResult::Overridden => "overridden",
            PolicyResult::Violated => "violated",
        }
    }
}

/// One way a plan breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The rule's key in `[policy]`: `deny_delete`, `max_clusters_changed`
    /// or `require_canary`.
    pub rule: String,
    /// The step that breaks it; null for a rule about the whole plan
    /// (`max_clusters_changed`).
    pub step: Option<String>,
    /// What is wrong, in plain language.
    pub message: String,
    /// Whether `--allow <rule>` overrides it.
    pub allowed: bool,
}

impl PolicyReport {
    /// Whether any rule is set.
    pub fn has_rules(&self) -> bool {
        !self.deny_delete.is_empty() || self.max_clusters_changed.is_some() || self.require_canary
    }

    /// The rules, as a reader would write them: `deny_delete
    /// ["*/install-control-plane"]`, `max_clusters_changed 10`,
    /// `require_canary`.
    pub fn rules(&self) -> Vec<String> {
        let mut rules = Vec::new();
        if !self.deny_delete.is_empty() {
            let globs: Vec<String> = self.deny_delete.iter().map(|g| format!("{g:?}")).collect();
            rules.push(format!("deny_delete [{}]", globs.join(", ")));
        }
        if let Some(n) = self.max_clusters_changed {
            rules.push(format!("max_clusters_changed {n}"));
        }
        if self.require_canary {
            rules.push("require_canary".to_string());
        }
        rules
    }

    /// The violations `--allow` does not override.
    pub fn refused(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| !v.allowed)
    }

    /// The rules that were broken and not allowed, each once, in order.
    pub fn refused_rules(&self) -> Vec<&str> {
        let mut rules: Vec<&str> = Vec::new();
        for v in self.refused() {
            if !rules.contains(&v.rule.as_str()) {
                rules.push(&v.rule);
            }
        }
        rules
    }

    /// The error `mesh plan` and `mesh apply` stop with when the plan
    /// breaks a rule that was not allowed: each rule and step, and what to
    /// do. None when the plan may go ahead.
    pub fn refusal(&self) -> Option<String> {
        if self.result != PolicyResult::Violated {
            return None;
        }
        let mut msg = String::from("the plan breaks the mesh file's [policy]:\n");
        for v in self.refused() {
            match &v.step {
                Some(step) => msg.push_str(&format!("  {}: {step}: {}\n", v.rule, v.message)),
                None => msg.push_str(&format!("  {}: {}\n", v.rule, v.message)),
            }
        }
        let allow: Vec<String> = self
            .refused_rules()
            .iter()
            .map(|r| format!("--allow {r}"))
            .collect();
        msg.push_str(&format!(
            "Nothing was applied or saved. Change the mesh file, or, once the change has been \
             reviewed, plan again with {} (the plan records it)",
            allow.join(" ")
        ));
        Some(msg)
    }
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
            command: Command::Plan,
            notes: Vec::new(),
            removals: Vec::new(),
            refused: Vec::new(),
            policy: PolicyReport::default(),
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
    /// inputs before and after, the summary, and the policy's verdict
    /// (rules, `--allow`, violations). `None` when an apply of either does
    /// exactly the same. Reasons, diffs, notes and messages are derived
    /// text and not compared.
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
            if let Some(d) = change_difference(i, a, b) {
                return Some(d);
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
        policy_difference(&self.policy, &other.policy)
    }
}

impl Change {
    /// For an `attach` step, the primary whose istio-system holds the
    /// remote secret: `Q` of `C/attach@Q`, else the primary whose control
    /// plane `C/attach` runs after (C's own primary). None for other kinds.
    pub fn secret_holder(&self) -> Option<&str> {
        if self.kind != "attach" {
            return None;
        }
        if let Some((_, q)) = self.step.split_once('@') {
            return Some(q);
        }
        self.depends_on
            .iter()
            .filter_map(|d| d.strip_suffix("/install-control-plane"))
            .find(|c| *c != self.cluster)
    }

    /// The clusters the step talks to: its own and, for an `attach`, the
    /// primary that holds the Secret.
    pub fn clusters(&self) -> Vec<&str> {
        let mut v = vec![self.cluster.as_str()];
        v.extend(self.secret_holder().filter(|h| *h != self.cluster));
        v
    }

    /// Where the change happens, for a reader: the cluster, or for an
    /// `attach` "secret for C in Q" (the step ID names C, but the Secret
    /// lives in Q).
    pub fn location(&self) -> String {
        match self.secret_holder() {
            Some(q) => format!("secret for {} in {q}", self.cluster),
            None => self.cluster.clone(),
        }
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

/// How the `i`-th changes of two plans differ, if they do.
fn change_difference(i: usize, a: &Change, b: &Change) -> Option<String> {
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
    None
}

/// How two plans' policy verdicts differ, if they do. Messages are derived
/// text: the verdict is the rule, step and override.
fn policy_difference(a: &PolicyReport, b: &PolicyReport) -> Option<String> {
    let verdict = |p: &PolicyReport| {
        let v: Vec<(String, Option<String>, bool)> = p
            .violations
            .iter()
            .map(|v| (v.rule.clone(), v.step.clone(), v.allowed))
            .collect();
        (
            p.result,
            p.deny_delete.clone(),
            p.max_clusters_changed,
            p.require_canary,
            p.allowed.clone(),
            v,
        )
    };
    if verdict(a) != verdict(b) {
        return Some(format!(
            "policy: {} ({} violations, --allow {:?}) against {} ({} violations, --allow {:?})",
            a.result.as_str(),
            a.violations.len(),
            a.allowed,
            b.result.as_str(),
            b.violations.len(),
            b.allowed
        ));
    }
    None
}
