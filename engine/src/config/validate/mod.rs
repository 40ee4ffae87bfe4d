//! Validation: the rules of docs/mesh-toml.md, checked on the
//! spanned draft so every error points at the value that breaks the rule.
//! All rules run; every error is collected.
//!
//! One module per section of the file; [`validate`] runs them in turn.
//! `[state]` is checked in two steps: its path with the other single
//! sections, its backend after the clusters, whose contexts it defaults to.

mod clusters;
mod istioctl;
mod mesh;
mod state;
mod trust;

use super::diagnostic::{Diagnostic, Locator};
use super::model::{MeshFile, StateSection, TrustSection};
use super::parse::{At, Draft};
use serde_json::{Map, Value};
use std::ops::Range;
use std::path::Path;

/// A Kubernetes DNS-1123 label: what a cluster name must be, since it names
/// Secrets (`istio-remote-secret-<name>`) and appears in URLs.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A Kubernetes label value: what a network name must be
/// (`topology.istio.io/network=<network>`).
fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn is_mesh_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// `1.28`, `1.28.0`, `1.28.0-beta.1`.
fn is_version(s: &str) -> bool {
    let (core, _pre) = s.split_once(['-', '+']).unwrap_or((s, ""));
    let parts: Vec<&str> = core.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Where a mistake of the whole mesh is reported: `[mesh]`, or the start of
/// the file when there is none (itself reported).
fn mesh_span(draft: &Draft) -> Range<usize> {
    draft.mesh_span.clone().unwrap_or(0..0)
}

struct Checker<'a> {
    loc: &'a Locator<'a>,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        let d = self.loc.at(span, message, Some(help.into()));
        self.errors.push(d);
    }

    /// A required key: reported at its table when missing (unless it was
    /// written with a wrong type or misspelled, already reported), and
    /// refused empty.
    fn required(
        &mut self,
        v: &Option<At<String>>,
        key: &str,
        (table, table_span, written): (&str, &Range<usize>, &[String]),
        example: &str,
    ) -> Option<String> {
        match v {
            None if written.iter().any(|k| k == key) => None,
            None => {
                self.error(
                    table_span.clone(),
                    format!("{table} is missing `{key}`"),
                    format!("add `{key} = {example}` to this {table}"),
                );
                None
            }
            Some(At { value, span }) if value.trim().is_empty() => {
                self.error(
                    span.clone(),
                    format!("`{key}` is empty"),
                    format!("give `{key}` a value, e.g. {key} = {example}"),
                );
                None
            }
            Some(At { value, .. }) => Some(value.clone()),
        }
    }

    fn optional_nonempty(&mut self, v: &Option<At<String>>, key: &str) -> Option<String> {
        match v {
            Some(At { value, span }) if value.trim().is_empty() => {
                self.error(
                    span.clone(),
                    format!("`{key}` is empty"),
                    format!("remove `{key}` or give it a value"),
                );
                None
            }
            other => other.as_ref().map(|a| a.value.clone()),
        }
    }
}

/// A `[cluster.values]`-like table as JSON, if the cluster has one.
type ValuesTable = Option<Map<String, Value>>;

/// Checks the draft and builds the model, or returns every error (and
/// `[trust]`, when it was written well enough to name its files: they are
/// checked even so).
pub(crate) fn validate(
    draft: Draft,
    values: (&[ValuesTable], &[ValuesTable]),
    path: &Path,
    loc: &Locator<'_>,
) -> Result<MeshFile, (Vec<Diagnostic>, Option<Box<TrustSection>>)> {
    let mut ck = Checker {
        loc,
        errors: Vec::new(),
    };
    let mesh = ck.mesh(&draft);
    let istioctl = ck.istioctl(&draft);
    let state_path = ck.state_path(&draft);
    let clusters = ck.clusters(&draft, values);
    let kubernetes = ck.state_backend(&draft, &clusters, &mesh.id);
    let trust = ck.trust(&draft, path);

    if !ck.errors.is_empty() {
        let mut errors = ck.errors;
        errors.sort_by_key(|d| (d.line, d.column));
        return Err((errors, trust.map(Box::new)));
    }
    Ok(MeshFile {
        path: path.to_path_buf(),
        mesh,
        istioctl,
        state: StateSection {
            path: state_path,
            kubernetes,
        },
        trust,
        clusters: clusters.into_iter().map(|(c, _)| c).collect(),
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(is_dns1123_label("cluster-1"));
        assert!(!is_dns1123_label("Cluster1"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_label_value("network_1.a"));
        assert!(!is_label_value("net work"));
        assert!(is_version("1.28.0") && is_version("1.28") && is_version("1.28.0-beta.1"));
        assert!(!is_version("latest") && !is_version("1") && !is_version("1..2"));
    }
}
