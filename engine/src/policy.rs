//! The mesh file's `[policy]` checked against a plan, before anything runs.
//! Pure: a plan and the rules in, a [`PolicyReport`] out (recorded in the
//! plan, so every format shows it and a saved plan carries it).
//!
//! - `deny_delete`: step-ID globs ([`Glob`]) no plan may delete.
//! - `max_clusters_changed`: how many clusters one apply may touch (an
//!   `attach` touches its cluster and the primary that holds its Secret).
//! - `require_canary`: an Istio version change must come with a new
//!   revision. An install step whose input changes its `mesh/istio-version`
//!   while its revision stays the same upgrades in place: a violation.
//!
//! `--allow RULE` turns that rule's violations into recorded overrides.

use crate::config::PolicySection;
use plans::{Action, Plan, PolicyReport, PolicyResult, Violation};
use std::collections::{BTreeSet, HashSet};

/// The rules, by their key in `[policy]`, and the safety gates that are
/// not policy (`new-binary`: a program the state does not record, checked
/// before the plan is made; `rotation-gate`: a root rotation's phase the
/// proxies do not show ready for, `trust::gate`): what `--allow` accepts.
pub const RULES: &[&str] = &[
    "deny_delete",
    "max_clusters_changed",
    "require_canary",
    "new-binary",
    "rotation-gate",
];

/// The report's result from its violations.
fn result_of(violations: &[Violation]) -> PolicyResult {
    if violations.is_empty() {
        PolicyResult::Passed
    } else if violations.iter().all(|v| v.allowed) {
        PolicyResult::Overridden
    } else {
        PolicyResult::Violated
    }
}

/// Records in `report` a safety gate that `--allow <gate>` overrode (the
/// gate itself is checked before the plan is made, as `new-binary` is):
/// one allowed violation per message, so every plan format shows it.
pub fn record_override(report: &mut PolicyReport, gate: &str, messages: &[String]) {
    report
        .violations
        .extend(messages.iter().map(|message| Violation {
            rule: gate.to_string(),
            step: None,
            message: message.clone(),
            allowed: true,
        }));
    report.result = result_of(&report.violations);
}

/// Checks `plan` against `policy`; the rules in `allowed` are overridden.
pub fn evaluate(policy: &PolicySection, plan: &Plan, allowed: &[String]) -> PolicyReport {
    // Known rules only, each once, in RULES order: the report is the same
    // however `--allow` was spelled out.
    let allowed: Vec<String> = RULES
        .iter()
        .filter(|r| allowed.iter().any(|a| a == *r))
        .map(|r| r.to_string())
        .collect();
    let mut violations = Vec::new();
    let mut push = |rule: &str, step: Option<&str>, message: String| {
        violations.push(Violation {
            rule: rule.to_string(),
            step: step.map(String::from),
            message,
            allowed: allowed.iter().any(|a| a == rule),
        })
    };

    let globs: Vec<(&str, Glob)> = policy
        .deny_delete
        .iter()
        // Validation refused globs that do not parse.
        .filter_map(|g| Glob::parse(g).ok().map(|p| (g.as_str(), p)))
        .collect();
    for c in plan.changes.iter().filter(|c| c.action == Action::Delete) {
        if let Some((text, _)) = globs.iter().find(|(_, g)| g.matches(&c.step)) {
            push(
                "deny_delete",
                Some(&c.step),
                format!("the plan deletes it, and deny_delete has `{text}`"),
            );
        }
    }

    if let Some(max) = policy.max_clusters_changed {
        let mut clusters: Vec<&str> = Vec::new();
        for c in plan.changes.iter().filter(|c| c.action != Action::NoOp) {
            for name in c.clusters() {
                if !clusters.contains(&name) {
                    clusters.push(name);
                }
            }
        }
        if clusters.len() > max as usize {
            const SHOWN: usize = 10;
            let mut names = clusters[..clusters.len().min(SHOWN)].join(", ");
            if clusters.len() > SHOWN {
                names.push_str(&format!(" and {} more", clusters.len() - SHOWN));
            }
            push(
                "max_clusters_changed",
                None,
                format!(
                    "the plan changes {} clusters ({names}), more than max_clusters_changed = {max}: \
                     split the change into smaller ones",
                    clusters.len()
                ),
            );
        }
    }

    if policy.require_canary {
        for c in plan.changes.iter().filter(|c| c.action == Action::Update) {
            let (Some(before), Some(after)) = (&c.before, &c.after) else {
                continue;
            };
            let (was, now) = (
                providers::facts::of_input(before),
                providers::facts::of_input(after),
            );
            if let (Some(v0), Some(v1), Some(r0), Some(r1)) = (
                &was.istio_version,
                &now.istio_version,
                &was.revision,
                &now.revision,
            ) && v0 != v1
                && r0 == r1
            {
                push(
                    "require_canary",
                    Some(&c.step),
                    format!(
                        "upgrades Istio from {v0} to {v1} in place (revision `{r1}` stays): \
                         set a new [mesh] revision with the new istio_version for a canary upgrade"
                    ),
                );
            }
        }
    }

    let result = result_of(&violations);
    PolicyReport {
        result,
        deny_delete: policy.deny_delete.clone(),
        max_clusters_changed: policy.max_clusters_changed,
        require_canary: policy.require_canary,
        allowed,
        violations,
    }
}

