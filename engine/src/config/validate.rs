//! Validation: the rules of DESIGN.md's mesh.toml section, checked on the
//! spanned draft so every error points at the value that breaks the rule.
//! All rules run; every error is collected.

use super::diagnostic::{Diagnostic, Locator};
use super::model::{
    Cluster, IstioctlSection, KubernetesState, MeshFile, MeshSection, Role, StateSection,
    TrustSection,
};
use super::parse::{At, Draft, DraftCluster, did_you_mean};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

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

/// Checks the draft and builds the model, or returns every error.
/// A `[cluster.values]`-like table as JSON, if the cluster has one.
type ValuesTable = Option<Map<String, Value>>;

pub(crate) fn validate(
    draft: Draft,
    (values, eastwest_values): (&[ValuesTable], &[ValuesTable]),
    path: &Path,
    loc: &Locator<'_>,
) -> Result<MeshFile, Vec<Diagnostic>> {
    let mut ck = Checker {
        loc,
        errors: Vec::new(),
    };

    // [mesh]
    let file_start = 0..0;
    let mesh_span = draft.mesh_span.clone().unwrap_or(file_start.clone());
    if draft.mesh_span.is_none() {
        ck.error(
            file_start.clone(),
            "the mesh file has no [mesh] section",
            "add a [mesh] section with `id = \"mesh1\"` (the Istio meshID)",
        );
    }
    let id = if draft.mesh_span.is_some() {
        ck.required(
            &draft.mesh_id,
            "id",
            ("[mesh]", &mesh_span, &draft.mesh_keys),
            "\"mesh1\"",
        )
    } else {
        None
    };
    if let (Some(id), Some(at)) = (&id, &draft.mesh_id)
        && !is_mesh_id(id)
    {
        ck.error(
            at.span.clone(),
            format!("mesh id `{id}` has characters Istio does not allow in a meshID"),
            "use letters, digits, `.`, `_` and `-` only",
        );
    }
    let revision = ck.optional_nonempty(&draft.revision, "revision");
    if let (Some(rev), Some(at)) = (&revision, &draft.revision) {
        if rev == "default" {
            ck.error(
                at.span.clone(),
                "revision `default` is not a revision",
                "remove `revision` to install Istio's default (unrevisioned) control plane",
            );
        } else if !is_dns1123_label(rev) {
            ck.error(
                at.span.clone(),
                format!("revision `{rev}` is not a valid Istio revision"),
                "use lowercase letters, digits and `-` (at most 63, starting and ending with a letter or digit), e.g. \"1-28-0\" or \"canary\"",
            );
        }
    }
    let istio_version = ck.optional_nonempty(&draft.istio_version, "istio_version");
    if let (Some(v), Some(at)) = (&istio_version, &draft.istio_version)
        && !is_version(v)
    {
        ck.error(
            at.span.clone(),
            format!("istio_version `{v}` is not a version"),
            "write it as istioctl prints it, e.g. \"1.28.0\"",
        );
    }
    let mut duration = |v: &Option<At<String>>, key: &str, default: Duration| {
        let Some(at) = v else { return default };
        match super::parse_duration(&at.value) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                ck.error(
                    at.span.clone(),
                    format!("[istioctl] {key} is zero"),
                    "give istioctl some time, e.g. \"5m\"",
                );
                default
            }
            Err(e) => {
                ck.error(
                    at.span.clone(),
                    format!("[istioctl] {key}: {e}"),
                    "write e.g. \"300s\" or \"5m\"",
                );
                default
            }
        }
    };
    let readiness_timeout = duration(
        &draft.readiness_timeout,
        "readiness_timeout",
        IstioctlSection::DEFAULT_READINESS_TIMEOUT,
    );
    let timeout = duration(
        &draft.istioctl_timeout,
        "timeout",
        IstioctlSection::default_timeout(readiness_timeout),
    );
    if let Some(at) = &draft.istioctl_timeout
        && timeout <= readiness_timeout
    {
        ck.error(
            at.span.clone(),
            format!(
                "[istioctl] timeout ({} s) is not longer than readiness_timeout ({} s)",
                timeout.as_secs(),
                readiness_timeout.as_secs()
            ),
            "istioctl is stopped after `timeout`, so it must outlast the readiness wait: raise `timeout` or remove it (default: twice readiness_timeout plus 2 minutes)",
        );
    }
    let istioctl = IstioctlSection {
        path: ck.optional_nonempty(&draft.istioctl_path, "path"),
        readiness_timeout,
        timeout,
    };
    let state_path = ck.optional_nonempty(&draft.state_path, "path");
    if let (Some(p), Some(at)) = (&state_path, &draft.state_path)
        && (p.ends_with('/') || p.ends_with(std::path::MAIN_SEPARATOR))
    {
        ck.error(
            at.span.clone(),
            format!("state path `{p}` names a folder"),
            "name a file, e.g. path = \"state/mesh.state.json\"",
        );
    }

    // [[cluster]]: each on its own first.
    let mut clusters: Vec<(Cluster, &DraftCluster)> = Vec::new();
    for dc in &draft.clusters {
        let name = ck.required(
            &dc.name,
            "name",
            ("[[cluster]]", &dc.span, &dc.keys),
            "\"cluster1\"",
        );
        let context = ck.required(
            &dc.context,
            "context",
            ("[[cluster]]", &dc.span, &dc.keys),
            "\"kind-cluster1\"",
        );
        let network = ck.required(
            &dc.network,
            "network",
            ("[[cluster]]", &dc.span, &dc.keys),
            "\"network1\"",
        );
        let role_text = ck.required(
            &dc.role,
            "role",
            ("[[cluster]]", &dc.span, &dc.keys),
            "\"primary\"",
        );
        if let (Some(n), Some(at)) = (&name, &dc.name)
            && !is_dns1123_label(n)
        {
            ck.error(
                at.span.clone(),
                format!("cluster name `{n}` is not a DNS-1123 label"),
                "use lowercase letters, digits and `-` (at most 63, starting and ending with a letter or digit): it names Kubernetes Secrets",
            );
        }
        if let (Some(c), Some(at)) = (&context, &dc.context)
            && c.chars().any(char::is_control)
        {
            ck.error(
                at.span.clone(),
                format!(
                    "context `{}` contains control characters",
                    c.escape_debug()
                ),
                "write the context's name as `kubectl config get-contexts` shows it: printable characters on one line",
            );
        }
        if let (Some(n), Some(at)) = (&network, &dc.network)
            && !is_label_value(n)
        {
            ck.error(
                at.span.clone(),
                format!("network `{n}` is not a valid network name"),
                "use letters, digits, `-`, `_` and `.` (at most 63, starting and ending with a letter or digit): it becomes a Kubernetes label value",
            );
        }
        let role = match (role_text.as_deref(), &dc.role) {
            (Some("primary"), _) => Some(Role::Primary),
            (Some("remote"), _) => Some(Role::Remote),
            (Some(other), Some(at)) => {
                let hint = did_you_mean(other, ["primary", "remote"])
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                ck.error(
                    at.span.clone(),
                    format!("role `{other}` is not a role"),
                    format!("set role to \"primary\" or \"remote\"{hint}"),
                );
                None
            }
            _ => None,
        };
        let kubeconfig = ck.optional_nonempty(&dc.kubeconfig, "kubeconfig");
        let api_server = ck.optional_nonempty(&dc.api_server, "api_server");
        if let (Some(url), Some(at)) = (&api_server, &dc.api_server) {
            let host = url
                .strip_prefix("https://")
                .map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
            match host {
                _ if url.chars().any(|c| c.is_whitespace() || c.is_control()) => ck.error(
                    at.span.clone(),
                    format!("api_server `{}` contains spaces or control characters", url.escape_debug()),
                    "write the URL alone, e.g. \"https://172.18.0.3:6443\"",
                ),
                Some(h) if h.contains('@') => ck.error(
                    at.span.clone(),
                    "api_server has user information (`user@` or `user:password@`) in its URL",
                    "remove it: the remote secret authenticates with the reader token, and a password in the mesh file would be copied into plans",
                ),
                Some(h) if !h.is_empty() && !h.starts_with(':') => {}
                Some(_) => ck.error(at.span.clone(), format!("api_server `{url}` has no host"), "write the URL other clusters use, e.g. \"https://172.18.0.3:6443\""),
                None => ck.error(
                    at.span.clone(),
                    format!("api_server `{url}` is not an https:// URL"),
                    "Kubernetes API servers are reached over HTTPS: write e.g. \"https://172.18.0.3:6443\"",
                ),
            }
        }
        let primary = dc.primary.as_ref().map(|a| a.value.clone());
        match (role, &dc.primary) {
            (Some(Role::Primary), Some(at)) => ck.error(
                at.span.clone(),
                format!(
                    "cluster `{}` is a primary but names a primary",
                    name.as_deref().unwrap_or("?")
                ),
                "remove `primary` (only remotes have one), or set role = \"remote\"",
            ),
            (Some(Role::Remote), None) => ck.error(
                dc.span.clone(),
                format!(
                    "remote cluster `{}` does not say which primary it uses",
                    name.as_deref().unwrap_or("?")
                ),
                "add `primary = \"<name of a primary cluster>\"` to this [[cluster]]",
            ),
            _ => {}
        }
        if let (Some(name), Some(context), Some(network), Some(role)) =
            (name, context, network, role)
        {
            clusters.push((
                Cluster {
                    name,
                    context,
                    network,
                    role,
                    primary: if role == Role::Remote { primary } else { None },
                    kubeconfig,
                    api_server,
                    values: values.get(dc.index).cloned().flatten().unwrap_or_default(),
                    eastwest_values: eastwest_values
                        .get(dc.index)
                        .cloned()
                        .flatten()
                        .unwrap_or_default(),
                },
                dc,
            ));
        }
    }

    // Across clusters.
    let mut seen_names: HashMap<&str, usize> = HashMap::new();
    let mut seen_contexts: HashMap<&str, usize> = HashMap::new();
    for (c, dc) in &clusters {
        if let Some(first) = seen_names.insert(&c.name, dc.span.start)
            && let Some(at) = &dc.name
        {
            let line = loc.at(first..first, "", None).line;
            ck.error(
                at.span.clone(),
                format!("cluster name `{}` is used twice", c.name),
                format!(
                    "give each cluster its own name (the first `{}` is at line {line})",
                    c.name
                ),
            );
        }
        if let Some(first) = seen_contexts.insert(&c.context, dc.span.start)
            && let Some(at) = &dc.context
        {
            let line = loc.at(first..first, "", None).line;
            ck.error(
                at.span.clone(),
                format!("context `{}` is used by two clusters", c.context),
                format!("each cluster needs its own kubeconfig context (the other is the cluster at line {line})"),
            );
        }
    }
    // The first cluster of a name is the one others refer to (a duplicate
    // is already reported).
    let mut by_name: HashMap<&str, &Cluster> = HashMap::new();
    for (c, _) in &clusters {
        by_name.entry(c.name.as_str()).or_insert(c);
    }
    let primaries: Vec<&str> = clusters
        .iter()
        .filter(|(c, _)| c.role == Role::Primary)
        .map(|(c, _)| c.name.as_str())
        .collect();
    for (c, dc) in &clusters {
        let (Some(p), Some(at)) = (&c.primary, &dc.primary) else {
            continue;
        };
        // A cluster with mistakes of its own is not in `by_name`, but exists.
        let written = draft
            .clusters
            .iter()
            .any(|d| d.name.as_ref().is_some_and(|n| &n.value == p));
        match by_name.get(p.as_str()) {
            None if written => {}
            None => {
                let hint = match did_you_mean(p, primaries.iter().copied()) {
                    Some(s) => format!(" (did you mean \"{s}\"?)"),
                    None if primaries.is_empty() => " (there is none yet: add a [[cluster]] with role = \"primary\")".into(),
                    None => format!(" (the primaries are: {})", primaries.join(", ")),
                };
                ck.error(
                    at.span.clone(),
                    format!("cluster `{}` names primary `{p}`, which is not a cluster in this file", c.name),
                    format!("set `primary` to the name of a cluster with role = \"primary\"{hint}"),
                );
            }
            Some(pc) if pc.role == Role::Remote => ck.error(
                at.span.clone(),
                format!("cluster `{}` names `{p}` as its primary, but `{p}` is a remote", c.name),
                "a remote's primary must have role = \"primary\": point `primary` at one, or make it a primary",
            ),
            Some(_) => {}
        }
    }
    // Only when every cluster's role is known: a missing or misspelled role
    // is already reported, and may be the missing primary.
    let roles_known = draft.clusters.iter().all(|c| {
        c.role
            .as_ref()
            .is_some_and(|r| r.value == "primary" || r.value == "remote")
    });
    let any_primary = draft
        .clusters
        .iter()
        .any(|c| c.role.as_ref().is_some_and(|r| r.value == "primary"));
    if !any_primary && draft.mesh_span.is_some() && !draft.clusters_malformed && roles_known {
        let span = draft
            .clusters
            .first()
            .map_or(mesh_span.clone(), |c| c.span.clone());
        ck.error(
            span,
            "the mesh has no primary cluster",
            "add a [[cluster]] with role = \"primary\": it runs the control plane the others use",
        );
    }

    // [state] backend
    let backend = ck.optional_nonempty(&draft.state_backend, "backend");
    let kube_keys = [
        (&draft.state_context, "context"),
        (&draft.state_namespace, "namespace"),
        (&draft.state_name, "name"),
    ];
    let kubernetes = match (backend.as_deref(), &draft.state_backend) {
        (Some("kubernetes"), _) => {
            let first_primary = clusters.iter().find(|(c, _)| c.role == Role::Primary);
            let context = ck
                .optional_nonempty(&draft.state_context, "context")
                .or_else(|| first_primary.map(|(c, _)| c.context.clone()));
            let kubeconfig = clusters
                .iter()
                .find(|(c, _)| Some(&c.context) == context.as_ref())
                .and_then(|(c, _)| c.kubeconfig.clone());
            let namespace = ck
                .optional_nonempty(&draft.state_namespace, "namespace")
                .unwrap_or_else(|| "default".into());
            if let Some(at) = &draft.state_namespace {
                if namespace == "istio-system" {
                    ck.error(
                        at.span.clone(),
                        "the state cannot be kept in istio-system: destroy deletes that namespace",
                        "keep it in another namespace, e.g. namespace = \"default\"",
                    );
                } else if !is_dns1123_label(&namespace) {
                    ck.error(
                        at.span.clone(),
                        format!("namespace `{namespace}` is not a Kubernetes namespace name"),
                        "use lowercase letters, digits and `-`",
                    );
                }
            }
            let name = ck
                .optional_nonempty(&draft.state_name, "name")
                .or_else(|| id.clone())
                .unwrap_or_default();
            let secret_name_ok = !name.is_empty()
                && name.len() <= 240
                && name.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.')
                })
                && name.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !secret_name_ok {
                let span = draft
                    .state_name
                    .as_ref()
                    .map(|a| a.span.clone())
                    .or_else(|| draft.mesh_id.as_ref().map(|a| a.span.clone()))
                    .unwrap_or(mesh_span.clone());
                ck.error(
                    span,
                    format!("`{name}` cannot name the state's Secret"),
                    "set [state] name to lowercase letters, digits, `-` and `.` (the mesh id is the default)",
                );
            }
            if let Some(at) = &draft.state_path {
                ck.error(
                    at.span.clone(),
                    "`path` is for the local backend; the Kubernetes backend keeps the state in a Secret",
                    "remove `path`, or set backend = \"local\"",
                );
            }
            context.map(|context| KubernetesState {
                context,
                kubeconfig,
                namespace,
                name,
            })
        }
        (Some("local") | None, _) => {
            for (v, key) in kube_keys {
                if let Some(at) = v {
                    ck.error(
                        at.span.clone(),
                        format!(
                            "`{key}` is for the Kubernetes backend, and this state is a local file"
                        ),
                        format!("set backend = \"kubernetes\", or remove `{key}`"),
                    );
                }
            }
            None
        }
        (Some(other), Some(at)) => {
            let hint = did_you_mean(other, ["local", "kubernetes"])
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            ck.error(
                at.span.clone(),
                format!("state backend `{other}` is not a backend"),
                format!("set backend to \"local\" or \"kubernetes\"{hint}"),
            );
            None
        }
        (Some(_), None) => None,
    };

    // [trust]
    let trust = match &draft.trust_span {
        None => None,
        Some(span) => {
            let cert = ck.required(
                &draft.root_cert,
                "root_cert",
                ("[trust]", span, &draft.trust_keys),
                "\"certs/root-cert.pem\"",
            );
            let key = ck.required(
                &draft.root_key,
                "root_key",
                ("[trust]", span, &draft.trust_keys),
                "\"certs/root-key.pem\"",
            );
            let days = match &draft.intermediate_days {
                None => Some(TrustSection::DEFAULT_INTERMEDIATE_DAYS),
                Some(at) if (1..=3650).contains(&at.value) => Some(at.value as u32),
                Some(at) => {
                    ck.error(
                        at.span.clone(),
                        format!("intermediate_days = {} is not between 1 and 3650", at.value),
                        "give each primary's intermediate CA a validity of 1 day to 10 years, e.g. 365",
                    );
                    None
                }
            };
            let base = path.parent().unwrap_or(Path::new(""));
            match (cert, key, days, &draft.root_cert, &draft.root_key) {
                (Some(c), Some(k), Some(d), Some(cs), Some(ks)) => Some(TrustSection {
                    root_cert: base.join(c),
                    root_key: base.join(k),
                    intermediate_days: d,
                    root_cert_pem: String::new(),
                    spans: (cs.span.clone(), ks.span.clone()),
                }),
                _ => None,
            }
        }
    };
    // Several control planes must sign workload certificates from one root.
    if draft.trust_span.is_none() {
        let second_primary = clusters
            .iter()
            .filter(|(c, _)| c.role == Role::Primary)
            .nth(1);
        if let Some((c, dc)) = second_primary {
            let span = dc.role.as_ref().map_or(dc.span.clone(), |r| r.span.clone());
            ck.error(
                span,
                format!(
                    "`{}` is a second primary, and a mesh with several primaries needs a common root of trust",
                    c.name
                ),
                "add a [trust] section with root_cert and root_key (PEM files beside the mesh file); \
                 `mesh ca init` makes a new root in ./certs",
            );
        }
    }

    if !ck.errors.is_empty() {
        let mut errors = ck.errors;
        errors.sort_by_key(|d| (d.line, d.column));
        return Err(errors);
    }
    Ok(MeshFile {
        path: path.to_path_buf(),
        mesh: MeshSection {
            id: id.unwrap_or_default(),
            revision,
            istio_version,
        },
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
