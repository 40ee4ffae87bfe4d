//! `[[cluster]]`: each cluster on its own (its keys and values), then the
//! rules between clusters: unique names and contexts, remotes' primaries,
//! and a primary at all.

use super::{
    Checker, MAX_SUBDOMAIN, REMOTE_SECRET_LIMIT, TOKEN_SECRET_SUFFIX, ValuesTable,
    is_dns1123_label, is_dns1123_subdomain, is_label_value, mesh_span, thousands,
};
use crate::config::model::{Cluster, Role};
use crate::config::parse::{At, Draft, DraftCluster, did_you_mean};
use std::collections::HashMap;
use std::ops::Range;

/// A draft cluster's role, as written.
fn role(dc: &DraftCluster) -> Option<&str> {
    dc.role.as_ref().map(|r| r.value.as_str())
}

/// A value written, and not blank (a blank one is reported by itself).
fn written(v: &Option<At<String>>) -> Option<&At<String>> {
    v.as_ref().filter(|a| !a.value.trim().is_empty())
}

impl Checker<'_> {
    /// The clusters whose required keys are all known, each with its
    /// draft. The rules between clusters are checked on the drafts, on
    /// whatever each one says, so that a cluster's own mistake (a missing
    /// key) does not hide a duplicate name until it is fixed.
    pub(super) fn clusters<'d>(
        &mut self,
        draft: &'d Draft,
        values: (&[ValuesTable], &[ValuesTable]),
    ) -> Vec<(Cluster, &'d DraftCluster)> {
        let clusters: Vec<(Cluster, &DraftCluster)> = draft
            .clusters
            .iter()
            .filter_map(|dc| Some((self.cluster(dc, values)?, dc)))
            .collect();
        self.unique_names_and_contexts(draft);
        self.remotes_primaries(draft);
        self.some_primary(draft);
        self.remote_secrets(&clusters);
        clusters
    }

    /// Every primary holds a remote secret for every other cluster, so
    /// their number is primaries × (clusters − 1): checked here, from the
    /// counts alone, before any step graph is built. Reported at the first
    /// primary past what the clusters allow.
    fn remote_secrets(&mut self, clusters: &[(Cluster, &DraftCluster)]) {
        let n = clusters.len();
        let primaries: Vec<&DraftCluster> = clusters
            .iter()
            .filter(|(c, _)| c.role == Role::Primary)
            .map(|(_, dc)| *dc)
            .collect();
        let secrets = primaries.len().saturating_mul(n.saturating_sub(1));
        if secrets <= REMOTE_SECRET_LIMIT {
            return;
        }
        // At least one: a single primary past the limit has too many remotes.
        let allowed = (REMOTE_SECRET_LIMIT / (n - 1)).max(1);
        let first_over = primaries[allowed.min(primaries.len() - 1)];
        let span = first_over
            .role
            .as_ref()
            .map_or(first_over.span.clone(), |r| r.span.clone());
        let help = if primaries.len() == 1 {
            format!(
                "a primary can serve at most {} other clusters: split the fleet into several meshes",
                thousands(REMOTE_SECRET_LIMIT)
            )
        } else {
            format!(
                "with {} clusters, at most {} primaries: make the others remotes of a primary \
                 (role = \"remote\", primary = \"<name>\"), or split the fleet into several meshes",
                thousands(n),
                thousands(allowed)
            )
        };
        let who = match primaries.len() {
            1 => format!("a primary with {} other clusters needs", thousands(n - 1)),
            p => format!(
                "{} primaries and {} clusters need",
                thousands(p),
                thousands(n)
            ),
        };
        self.error(
            span,
            format!(
                "{who} {} remote secrets (every primary holds one for every other cluster), \
                 more than mesh's limit of {}",
                thousands(secrets),
                thousands(REMOTE_SECRET_LIMIT)
            ),
            help,
        );
    }

    /// `values.global.readerServiceAccount`: the ServiceAccount's name
    /// must fit the token Secret named after it, its namespace be one.
    fn reader(&mut self, dc: &DraftCluster) {
        if let Some(at) = &dc.reader_name {
            let token = format!("{}{TOKEN_SECRET_SUFFIX}", at.value);
            if !is_dns1123_subdomain(&at.value) {
                self.error(
                    at.span.clone(),
                    format!("`{}` is not a ServiceAccount name", at.value),
                    "use lowercase letters, digits, `-` and `.` (a DNS-1123 subdomain)",
                );
            } else if token.len() > MAX_SUBDOMAIN {
                self.error(
                    at.span.clone(),
                    format!(
                        "the reader ServiceAccount `{}` makes the token Secret `{token}` ({} characters), and Kubernetes allows at most {MAX_SUBDOMAIN}",
                        at.value,
                        token.len()
                    ),
                    format!(
                        "name a ServiceAccount of at most {} characters",
                        MAX_SUBDOMAIN - TOKEN_SECRET_SUFFIX.len()
                    ),
                );
            }
        }
        if let Some(at) = &dc.reader_namespace
            && !is_dns1123_label(&at.value)
        {
            self.error(
                at.span.clone(),
                format!("`{}` is not a namespace name", at.value),
                "use lowercase letters, digits and `-` (at most 63, starting and ending with a letter or digit)",
            );
        }
    }

    /// Values that exist only from some Istio release on, refused when the
    /// mesh pins an older one: istioctl would reject the field at apply,
    /// part-way through.
    pub(super) fn version_gated_values(&mut self, draft: &Draft, istio_version: Option<&str>) {
        let Some(minor) = istio_version.and_then(minor_of) else {
            return;
        };
        // values.global.readerServiceAccount: Istio 1.31 (istio/istio#60631).
        if minor >= 31 {
            return;
        }
        for dc in &draft.clusters {
            if let Some(span) = dc
                .reader_name
                .as_ref()
                .map(|a| a.span.clone())
                .or_else(|| dc.reader_namespace.as_ref().map(|a| a.span.clone()))
            {
                self.error(
                    span,
                    format!(
                        "values.global.readerServiceAccount exists from Istio 1.31 on, and the \
                         mesh pins istio_version 1.{minor}: istioctl would refuse the field"
                    ),
                    "remove it (the remote then uses Istio's istio-reader-service-account), or \
                     pin istio_version 1.31 or later",
                );
            }
        }
    }

    /// One `[[cluster]]` on its own: the model's cluster when its required
    /// keys are all known.
    fn cluster(
        &mut self,
        dc: &DraftCluster,
        (values, eastwest_values): (&[ValuesTable], &[ValuesTable]),
    ) -> Option<Cluster> {
        let table = ("[[cluster]]", &dc.span, dc.keys.as_slice());
        let name = self.required(&dc.name, "name", table, "\"cluster1\"");
        let context = self.required(&dc.context, "context", table, "\"kind-cluster1\"");
        let network = self.required(&dc.network, "network", table, "\"network1\"");
        // A cluster that names its `primary` is a remote: the hint says so.
        let example = if dc.primary.is_some() {
            "\"remote\""
        } else {
            "\"primary\""
        };
        let role_text = self.required(&dc.role, "role", table, example);
        if let (Some(n), Some(at)) = (&name, &dc.name)
            && !is_dns1123_label(n)
        {
            self.error(
                at.span.clone(),
                format!("cluster name `{n}` is not a DNS-1123 label"),
                "use lowercase letters, digits and `-` (at most 63, starting and ending with a letter or digit): it names Kubernetes Secrets",
            );
        }
        if let (Some(c), Some(at)) = (&context, &dc.context)
            && c.chars().any(char::is_control)
        {
            self.error(
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
            self.error(
                at.span.clone(),
                format!("network `{n}` is not a valid network name"),
                "use letters, digits, `-`, `_` and `.` (at most 63, starting and ending with a letter or digit): it becomes a Kubernetes label value",
            );
        }
        let role = self.role(role_text.as_deref(), &dc.role);
        let kubeconfig = self.optional_nonempty(&dc.kubeconfig, "kubeconfig");
        let api_server = self.optional_nonempty(&dc.api_server, "api_server");
        if let (Some(url), Some(at)) = (&api_server, &dc.api_server) {
            self.api_server(url, &at.span);
        }
        let primary = dc.primary.as_ref().map(|a| a.value.clone());
        self.primary_key(dc, role, name.as_deref());
        self.reader(dc);
        let (name, context, network, role) = (name?, context?, network?, role?);
        Some(Cluster {
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
        })
    }

    fn role(&mut self, text: Option<&str>, at: &Option<At<String>>) -> Option<Role> {
        match (text, at) {
            (Some("primary"), _) => Some(Role::Primary),
            (Some("remote"), _) => Some(Role::Remote),
            (Some(other), Some(at)) => {
                let hint = did_you_mean(other, ["primary", "remote"])
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                self.error(
                    at.span.clone(),
                    format!("role `{other}` is not a role"),
                    format!("set role to \"primary\" or \"remote\"{hint}"),
                );
                None
            }
            _ => None,
        }
    }

    /// The URL other clusters reach this one's API server at: it is copied
    /// into their remote secrets.
    fn api_server(&mut self, url: &str, span: &Range<usize>) {
        let host = url
            .strip_prefix("https://")
            .map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
        match host {
            _ if url.chars().any(|c| c.is_whitespace() || c.is_control()) => self.error(
                span.clone(),
                format!("api_server `{}` contains spaces or control characters", url.escape_debug()),
                "write the URL alone, e.g. \"https://172.18.0.3:6443\"",
            ),
            Some(h) if h.contains('@') => self.error(
                span.clone(),
                "api_server has user information (`user@` or `user:password@`) in its URL",
                "remove it: the remote secret authenticates with the reader token, and a password in the mesh file would be copied into plans",
            ),
            Some(h) if !h.is_empty() && !h.starts_with(':') => {}
            Some(_) => self.error(span.clone(), format!("api_server `{url}` has no host"), "write the URL other clusters use, e.g. \"https://172.18.0.3:6443\""),
            None => self.error(
                span.clone(),
                format!("api_server `{url}` is not an https:// URL"),
                "Kubernetes API servers are reached over HTTPS: write e.g. \"https://172.18.0.3:6443\"",
            ),
        }
    }

    /// `primary` is written exactly when the cluster is a remote.
    fn primary_key(&mut self, dc: &DraftCluster, role: Option<Role>, name: Option<&str>) {
        match (role, &dc.primary) {
            (Some(Role::Primary), Some(at)) => self.error(
                at.span.clone(),
                format!(
                    "cluster `{}` is a primary but names a primary",
                    name.unwrap_or("?")
                ),
                "remove `primary` (only remotes have one), or set role = \"remote\"",
            ),
            (Some(Role::Remote), None) => self.error(
                dc.span.clone(),
                format!(
                    "remote cluster `{}` does not say which primary it uses",
                    name.unwrap_or("?")
                ),
                "add `primary = \"<name of a primary cluster>\"` to this [[cluster]]",
            ),
            _ => {}
        }
    }

    fn unique_names_and_contexts(&mut self, draft: &Draft) {
        let mut seen_names: HashMap<&str, usize> = HashMap::new();
        let mut seen_contexts: HashMap<&str, usize> = HashMap::new();
        for dc in &draft.clusters {
            if let Some(at) = written(&dc.name)
                && let Some(first) = seen_names.insert(&at.value, dc.span.start)
            {
                let line = self.loc.at(first..first, "", None).line;
                self.error(
                    at.span.clone(),
                    format!("cluster name `{}` is used twice", at.value),
                    format!(
                        "give each cluster its own name (the first `{}` is at line {line})",
                        at.value
                    ),
                );
            }
            if let Some(at) = written(&dc.context)
                && let Some(first) = seen_contexts.insert(&at.value, dc.span.start)
            {
                let line = self.loc.at(first..first, "", None).line;
                self.error(
                    at.span.clone(),
                    format!("context `{}` is used by two clusters", at.value.escape_debug()),
                    format!("each cluster needs its own kubeconfig context (the other is the cluster at line {line})"),
                );
            }
        }
    }

    /// Each remote's `primary` names a primary of this file.
    fn remotes_primaries(&mut self, draft: &Draft) {
        // The first cluster of a name is the one others refer to (a duplicate
        // is already reported).
        let mut by_name: HashMap<&str, &DraftCluster> = HashMap::new();
        for dc in &draft.clusters {
            if let Some(n) = written(&dc.name) {
                by_name.entry(n.value.as_str()).or_insert(dc);
            }
        }
        let primaries: Vec<&str> = draft
            .clusters
            .iter()
            .filter(|dc| role(dc) == Some("primary"))
            .filter_map(|dc| written(&dc.name).map(|n| n.value.as_str()))
            .collect();
        for dc in &draft.clusters {
            // `primary` on a primary (or a misspelled role) is reported with
            // the cluster itself.
            if role(dc) != Some("remote") {
                continue;
            }
            let Some(at) = written(&dc.primary) else {
                continue;
            };
            let p = &at.value;
            let name = dc.name.as_ref().map_or("?", |n| n.value.as_str());
            match by_name.get(p.as_str()).map(|pc| role(pc)) {
                None => {
                    let hint = match did_you_mean(p, primaries.iter().copied()) {
                        Some(s) => format!(" (did you mean \"{s}\"?)"),
                        None if primaries.is_empty() => " (there is none yet: add a [[cluster]] with role = \"primary\")".into(),
                        None => format!(" (the primaries are: {})", primaries.join(", ")),
                    };
                    self.error(
                        at.span.clone(),
                        format!("cluster `{name}` names primary `{p}`, which is not a cluster in this file"),
                        format!("set `primary` to the name of a cluster with role = \"primary\"{hint}"),
                    );
                }
                Some(Some("remote")) => self.error(
                    at.span.clone(),
                    format!("cluster `{name}` names `{p}` as its primary, but `{p}` is a remote"),
                    "a remote's primary must have role = \"primary\": point `primary` at one, or make it a primary",
                ),
                Some(_) => {}
            }
        }
    }

    /// The mesh has a primary. Checked only when every cluster's role is
    /// known: a missing or misspelled role is already reported, and may be
    /// the missing primary.
    fn some_primary(&mut self, draft: &Draft) {
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
                .map_or(mesh_span(draft), |c| c.span.clone());
            self.error(
                span,
                "the mesh has no primary cluster",
                "add a [[cluster]] with role = \"primary\": it runs the control plane the others use",
            );
        }
    }
}

/// The minor release of an Istio version `1.N`, `1.N.P`, `1.N-dev`.
pub(super) fn minor_of(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("1.")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
