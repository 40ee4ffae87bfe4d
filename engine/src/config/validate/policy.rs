//! `[policy]`: what a plan may not do. Each `deny_delete` glob must be one
//! mesh can match against step IDs (`<cluster>/<kind>`, with a kind mesh
//! has; `@<primary>` after `attach`, `#<name>` after a kept revision's
//! install or a tag: some step ID mesh makes), so that a typo cannot
//! silently protect nothing;
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
        GlobError::EmptyPart(_) => format!(
            "{}: e.g. \"*/install-control-plane\" (every cluster's) or \"cluster1/*\" \
             (every step of cluster1)",
            step_id_shapes()
        ),
        GlobError::Dangling('@') => format!(
            "{}: end it with the primary's name or `*`, e.g. \"*/attach@*\"",
            step_id_shapes()
        ),
        GlobError::Dangling(c) => format!(
            "{}: end it with the revision's or tag's name or `*`, e.g. \"*/install-control-plane{c}*\"",
            step_id_shapes()
        ),
        GlobError::NoStepId => format!(
            "{}: e.g. \"*/attach@*\" (every remote secret in another primary) or \
             \"*/revision-tag#*\" (every revision tag)",
            step_id_shapes()
        ),
        _ => {
            "write a glob of step IDs: `*` any characters but `/`, `?` one, `[a-c]` one of a set; \
              e.g. \"*/install-control-plane\""
                .into()
        }
    }
}

/// The shapes of the step IDs mesh makes (`topology::id_shape`): what a
/// glob that matches none should look like.
fn step_id_shapes() -> String {
    let mut named_only = Vec::new();
    let mut shapes = Vec::new();
    for k in providers::StepKind::ALL {
        let shape = crate::topology::id_shape(*k);
        if !shape.plain {
            named_only.push(format!("`{k}`"));
        }
        if shape.at_primary {
            shapes.push(format!("`<cluster>/{k}@<primary>`"));
        }
        if shape.named {
            shapes.push(format!("`<cluster>/{k}#<name>`"));
        }
    }
    let plain = if named_only.is_empty() {
        "`<cluster>/<kind>`".to_string()
    } else {
        format!(
            "`<cluster>/<kind>` (but {} only with `#<name>`)",
            named_only.join(", ")
        )
    };
    format!("a step ID is {plain}, {}", shapes.join(", "))
}
