//! `[trust]`: the root CA that signs each primary's intermediate, and which
//! a mesh with several primaries must have.

use super::Checker;
use crate::config::model::TrustSection;
use crate::config::parse::Draft;
use std::path::Path;

impl Checker<'_> {
    /// The section if written (its files are relative to the mesh file at
    /// `path`, and read later, when the file is loaded); if not, whether
    /// the mesh needs one.
    pub(super) fn trust(&mut self, draft: &Draft, path: &Path) -> Option<TrustSection> {
        let trust = self.trust_section(draft, path);
        self.common_root(draft);
        trust
    }

    fn trust_section(&mut self, draft: &Draft, path: &Path) -> Option<TrustSection> {
        let span = draft.trust_span.as_ref()?;
        let cert = self.required(
            &draft.root_cert,
            "root_cert",
            ("[trust]", span, &draft.trust_keys),
            "\"certs/root-cert.pem\"",
        );
        let key = self.required(
            &draft.root_key,
            "root_key",
            ("[trust]", span, &draft.trust_keys),
            "\"certs/root-key.pem\"",
        );
        let days = match &draft.intermediate_days {
            None => Some(TrustSection::DEFAULT_INTERMEDIATE_DAYS),
            Some(at) if (1..=3650).contains(&at.value) => Some(at.value as u32),
            Some(at) => {
                self.error(
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

    /// Several control planes must sign workload certificates from one root.
    fn common_root(&mut self, draft: &Draft) {
        if draft.trust_span.is_some() {
            return;
        }
        // From the drafts: a second primary with a mistake of its own
        // still needs the root.
        let second_primary = draft
            .clusters
            .iter()
            .filter(|dc| dc.role.as_ref().is_some_and(|r| r.value == "primary"))
            .nth(1);
        if let Some(dc) = second_primary {
            let span = dc.role.as_ref().map_or(dc.span.clone(), |r| r.span.clone());
            self.error(
                span,
                format!(
                    "`{}` is a second primary, and a mesh with several primaries needs a common root of trust",
                    dc.name.as_ref().map_or("?", |n| n.value.as_str())
                ),
                "add a [trust] section with root_cert and root_key (PEM files beside the mesh file); \
                 `mesh ca init` makes a new root in certs/ beside the mesh file",
            );
        }
    }
}
