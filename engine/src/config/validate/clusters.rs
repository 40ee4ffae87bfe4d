//! `[[cluster]]`: each cluster on its own (its keys and values), then the
//! rules between clusters: unique names and contexts, remotes' primaries,
//! and a primary at all.

use super::{Checker, ValuesTable, is_dns1123_label, is_label_value, mesh_span};
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
        clusters
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
        let role_text = self.required(&dc.role, "role", table, "\"primary\"");
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
