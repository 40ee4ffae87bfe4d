//! `[mesh]`: the mesh's id, and which Istio (revision, version) it runs.

use super::{Checker, is_dns1123_label, is_mesh_id, is_version};
use crate::config::model::MeshSection;
use crate::config::parse::Draft;

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
        if let (Some(id), Some(at)) = (&id, &draft.mesh_id)
            && !is_mesh_id(id)
        {
            self.error(
                at.span.clone(),
                format!("mesh id `{id}` has characters Istio does not allow in a meshID"),
                "use letters, digits, `.`, `_` and `-` only",
            );
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
                    "use lowercase letters, digits and `-` (at most 63, starting and ending with a letter or digit), e.g. \"1-28-0\" or \"canary\"",
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
        }
    }
}
