//! `[state]`: where the state is kept, a local file (`path`) or a Secret
//! (`backend = "kubernetes"`, with `context`, `namespace` and `name`).

use super::{Checker, is_dns1123_label, mesh_span};
use crate::config::model::{Cluster, KubernetesState, Role};
use crate::config::parse::{Draft, DraftCluster, did_you_mean};

impl Checker<'_> {
    pub(super) fn state_path(&mut self, draft: &Draft) -> Option<String> {
        let state_path = self.optional_nonempty(&draft.state_path, "path");
        if let (Some(p), Some(at)) = (&state_path, &draft.state_path)
            && (p.ends_with('/') || p.ends_with(std::path::MAIN_SEPARATOR))
        {
            self.error(
                at.span.clone(),
                format!("state path `{p}` names a folder"),
                "name a file, e.g. path = \"state/mesh.state.json\"",
            );
        }
        state_path
    }

    /// The Kubernetes backend's settings if it is chosen; with the local
    /// backend, the Kubernetes keys are refused.
    pub(super) fn state_backend(
        &mut self,
        draft: &Draft,
        clusters: &[(Cluster, &DraftCluster)],
        mesh_id: &str,
    ) -> Option<KubernetesState> {
        let backend = self.optional_nonempty(&draft.state_backend, "backend");
        match (backend.as_deref(), &draft.state_backend) {
            (Some("kubernetes"), _) => self.kubernetes_state(draft, clusters, mesh_id),
            (Some("local") | None, _) => {
                let kube_keys = [
                    (&draft.state_context, "context"),
                    (&draft.state_namespace, "namespace"),
                    (&draft.state_name, "name"),
                ];
                for (v, key) in kube_keys {
                    if let Some(at) = v {
                        self.error(
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
                self.error(
                    at.span.clone(),
                    format!("state backend `{other}` is not a backend"),
                    format!("set backend to \"local\" or \"kubernetes\"{hint}"),
                );
                None
            }
            (Some(_), None) => None,
        }
    }

    /// The state as a Secret: by default in the first primary's context,
    /// in `default`, named after the mesh.
    fn kubernetes_state(
        &mut self,
        draft: &Draft,
        clusters: &[(Cluster, &DraftCluster)],
        mesh_id: &str,
    ) -> Option<KubernetesState> {
        let first_primary = clusters.iter().find(|(c, _)| c.role == Role::Primary);
        let written_context = self.optional_nonempty(&draft.state_context, "context");
        // As a cluster's context: it is printed in every message about the
        // state, so a control character there would reach the terminal.
        if let (Some(c), Some(at)) = (&written_context, &draft.state_context)
            && c.chars().any(char::is_control)
        {
            self.error(
                at.span.clone(),
                format!(
                    "[state] context `{}` contains control characters",
                    c.escape_debug()
                ),
                "write the context's name as `kubectl config get-contexts` shows it: printable characters on one line",
            );
        }
        let context = written_context.or_else(|| first_primary.map(|(c, _)| c.context.clone()));
        let kubeconfig = clusters
            .iter()
            .find(|(c, _)| Some(&c.context) == context.as_ref())
            .and_then(|(c, _)| c.kubeconfig.clone());
        let namespace = self
            .optional_nonempty(&draft.state_namespace, "namespace")
            .unwrap_or_else(|| "default".into());
        if let Some(at) = &draft.state_namespace {
            if namespace == "istio-system" {
                self.error(
                    at.span.clone(),
                    "the state cannot be kept in istio-system: destroy deletes that namespace",
                    "keep it in another namespace, e.g. namespace = \"default\"",
                );
            } else if !is_dns1123_label(&namespace) {
                self.error(
                    at.span.clone(),
                    format!(
                        "namespace `{}` is not a Kubernetes namespace name",
                        namespace.escape_debug()
                    ),
                    "use lowercase letters, digits and `-` (at most 63, starting and ending with a letter or digit)",
                );
            }
        }
        let name = self
            .optional_nonempty(&draft.state_name, "name")
            .unwrap_or_else(|| mesh_id.to_string());
        // 232 leaves room for the `-backup` Secret, the `-lock` Lease and
        // the parts `-part-<12 hex>-<i>` of a large state.
        if !(name.len() <= 232 && is_dns1123_subdomain(&name)) {
            let span = draft
                .state_name
                .as_ref()
                .map(|a| a.span.clone())
                .or_else(|| draft.mesh_id.as_ref().map(|a| a.span.clone()))
                .unwrap_or(mesh_span(draft));
            self.error(
                span,
                format!("`{}` cannot name the state's Secret", name.escape_debug()),
                "set [state] name to lowercase letters, digits, `-` and `.`, at most 232, each part between dots starting and ending with a letter or digit (the mesh id is the default)",
            );
        }
        if let Some(at) = &draft.state_path {
            self.error(
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
}

/// A Kubernetes DNS-1123 subdomain, what a Secret's and a Lease's name must
/// be: parts between dots of lowercase letters, digits and `-`, each
/// starting and ending with a letter or digit; at most 253 in all.
fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::is_dns1123_subdomain;

    #[test]
    fn subdomains() {
        for ok in ["mesh1", "mesh1.state", "a-b.c-d", "0"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "", "mesh-", "-mesh", "a..b", ".a", "a.", "a.-b", "Mesh", "a_b", "a\u{7}",
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
    }
}
