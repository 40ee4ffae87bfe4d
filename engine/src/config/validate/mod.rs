//! Validation: the rules of docs/mesh-toml.md, checked on the
//! spanned draft so every error points at the value that breaks the rule.
//! All rules run; every error is collected.
//!
//! One module per section of the file; [`validate`] runs them in turn.
//! `[state]` is checked in two steps: its path with the other single
//! sections, its backend after the clusters, whose contexts it defaults to.

mod ambient;
mod clusters;
mod istioctl;
mod mesh;
mod policy;
mod revisions;
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
        && b.len() <= MAX_LABEL
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Kubernetes' limit on a DNS-1123 label (a Service's name, one part of a
/// host name) and on a label value.
const MAX_LABEL: usize = 63;

/// Kubernetes' limit on a DNS-1123 subdomain (the name of a Secret, a
/// ServiceAccount, a ConfigMap, a webhook configuration).
const MAX_SUBDOMAIN: usize = 253;

/// The names made from the revision that must be DNS-1123 labels, with
/// what they name. `istiod-<rev>` is istiod's Service (and its host,
/// `istiod-<rev>.istio-system.svc`), the longest such name. The others
/// with the revision (`istio-sidecar-injector-<rev>`, `istiod-vs-<rev>`,
/// `istio-validator-<rev>-istio-system`…) name ConfigMaps, webhook
/// configurations, VirtualServices and ClusterRoles: subdomains of up to
/// 253, which a 63-character revision fits.
const REVISIONED_LABELS: &[(&str, &str)] = &[("istiod-", "Service")];

/// The longest revision every name of [`REVISIONED_LABELS`] fits: 56.
const MAX_REVISION: usize = MAX_LABEL - "istiod-".len();

/// The first name made from `rev` that is too long, and what it names.
fn too_long_revisioned(rev: &str) -> Option<(String, &'static str)> {
    REVISIONED_LABELS
        .iter()
        .map(|(prefix, what)| (format!("{prefix}{rev}"), *what))
        .find(|(name, _)| name.len() > MAX_LABEL)
}

/// The token Secret `istioctl create-remote-secret` makes for a reader
/// ServiceAccount: `<reader>` then this (providers' attach step).
const TOKEN_SECRET_SUFFIX: &str = "-istio-remote-secret-token";

/// The most remote secrets a mesh may need. Every primary holds one for
/// every other cluster, primaries × (clusters − 1), each a step with its
/// own token read and Secret written: past this, planning alone takes
/// minutes and gigabytes (2,000 primaries are 4 million steps), and one
/// control plane watching thousands of clusters is far beyond what Istio
/// is run at. The mixed fleet mesh is measured with (10 primaries of 100
/// remotes each: 10,090) fits with room. docs/mesh-toml.md says the same.
pub const REMOTE_SECRET_LIMIT: usize = 25_000;

/// `12,345`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A Kubernetes DNS-1123 subdomain: what a ServiceAccount's or a Secret's
/// name must be.
fn is_dns1123_subdomain(s: &str) -> bool {
    // Parts between dots as labels, but without a label's length limit:
    // Kubernetes limits only the whole.
    s.len() <= MAX_SUBDOMAIN
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// A Kubernetes label value: what a network name must be
/// (`topology.istio.io/network=<network>`).
fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL
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
    let mut mesh = ck.mesh(&draft);
    mesh.keep_revisions = ck.keep_revisions(&draft, &mesh);
    let tags = ck.tags(&draft, &mesh);
    let credentials = ck.credentials(&draft);
    let istioctl = ck.istioctl(&draft);
    let state_path = ck.state_path(&draft);
    let clusters = ck.clusters(&draft, values);
    ck.version_gated_values(&draft, mesh.istio_version.as_deref());
    let kubernetes = ck.state_backend(&draft, &clusters, &mesh.id);
    let trust = ck.trust(&draft, path);
    let policy = ck.policy(&draft);
    mesh.dataplane = ck.dataplane(&draft, &mesh, &clusters, trust.is_some());

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
        policy,
        credentials,
        tags,
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
        assert!(is_dns1123_subdomain("a.b-c") && !is_dns1123_subdomain("a..b"));
        assert!(is_dns1123_subdomain(&"a".repeat(100)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    }

    #[test]
    fn derived_names_and_counts() {
        assert_eq!(MAX_REVISION, 56);
        assert!(too_long_revisioned(&"r".repeat(56)).is_none());
        let (name, what) = too_long_revisioned(&"r".repeat(57)).unwrap();
        assert_eq!((name.len(), what), (64, "Service"));
        assert_eq!(thousands(3_998_000), "3,998,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(10_000), "10,000");
    }
}