/// What `mesh apply PLANFILE` allows: exactly what the saved plan recorded.
/// An `--allow` the saved plan did not record is refused, since reviewers
/// saw the plan without it.
pub fn allowed_for_saved(saved: &Plan, given: &[String]) -> Result<Vec<String>, String> {
    let extra: BTreeSet<&String> = given
        .iter()
        .filter(|g| !saved.policy.allowed.contains(g))
        .collect();
    if !extra.is_empty() {
        let rules: Vec<String> = extra.iter().map(|r| format!("--allow {r}")).collect();
        return Err(format!(
            "the saved plan was made without {}: a saved plan is applied with the overrides \
             it records. Make a new plan with `mesh plan {} --out FILE`, review it, and apply that",
            rules.join(" "),
            rules.join(" ")
        ));
    }
    Ok(saved.policy.allowed.clone())
}

/// A glob of step IDs: `*` any run of characters but `/`, `?` one
/// character but `/`, `[abc]`, `[a-c]` and `[!abc]` one of (or not of) a
/// set; anything else is itself. Exactly one `/` (a step ID is
/// `<cluster>/<kind>`, `<cluster>/attach@<primary>` or
/// `<cluster>/<kind>#<revision or tag>`), the kind half must match a step
/// kind mesh has, and the whole must match some step ID of a shape mesh
/// makes (`crate::topology::id_shape`), so that a typo cannot silently
/// protect nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(Vec<Token>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    Star,
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("it is empty, so it matches no step")]
    Empty,
    #[error("`{0}` cannot appear in a step ID (lowercase letters, digits, `-`, `/`, `@` and `#`)")]
    BadChar(char),
    #[error("a `[` is not closed by `]`")]
    Unclosed,
    #[error("`[]` is an empty set of characters")]
    EmptyClass,
    #[error("the range `{0}-{1}` is backwards")]
    BackwardsRange(char, char),
    #[error("it has no `/`, so it matches no step ID")]
    NoSlash,
    #[error("it has more than one `/`, so it matches no step ID")]
    TooManySlashes,
    #[error("`{0}` matches no step kind")]
    NoSuchKind(String),
    /// Nothing before the `/`, or nothing after it.
    #[error("its {0} is empty, so it matches no step ID")]
    EmptyPart(&'static str),
    /// A literal `@` or `#` at the end: a name always follows them.
    #[error("it ends in `{0}`, and a step ID never does (a name always follows `{0}`)")]
    Dangling(char),
    /// Well formed, but of no shape [`crate::topology::compile`] makes
    /// (`*/install-control-plane@*`, `*/attach#x`, `*/revision-tag`).
    #[error("it matches no step ID mesh makes")]
    NoStepId,
}

fn id_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '/' | '@' | '#')
}

