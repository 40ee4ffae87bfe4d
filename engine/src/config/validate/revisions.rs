//! `[[mesh.keep_revision]]` and `[tags]`: the revisions a mesh keeps
//! installed beside `revision` (a canary upgrade), and the revision tags
//! that point at them.

use super::{Checker, MAX_LABEL, MAX_REVISION, is_dns1123_label, is_version, too_long_revisioned};
use crate::config::model::{KeptRevision, MeshSection};
use crate::config::parse::Draft;
use std::collections::BTreeMap;

impl Checker<'_> {
    /// The kept revisions, each named once, none the mesh's own `revision`,
    /// each with the istioctl that installed it.
    pub(super) fn keep_revisions(
        &mut self,
        draft: &Draft,
        mesh: &MeshSection,
    ) -> Vec<KeptRevision> {
        let own = mesh.revision_name().to_string();
        let mut seen: Vec<String> = Vec::new();
        let mut out = Vec::new();
        for k in &draft.keep_revisions {
            let table = ("[[mesh.keep_revision]]", &k.span, k.keys.as_slice());
            let name = self.required(&k.name, "name", table, "\"1-30\"");
            let istioctl = self.required(
                &k.istioctl,
                "istioctl",
                table,
                "\"/opt/istio-1.30/bin/istioctl\"",
            );
            let istio_version = self.optional_nonempty(&k.istio_version, "istio_version");
            if let (Some(v), Some(at)) = (&istio_version, &k.istio_version)
                && !is_version(v)
            {
                self.error(
                    at.span.clone(),
                    format!("istio_version `{v}` is not a version"),
                    "write it as that revision's istioctl prints it, e.g. \"1.30.3\"",
                );
            }
            let (Some(name), Some(at)) = (name, &k.name) else {
                continue;
            };
            if name != "default" && !is_dns1123_label(&name) {
                self.error(
                    at.span.clone(),
                    format!("kept revision `{name}` is not a valid Istio revision"),
                    format!("use lowercase letters, digits and `-` (at most {MAX_REVISION}), or \"default\" for the unrevisioned control plane"),
                );
                continue;
            }
            if let Some((long, what)) = too_long_revisioned(&name) {
                self.error(
                    at.span.clone(),
                    format!(
                        "kept revision `{name}` makes the {what} `{long}` ({} characters), and Kubernetes allows at most {MAX_LABEL}",
                        long.len()
                    ),
                    format!("a revision has at most {MAX_REVISION} characters"),
                );
                continue;
            }
            if name == own {
                self.error(
                    at.span.clone(),
                    format!("revision `{name}` is the mesh's `revision`, listed again in keep_revision"),
                    "keep_revision lists the *other* revisions kept installed beside `revision` (the old one of a canary): remove this table, or name another revision",
                );
                continue;
            }
            if seen.contains(&name) {
                self.error(
                    at.span.clone(),
                    format!("revision `{name}` is kept twice"),
                    "list each kept revision once",
                );
                continue;
            }
            seen.push(name.clone());
            if let (Some(istioctl), Some(ctl_at)) = (istioctl, &k.istioctl) {
                let d = self.loc.at(ctl_at.span.clone(), "", None);
                out.push(KeptRevision {
                    name,
                    istio_version,
                    istioctl,
                    written_at: format!("{}:{}:{}", d.path.display(), d.line, d.column),
                });
            }
        }
        out
    }

    /// `[credentials] rotate_after`: a duration of at least an hour;
    /// `sync_timeout`: a duration above zero.
    pub(super) fn credentials(
        &mut self,
        draft: &Draft,
    ) -> crate::config::model::CredentialsSection {
        let mut out = crate::config::model::CredentialsSection::default();
        if let Some(at) = &draft.sync_timeout {
            match crate::config::parse_duration(&at.value) {
                Ok(d) if !d.is_zero() => out.sync_timeout = d,
                Ok(_) => self.error(
                    at.span.clone(),
                    "[credentials] sync_timeout is zero".to_string(),
                    "istiod needs time to sync a new credential: write e.g. \"5m\"",
                ),
                Err(e) => self.error(
                    at.span.clone(),
                    format!("[credentials] sync_timeout: {e}"),
                    "write e.g. \"300s\" or \"5m\"",
                ),
            }
        }
        let Some(at) = &draft.rotate_after else {
            return out;
        };
        match crate::config::parse_duration(&at.value) {
            Ok(d) if d >= std::time::Duration::from_secs(3600) => out.rotate_after = Some(d),
            Ok(_) => self.error(
                at.span.clone(),
                format!(
                    "[credentials] rotate_after `{}` is under one hour",
                    at.value
                ),
                "tokens would be replaced on nearly every apply: use days, e.g. \"90d\"",
            ),
            Err(e) => self.error(
                at.span.clone(),
                format!("[credentials] rotate_after: {e}"),
                "write e.g. \"90d\" or \"720h\"",
            ),
        }
        out
    }

    /// `[tags]`: each tag a DNS label naming an installed revision.
    pub(super) fn tags(&mut self, draft: &Draft, mesh: &MeshSection) -> BTreeMap<String, String> {
        let installed = mesh.revision_names();
        let mut out = BTreeMap::new();
        for (tag, rev) in &draft.tags {
            if !is_dns1123_label(&tag.value) || tag.value.len() > MAX_REVISION {
                self.error(
                    tag.span.clone(),
                    format!("revision tag `{}` is not a valid tag name", tag.value),
                    format!("use lowercase letters, digits and `-` (at most {MAX_REVISION}), e.g. `default`, `prod-stable`"),
                );
                continue;
            }
            // istioctl refuses a tag named like a revision (its webhook and
            // the revision's would both answer to `istio.io/rev=<name>`);
            // `default` is the tag of the unrevisioned control plane.
            if tag.value != "default" && installed.contains(&tag.value.as_str()) {
                self.error(
                    tag.span.clone(),
                    format!(
                        "revision tag `{}` has the name of a revision this mesh installs: a tag and a revision \
                         both answer to `istio.io/rev={}`, so istioctl refuses it",
                        tag.value, tag.value
                    ),
                    "name the tag after what it is for, e.g. `prod-stable` or `canary`, never after a revision"
                        .to_string(),
                );
                continue;
            }
            if !installed.contains(&rev.value.as_str()) {
                self.error(
                    rev.span.clone(),
                    format!(
                        "tag `{}` names revision `{}`, which this mesh does not install",
                        tag.value, rev.value
                    ),
                    format!(
                        "name one of the installed revisions: {} (`revision`, then each [[mesh.keep_revision]]; `default` is the unrevisioned control plane)",
                        installed
                            .iter()
                            .map(|r| format!("`{r}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            }
            out.insert(tag.value.clone(), rev.value.clone());
        }
        out
    }
}
