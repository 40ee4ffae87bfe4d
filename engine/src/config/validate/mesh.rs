//! `[mesh]`: the mesh's id, and which Istio (revision, version) it runs.

use super::{
    Checker, MAX_LABEL, MAX_REVISION, is_dns1123_label, is_label_value, is_mesh_id, is_version,
    too_long_revisioned,
};
use crate::config::model::{Dataplane, MeshSection};
use crate::config::parse::Draft;

/// The label the Kubernetes state backend puts the mesh id in
/// (providers/src/state_store/worker.rs).
const STATE_LABEL: &str = "mesh/state";

impl Checker<'_> {
    pub(super) fn mesh(&mut self, draft: &Draft) -> MeshSection {
        let id = match &draft.mesh_span {
            None => {
                self.error(
                    0..0,
                    "the mesh file has no [mesh] section",
                    "add a [mesh] section with `id = \"mesh1\"` (the Istio meshID)",
                );
                None
            }
            Some(span) => self.required(
                &draft.mesh_id,
                "id",
                ("[mesh]", span, &draft.mesh_keys),
                "\"mesh1\"",
            ),
        };
        if let (Some(id), Some(at)) = (&id, &draft.mesh_id) {
            if !is_mesh_id(id) {
                self.error(
                    at.span.clone(),
                    format!("mesh id `{id}` has characters Istio does not allow in a meshID"),
                    "use letters, digits, `.`, `_` and `-` only",
                );
            } else if !is_label_value(id) {
                // The Kubernetes backend labels its Secret with the id; a
                // state moves between backends (`state push`), the id never.
                self.error(
                    at.span.clone(),
                    format!(
                        "mesh id `{id}` ({} characters) is not a Kubernetes label value, and the Kubernetes state backend labels its Secret `{STATE_LABEL}=<id>`",
                        id.chars().count()
                    ),
                    format!(
                        "use at most {MAX_LABEL} characters, starting and ending with a letter or digit"
                    ),
                );
            }
        }
        let revision = self.optional_nonempty(&draft.revision, "revision");
        if let (Some(rev), Some(at)) = (&revision, &draft.revision) {
            if rev == "default" {
                self.error(
                    at.span.clone(),
                    "revision `default` is not a revision",
                    "remove `revision` to install Istio's default (unrevisioned) control plane",
                );
            } else if !is_dns1123_label(rev) {
                self.error(
                    at.span.clone(),
                    format!("revision `{rev}` is not a valid Istio revision"),
                    format!("use lowercase letters, digits and `-` (at most {MAX_REVISION}, starting and ending with a letter or digit), e.g. \"1-28-0\" or \"canary\""),
                );
            } else if let Some((name, what)) = too_long_revisioned(rev) {
                self.error(
                    at.span.clone(),
                    format!(
                        "revision `{rev}` makes the {what} `{name}` ({} characters), and Kubernetes allows at most {MAX_LABEL}",
                        name.len()
                    ),
                    format!(
                        "shorten the revision to at most {} characters, e.g. \"1-28-0\" or \"canary\"",
                        MAX_REVISION
                    ),
                );
            }
        }
        let istio_version = self.optional_nonempty(&draft.istio_version, "istio_version");
        if let (Some(v), Some(at)) = (&istio_version, &draft.istio_version)
            && !is_version(v)
        {
            self.error(
                at.span.clone(),
                format!("istio_version `{v}` is not a version"),
                "write it as istioctl prints it, e.g. \"1.28.0\"",
            );
        }
        MeshSection {
            id: id.unwrap_or_default(),
            revision,
            istio_version,
            keep_revisions: Vec::new(),
            dataplane: Dataplane::Sidecar,
        }
    }
}