impl Glob {
    pub fn parse(text: &str) -> Result<Glob, GlobError> {
        if text.is_empty() {
            return Err(GlobError::Empty);
        }
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Star,
                '?' => Token::Any,
                '[' => {
                    let negated = chars.next_if_eq(&'!').is_some();
                    let mut ranges = Vec::new();
                    loop {
                        match chars.next() {
                            // A set never holds `/`: a `[` still open there
                            // was not closed.
                            None | Some('/') => return Err(GlobError::Unclosed),
                            Some(']') => break,
                            Some(lo) => {
                                if !id_char(lo) || lo == '/' {
                                    return Err(GlobError::BadChar(lo));
                                }
                                let hi = if chars.peek() == Some(&'-')
                                    && chars.clone().nth(1).is_some_and(|h| h != ']')
                                {
                                    chars.next();
                                    let hi = chars.next().unwrap_or(lo);
                                    if !id_char(hi) || hi == '/' {
                                        return Err(GlobError::BadChar(hi));
                                    }
                                    if hi < lo {
                                        return Err(GlobError::BackwardsRange(lo, hi));
                                    }
                                    hi
                                } else {
                                    lo
                                };
                                ranges.push((lo, hi));
                            }
                        }
                    }
                    if ranges.is_empty() {
                        return Err(GlobError::EmptyClass);
                    }
                    Token::Class { negated, ranges }
                }
                c if id_char(c) => Token::Char(c),
                c => return Err(GlobError::BadChar(c)),
            });
        }
        let slashes: Vec<usize> = tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == Token::Char('/'))
            .map(|(i, _)| i)
            .collect();
        let slash = match slashes.as_slice() {
            [] => return Err(GlobError::NoSlash),
            [one] => *one,
            _ => return Err(GlobError::TooManySlashes),
        };
        if slash == 0 {
            return Err(GlobError::EmptyPart("cluster part (before `/`)"));
        }
        if matches!(
            tokens.get(slash + 1),
            None | Some(Token::Char('@') | Token::Char('#'))
        ) {
            return Err(GlobError::EmptyPart("kind part (after `/`)"));
        }
        // The kind half, up to a literal `@` (`attach@<primary>`) or `#`
        // (`install-control-plane#<kept revision>`, `revision-tag#<tag>`).
        let tail = &tokens[slash + 1..];
        let kind_end = tail
            .iter()
            .position(|t| *t == Token::Char('@') || *t == Token::Char('#'))
            .unwrap_or(tail.len());
        let kind_glob = Glob(tail[..kind_end].to_vec());
        let any_kind = providers::StepKind::ALL
            .iter()
            .any(|k| kind_glob.matches(k.as_str()));
        if !any_kind {
            let written: String = text
                .split_once('/')
                .map(|(_, t)| t.split(['@', '#']).next().unwrap_or(t).to_string())
                .unwrap_or_default();
            return Err(GlobError::NoSuchKind(written));
        }
        if let Some(Token::Char(c @ ('@' | '#'))) = tokens.last() {
            return Err(GlobError::Dangling(*c));
        }
        let glob = Glob(tokens);
        if !glob.matches_some_step_id() {
            return Err(GlobError::NoStepId);
        }
        Ok(glob)
    }

    /// Whether some step ID of a shape mesh makes ([`IdState`]) matches:
    /// a search of the pairs (place in the glob, place in a step ID), one
    /// character of a step ID at a time.
    fn matches_some_step_id(&self) -> bool {
        let p = &self.0;
        let alphabet: Vec<char> = ('a'..='z')
            .chain('0'..='9')
            .chain(['-', '/', '@', '#'])
            .collect();
        let mut seen: HashSet<(usize, IdState)> = HashSet::new();
        let mut todo = vec![(0, IdState::Start)];
        while let Some((at, id)) = todo.pop() {
            if !seen.insert((at, id)) {
                continue;
            }
            if at == p.len() {
                if id.accepts() {
                    return true;
                }
                continue;
            }
            // A `*` may match nothing.
            if p[at] == Token::Star {
                todo.push((at + 1, id));
            }
            for &c in &alphabet {
                let next_at = match &p[at] {
                    Token::Star if c != '/' => at,
                    Token::Star => continue,
                    t if one_char(t, c) => at + 1,
                    _ => continue,
                };
                todo.extend(id.next(c).into_iter().map(|n| (next_at, n)));
            }
        }
        false
    }

    /// Whether the whole of `id` matches.
    pub fn matches(&self, id: &str) -> bool {
        let s: Vec<char> = id.chars().collect();
        matches_at(&self.0, &s)
    }
}

