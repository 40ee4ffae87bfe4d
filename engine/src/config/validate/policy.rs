//! `[policy]`: what a plan may not do. Each `deny_delete` glob must be one
//! mesh can match against step IDs (`<cluster>/<kind>`, with a kind mesh
//! has), so that a typo cannot silently protect nothing;
//! `max_clusters_changed` is at least 1.

use super::Checker;
use crate::config::model::PolicySection;
use crate::config::parse::{Draft, did_you_mean};
use crate::policy::{Glob, GlobError};

impl Checker<'_> {
    pub(super) fn policy(&mut self, draft: &Draft) -> PolicySection {
        let mut policy = PolicySection::default();
        for at in draft.deny_delete.iter().flatten() {
            match Glob::parse(&at.value) {
                Ok(_) => policy.deny_delete.push(at.value.clone()),
                Err(e) => {
                    let help = glob_help(&e);
                    self.error(
                        at.span.clone(),
                        format!("deny_delete glob `{}`: {e}", at.value),
                        help,
                    );
                }
            }
        }
        if let Some(at) = &draft.max_clusters_changed {
            if at.value < 1 {
                self.error(
                    at.span.clone(),
                    format!(
                        "max_clusters_changed = {} would refuse every plan that changes anything",
                        at.value
                    ),
                    "set it to 1 or more, or remove it for no limit",
                );
            } else if let Ok(n) = u32::try_from(at.value) {
                policy.max_clusters_changed = Some(n);
            } else {
                self.error(
                    at.span.clone(),
                    format!("max_clusters_changed = {} is too large", at.value),
                    "remove it for no limit",
                );
            }
        }
        policy.require_canary = draft.require_canary.as_ref().is_some_and(|a| a.value);
        policy
    }
}

fn glob_help(e: &GlobError) -> String {
    match e {
        GlobError::NoSlash | GlobError::TooManySlashes => {
            "a step ID is `<cluster>/<kind>`: e.g. \"*/install-control-plane\" (every cluster's) \
             or \"cluster1/*\" (every step of cluster1)"
                .into()
        }
        GlobError::NoSuchKind(kind) => {
            let kinds: Vec<&str> = providers::StepKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect();
            match did_you_mean(kind, kinds.iter().copied()) {
                Some(k) => format!("did you mean `{k}`? (the step kinds: {})", kinds.join(", ")),
                None => format!("use one of the step kinds: {}", kinds.join(", ")),
            }
        }
        _ => {
            "write a glob of step IDs: `*` any characters but `/`, `?` one, `[a-c]` one of a set; \
              e.g. \"*/install-control-plane\""
                .into()
        }
    }
}