/// Whether the token `t` (not a `*`) matches the one character `c`.
fn one_char(t: &Token, c: char) -> bool {
    match t {
        Token::Char(x) => *x == c,
        Token::Any => c != '/',
        Token::Class { negated, ranges } => {
            c != '/' && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
        Token::Star => false,
    }
}

/// Where a step ID is, read one character at a time: the shapes
/// [`crate::topology::id_shape`] says each kind's IDs have. A cluster's,
/// a revision's and a tag's name are one or more lowercase letters,
/// digits and `-` (validation allows no more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum IdState {
    /// Nothing read.
    Start,
    /// In the cluster's name.
    Cluster,
    /// `read` characters of the kind `StepKind::ALL[kind]`.
    Kind { kind: usize, read: usize },
    /// After the `@` or `#` that follows a kind; `named`: a character of
    /// the name after it was read.
    Suffix { named: bool },
}

impl IdState {
    fn name_char(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    }

    /// The places after reading `c` (none: no step ID goes on so).
    fn next(self, c: char) -> Vec<IdState> {
        let kinds = providers::StepKind::ALL;
        match self {
            IdState::Start | IdState::Cluster if Self::name_char(c) => vec![IdState::Cluster],
            IdState::Cluster if c == '/' => (0..kinds.len())
                .map(|kind| IdState::Kind { kind, read: 0 })
                .collect(),
            IdState::Kind { kind, read } => {
                let name = kinds[kind].as_str();
                let shape = crate::topology::id_shape(kinds[kind]);
                match name.as_bytes().get(read) {
                    Some(&b) if char::from(b) == c => vec![IdState::Kind {
                        kind,
                        read: read + 1,
                    }],
                    Some(_) => Vec::new(),
                    None if (c == '@' && shape.at_primary) || (c == '#' && shape.named) => {
                        vec![IdState::Suffix { named: false }]
                    }
                    None => Vec::new(),
                }
            }
            IdState::Suffix { .. } if Self::name_char(c) => vec![IdState::Suffix { named: true }],
            _ => Vec::new(),
        }
    }

    /// Whether a step ID may end here.
    fn accepts(self) -> bool {
        let kinds = providers::StepKind::ALL;
        match self {
            IdState::Kind { kind, read } => {
                read == kinds[kind].as_str().len() && crate::topology::id_shape(kinds[kind]).plain
            }
            IdState::Suffix { named } => named,
            _ => false,
        }
    }
}

fn matches_at(p: &[Token], s: &[char]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((Token::Star, rest)) => {
            // Try every length of the run, up to the next `/`.
            let max = s.iter().position(|c| *c == '/').unwrap_or(s.len());
            (0..=max).any(|n| matches_at(rest, &s[n..]))
        }
        Some((t, rest)) => match s.split_first() {
            None => false,
            Some((c, s_rest)) => {
                let one = match t {
                    Token::Char(x) => x == c,
                    Token::Any => *c != '/',
                    Token::Class { negated, ranges } => {
                        *c != '/'
                            && ranges.iter().any(|(lo, hi)| (lo..=hi).contains(&c)) != *negated
                    }
                    Token::Star => unreachable!("handled above"),
                };
                one && matches_at(rest, s_rest)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plans::Change;

    fn change(step: &str, action: Action, before: Option<&str>, after: Option<&str>) -> Change {
        let (cluster, kind) = step.split_once('/').unwrap();
        Change {
            step: step.into(),
            kind: kind.split('@').next().unwrap().into(),
            cluster: cluster.into(),
            action,
            depends_on: vec![],
            reason: None,
            before: before.map(String::from),
            after: after.map(String::from),
            diff: None,
        }
    }

    #[test]
    fn globs_match_step_ids() {
        let g = |s: &str| Glob::parse(s).unwrap();
        assert!(g("*/install-control-plane").matches("cluster1/install-control-plane"));
        assert!(!g("*/install-control-plane").matches("cluster1/install-remote"));
        assert!(g("cluster?/*").matches("cluster1/attach@cluster2"));
        assert!(!g("cluster?/*").matches("cluster10/attach"));
        assert!(g("prod-[a-c]/*").matches("prod-b/plug-ca"));
        assert!(!g("prod-[!a-c]/*").matches("prod-b/plug-ca"));
        assert!(g("*/attach@*").matches("c1/attach@c2"));
        assert!(!g("*/attach@*").matches("c1/attach"));
        assert!(g("*/attach*").matches("c1/attach@c2") && g("*/attach*").matches("c1/attach"));
        assert!(!g("*/install-*").matches("a/b/install-remote"));
    }

    #[test]
    fn bad_globs_say_why() {
        let e = |s: &str| Glob::parse(s).unwrap_err();
        assert_eq!(e(""), GlobError::Empty);
        assert_eq!(e("install-control-plane"), GlobError::NoSlash);
        assert_eq!(e("a/b/c"), GlobError::TooManySlashes);
        assert_eq!(e("*/[abc"), GlobError::Unclosed);
        assert_eq!(e("cluster[12/*"), GlobError::Unclosed);
        assert_eq!(e("*/[]x"), GlobError::EmptyClass);
        assert_eq!(e("[z-a]/*"), GlobError::BackwardsRange('z', 'a'));
        assert_eq!(e("Cluster1/*"), GlobError::BadChar('C'));
        assert_eq!(
            e("*/install-contol-plane"),
            GlobError::NoSuchKind("install-contol-plane".into())
        );
        assert_eq!(e("*/nope@*"), GlobError::NoSuchKind("nope".into()));
        assert!(Glob::parse("*/*").is_ok() && Glob::parse("c1/attach@c2").is_ok());
    }

    /// Hardening III, 3: a glob that parses but can match no step ID mesh
    /// makes is refused too (`*/attach@` protected nothing).
    #[test]
    fn globs_that_match_no_step_id_are_refused() {
        let e = |s: &str| Glob::parse(s).unwrap_err();
        assert_eq!(e("*/attach@"), GlobError::Dangling('@'));
        assert_eq!(e("*/install-control-plane#"), GlobError::Dangling('#'));
        assert_eq!(e("*/*@"), GlobError::Dangling('@'));
        assert_eq!(
            e("/attach"),
            GlobError::EmptyPart("cluster part (before `/`)")
        );
        assert_eq!(e("c1/"), GlobError::EmptyPart("kind part (after `/`)"));
        assert_eq!(e("c1/@c2"), GlobError::EmptyPart("kind part (after `/`)"));
        for none in [
            "*/install-control-plane@*",
            "*/plug-ca@*",
            "*/attach#x",
            "*/plug-ca#*",
            "*/revision-tag",
            "*/attach@@",
            "*/attach@c2@*",
            "*/attach@/",
            "c@1/*",
            "*/attach@[!a-z0-9-]",
            "*/install-remote#-x#y",
        ] {
            assert!(Glob::parse(none).is_err(), "{none} is accepted");
        }
        for some in [
            "*/attach@*",
            "*/attach*",
            "*/*@*",
            "*/*#*",
            "*/*",
            "*/revision-tag#*",
            "*/revision-tag*",
            "c1/install-control-plane#1-28",
            "*/install-*#default",
            "*/install-eastwest-gateway",
            "cluster?/plug-ca",
            "*/[a-z]*",
        ] {
            assert!(Glob::parse(some).is_ok(), "{some}: {:?}", Glob::parse(some));
        }
    }

    /// The shapes the globs are checked against are the ones the topology
    /// makes: every step ID of a fleet with two primaries, a kept revision
    /// and a tag, written as a glob of itself, is accepted.
    #[test]
    fn every_step_id_mesh_makes_is_a_glob_that_matches_it() {
        let mesh = include_str!("../../examples/mixed-fleet.toml").replacen(
            "id = \"fleet\"\n",
            "id = \"fleet\"\nrevision = \"1-29\"\nistio_version = \"1.29\"\n\n\
             [[mesh.keep_revision]]\nname = \"default\"\nistio_version = \"1.28\"\n\
             istioctl = \"/opt/istio-1.28.0/bin/istioctl\"\n\n\
             [istioctl]\npath = \"/opt/istio-1.29.0/bin/istioctl\"\n",
            1,
        ) + "\n[tags]\ndefault = \"1-29\"\n";
        let mesh = crate::config::parse(&mesh, std::path::Path::new("mesh.toml"))
            .unwrap_or_else(|d| panic!("{}", d.render(false)));
        let graph = crate::topology::compile(&mesh).unwrap();
        let ids: Vec<&str> = graph.in_order().map(|s| s.id.as_str()).collect();
        for want in ["@", "#"] {
            assert!(ids.iter().any(|id| id.contains(want)), "no {want}: {ids:?}");
        }
        for id in ids {
            let glob = Glob::parse(id).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert!(glob.matches(id), "{id}");
        }
    }

    const CP_127: &str = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata:\n  \
        name: control-plane\n  annotations:\n    mesh/istio-version: 1.27.0\nspec:\n  revision: r1\n";

    #[test]
    fn each_rule_finds_its_violations_and_allow_overrides_them() {
        let cp_128 = CP_127.replace("1.27.0", "1.28.0");
        let canary = cp_128.replace("revision: r1", "revision: r2");
        let mut attach = change("c3/attach", Action::Delete, Some("x"), None);
        attach.depends_on = vec!["c1/install-control-plane".into()];
        let plan = Plan::new(
            "m",
            vec![
                change("c1/install-control-plane", Action::Delete, Some("x"), None),
                attach,
                change(
                    "c2/install-control-plane",
                    Action::Update,
                    Some(CP_127),
                    Some(&cp_128),
                ),
                change(
                    "c4/install-control-plane",
                    Action::Update,
                    Some(CP_127),
                    Some(&canary),
                ),
                change("c5/install-remote", Action::NoOp, Some("x"), Some("x")),
            ],
        );
        let policy = PolicySection {
            deny_delete: vec!["*/install-control-plane".into(), "c9/*".into()],
            max_clusters_changed: Some(2),
            require_canary: true,
        };
        let r = evaluate(&policy, &plan, &[]);
        assert_eq!(r.result, PolicyResult::Violated);
        let found: Vec<(&str, Option<&str>)> = r
            .violations
            .iter()
            .map(|v| (v.rule.as_str(), v.step.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                ("deny_delete", Some("c1/install-control-plane")),
                ("max_clusters_changed", None),
                ("require_canary", Some("c2/install-control-plane")),
            ]
        );
        assert!(
            r.violations[1]
                .message
                .contains("changes 4 clusters (c1, c3, c2, c4)")
        );
        assert!(
            r.violations[2]
                .message
                .contains("from 1.27.0 to 1.28.0 in place")
        );
        let refusal = r.refusal().unwrap();
        assert!(
            refusal.contains("deny_delete: c1/install-control-plane:"),
            "{refusal}"
        );
        assert!(
            refusal.contains(
                "--allow deny_delete --allow max_clusters_changed --allow require_canary"
            ),
            "{refusal}"
        );

        let some = evaluate(
            &policy,
            &plan,
            &["require_canary".into(), "deny_delete".into()],
        );
        assert_eq!(some.result, PolicyResult::Violated);
        assert_eq!(some.allowed, ["deny_delete", "require_canary"]);
        assert_eq!(some.refused_rules(), ["max_clusters_changed"]);
        let all: Vec<String> = RULES.iter().map(|r| r.to_string()).collect();
        let over = evaluate(&policy, &plan, &all);
        assert_eq!(over.result, PolicyResult::Overridden);
        assert!(over.refusal().is_none());

        let none = evaluate(&PolicySection::default(), &plan, &[]);
        assert_eq!(none, PolicyReport::default());
    }

    #[test]
    fn a_saved_plan_is_applied_with_its_own_overrides_only() {
        let mut p = Plan::new("m", vec![]);
        p.policy.allowed = vec!["deny_delete".into()];
        assert_eq!(allowed_for_saved(&p, &[]).unwrap(), ["deny_delete"]);
        assert_eq!(
            allowed_for_saved(&p, &["deny_delete".into()]).unwrap(),
            ["deny_delete"]
        );
        let e = allowed_for_saved(&p, &["require_canary".into()]).unwrap_err();
        assert!(e.contains("made without --allow require_canary"), "{e}");
    }
}
