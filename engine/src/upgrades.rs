//! The rules of changing Istio under a running mesh, checked on the plan
//! before anything runs (pure). A plan that breaks one is refused, with
//! what to do instead:
//!
//! - a kept revision (`[[mesh.keep_revision]]`, steps `…#<revision>`) is
//!   only ever re-run by the istioctl that installed it: its recorded Istio
//!   version never changes (no canary turns into an in-place upgrade);
//! - an in-place upgrade (the same revision, another `istio_version`) goes
//!   one minor release at a time, as Istio supports it;
//! - a revision is uninstalled only after every tag that pointed at it has
//!   moved: a tag move and that revision's removal are two applies;
//! - a revision that leaves `[[mesh.keep_revision]]` because it becomes the
//!   mesh's `revision` again (a rollback) is never uninstalled: its kept
//!   install is handed over ([`handovers`]), the record dropped once the
//!   mesh's install of that revision has run;
//! - every istioctl install without a revision points the `default` tag at
//!   revision `default` (Istio's installer does so), so a plan that runs
//!   one sets a `default` tag that points elsewhere again, after it
//!   ([`reset_default_tags`]).

use plans::Change;
use plans::{Action, Plan};
use providers::facts::{Facts, of_input};

/// What a side of a change (its `before` or `after`) says.
pub fn facts(side: &Option<String>) -> Facts {
    side.as_deref().map(of_input).unwrap_or_default()
}

/// Whether the change is a kept revision's install
/// (`cluster1/install-control-plane#<revision>`).
pub fn is_kept_install(c: &Change) -> bool {
    c.kind.starts_with("install-") && c.step.contains('#')
}

/// The kept revisions' installs this plan deletes, with the revision each
/// installed: what a revision's removal uninstalls. A handed-over install
/// ([`handovers`]) uninstalls nothing and is not among them.
pub fn removed_revisions(plan: &Plan) -> Vec<(&Change, String)> {
    let handed: Vec<&str> = handovers(plan).iter().map(|h| h.step).collect();
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Delete && is_kept_install(c))
        .filter(|c| !handed.contains(&c.step.as_str()))
        .filter_map(|c| Some((c, facts(&c.before).revision?)))
        .collect()
}

/// For a plan that read no cluster (`plan --no-refresh`): each revision it
/// uninstalls, with the word that what still uses it (namespaces,
/// workloads, tags) was not checked, and that `mesh apply` checks it and
/// refuses if anything does.
pub fn unchecked_removals(plan: &Plan) -> Vec<String> {
    let mut revisions: Vec<String> = removed_revisions(plan)
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    revisions.sort();
    revisions.dedup();
    revisions
        .into_iter()
        .map(|rev| {
            format!(
                "not checked (no refresh): whether a namespace, a workload or a tag in any \
                 cluster still uses revision `{rev}`, which this plan uninstalls. `mesh apply` \
                 checks it and refuses if one does; `mesh plan` with its refresh shows it now"
            )
        })
        .collect()
}

/// The refusals of a `--target` that keeps only some of a revision's
/// uninstalls (`keep`: the steps it keeps): a primary's revision removed
/// while a remote's profile of it stays would leave that remote's
/// injector calling a deleted istiod (its webhook fails pod creation), and
/// the plan's "uninstalled from every cluster" would be false. The
/// remotes' profiles going first, alone, is safe.
pub fn split_removals(plan: &Plan, keep: &std::collections::BTreeSet<String>) -> Vec<String> {
    let removed = removed_revisions(plan);
    let mut revisions: Vec<&str> = removed.iter().map(|(_, r)| r.as_str()).collect();
    revisions.sort();
    revisions.dedup();
    let mut out = Vec::new();
    for rev in revisions {
        let (kept, left): (Vec<&Change>, Vec<&Change>) = removed
            .iter()
            .filter(|(_, r)| r == rev)
            .map(|(c, _)| *c)
            .partition(|c| keep.contains(&c.step));
        // Remotes first is safe (they stop injecting the revision); a
        // control plane first is not.
        let left: Vec<&Change> = left
            .into_iter()
            .filter(|c| c.kind == "install-remote")
            .collect();
        if !kept.iter().any(|c| c.kind == "install-control-plane") || left.is_empty() {
            continue;
        }
        let names = |cs: &[&Change]| {
            cs.iter()
                .map(|c| c.step.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(format!(
            "--target uninstalls revision `{rev}` with {} but leaves {}: a revision goes from \
             every cluster at once, or a remote's injector keeps calling a deleted istiod. Target \
             those steps too (`--target {}`), or plan without --target",
            names(&kept),
            names(&left),
            left.iter()
                .map(|c| c.step.as_str())
                .collect::<Vec<_>>()
                .join(" --target "),
        ));
    }
    out
}

/// A kept install this plan deletes whose revision another install of the
/// plan, in the same cluster and of the same kind, installs from now on:
/// the revision stays, only the step that tracks it changes (the rollback
/// of a canary: `C/install-control-plane#default` gives way to
/// `C/install-control-plane`, unrevisioned again). Its delete must
/// uninstall nothing, and drop the record only after `by` has run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover<'a> {
    /// The kept install deleted (`cluster1/install-control-plane#default`).
    pub step: &'a str,
    pub revision: String,
    /// The install that tracks the revision now.
    pub by: &'a str,
}

/// Every [`Handover`] of the plan.
pub fn handovers(plan: &Plan) -> Vec<Handover<'_>> {
    let rev = |side: &Option<String>| facts(side).revision.unwrap_or_else(|| "default".into());
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Delete && is_kept_install(c))
        .filter_map(|d| {
            let revision = rev(&d.before);
            let by = plan.changes.iter().find(|c| {
                c.action != Action::Delete
                    && c.step != d.step
                    && c.cluster == d.cluster
                    && c.kind == d.kind
                    && c.after.is_some()
                    && rev(&c.after) == revision
            })?;
            Some(Handover {
                step: &d.step,
                revision,
                by: &by.step,
            })
        })
        .collect()
}

/// The plan's reason for a handed-over delete.
pub fn handover_reason(h: &Handover<'_>) -> String {
    format!(
        "handed over: revision `{}` stays installed, tracked from now on by {} (nothing is \
         uninstalled; the record goes once that install has run)",
        h.revision, h.by
    )
}

/// The kept installs this plan creates for a revision that runs already:
/// the one the mesh's install (same cluster, same kind) had until now (a
/// canary's old revision, a rollback's abandoned one). With that install.
pub fn newly_kept(plan: &Plan) -> Vec<(&Change, &Change)> {
    let rev = |side: &Option<String>| facts(side).revision.unwrap_or_else(|| "default".into());
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Create && is_kept_install(c))
        .filter_map(|k| {
            let was = plan.changes.iter().find(|c| {
                c.action == Action::Update
                    && !is_kept_install(c)
                    && c.cluster == k.cluster
                    && c.kind == k.kind
                    && c.before.is_some()
                    && rev(&c.before) == rev(&k.after)
            })?;
            Some((k, was))
        })
        .collect()
}

/// The `default` tag dropped from `[tags]` in a cluster whose install the
/// plan does not delete: released, never removed. `istioctl tag remove default`
/// deletes the tag's webhook and Istio's validator
/// `istiod-default-validator`, and leaves the legacy injector deactivated
/// (`istio.io/deactivated=never-match`): `istio-injection=enabled`
/// namespaces would get no sidecars and Istio's configuration no
/// validation. So the tag stays as it is and only its record goes; a
/// cluster leaving the mesh (its install deleted, `mesh destroy`) still
/// removes it.
pub fn released_tags(plan: &Plan) -> Vec<&Change> {
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Delete && c.kind == "revision-tag")
        .filter(|c| c.step.ends_with("#default"))
        // Whether or not `--target` left the install in the plan: only
        // its delete (the cluster leaving, `mesh destroy`) removes the tag.
        .filter(|c| {
            !plan.changes.iter().any(|i| {
                i.cluster == c.cluster
                    && (i.kind == "install-control-plane" || i.kind == "install-remote")
                    && !is_kept_install(i)
                    && i.action == Action::Delete
            })
        })
        .collect()
}

/// The plan's reason for a released tag ([`released_tags`]).
pub fn released_reason(c: &Change) -> String {
    format!(
        "released: tag `default` stays on revision `{}` as it is, and mesh no longer manages \
         it (`istioctl tag remove default` would delete Istio's validator \
         istiod-default-validator and leave `istio-injection=enabled` namespaces without \
         sidecars, the legacy injector staying deactivated); `mesh destroy` still removes it",
        facts(&c.before)
            .revision
            .unwrap_or_else(|| "default".into())
    )
}

/// Writes each handover's and released tag's reason on its delete, and
/// each newly kept revision's on its create (it is not new to the
/// cluster).
pub fn mark_handovers(plan: &mut Plan) {
    let mut marked: Vec<(String, String)> = handovers(plan)
        .iter()
        .map(|h| (h.step.to_string(), handover_reason(h)))
        .collect();
    marked.extend(
        released_tags(plan)
            .into_iter()
            .map(|c| (c.step.clone(), released_reason(c))),
    );
    marked.extend(newly_kept(plan).into_iter().map(|(k, was)| {
        (
            k.step.clone(),
            format!(
                "kept from now on: revision `{}` runs already (recorded until now by {}); its \
                 own istioctl re-applies it, nothing is installed anew",
                facts(&k.after).revision.unwrap_or_else(|| "default".into()),
                was.step
            ),
        )
    }));
    for (step, reason) in marked {
        if let Some(c) = plan.changes.iter_mut().find(|c| c.step == step) {
            c.reason = Some(reason);
        }
    }
}

/// The control planes this plan creates (the mesh revision's
/// `C/install-control-plane`) in clusters the state records no step of: a
/// live istiod there is none of this state's (a state lost, another
/// mesh's, one installed by hand) and must not be installed over. A
/// cluster the state knows was this mesh's already, and an istiod found
/// there is an apply interrupted after its install began: the next apply
/// finishes it.
pub fn new_control_planes<'a>(plan: &'a Plan, state: Option<&state::State>) -> Vec<&'a Change> {
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Create && c.kind == "install-control-plane")
        .filter(|c| !c.step.contains('#'))
        .filter(|c| !state.is_some_and(|s| s.steps.values().any(|r| r.cluster == c.cluster)))
        .collect()
}

/// Why the plan must not run, one sentence each; empty when it may.
pub fn refusals(plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for c in &plan.changes {
        if c.action != Action::Update || !c.kind.starts_with("install-") {
            continue;
        }
        // A running control plane moved between sidecar and ambient.
        let ambient = |side: &Option<String>| {
            side.as_deref()
                .is_some_and(|t| t.contains("\n  profile: ambient\n"))
        };
        if c.kind == "install-control-plane" && ambient(&c.before) != ambient(&c.after) {
            out.push(format!(
                "{}: the mesh file moves a running control plane {} ambient mode. mesh does not \
                 migrate a running mesh between data planes: workloads would lose their proxies \
                 while they move (Istio's guide migrates namespace by namespace). Restore \
                 `dataplane`, or destroy the mesh and apply it anew",
                c.step,
                if ambient(&c.after) { "into" } else { "out of" }
            ));
            continue;
        }
        let (before, after) = (facts(&c.before), facts(&c.after));
        if is_kept_install(c) {
            if before.istio_version != after.istio_version {
                out.push(format!(
                    "{}: kept revision `{}` was installed by Istio {} and is only ever re-run by \
                     that istioctl, but the mesh file now gives it Istio {}. To upgrade it, install \
                     a new revision (`revision`) beside it and move the tags; to keep it, restore \
                     its `istio_version` and `istioctl` in [[mesh.keep_revision]]",
                    c.step,
                    before.revision.as_deref().unwrap_or("default"),
                    shown(&before),
                    after.istio_version.as_deref().unwrap_or("(not pinned)"),
                ));
            }
            continue;
        }
        if before.revision == after.revision
            && let (Some(from), Some(to)) = (&before.istio_version, &after.istio_version)
            && let (Some(f), Some(t)) = (minor(from), minor(to))
            && t > f + 1
        {
            out.push(format!(
                "{}: an in-place upgrade from Istio {from} to {to} skips {} minor release{}; \
                 Istio upgrades in place one minor release at a time (1.{f} to 1.{}). Upgrade to \
                 1.{} first, or install {to} as a new revision (`revision`, keeping the old one in \
                 [[mesh.keep_revision]]): a canary may skip a release",
                c.step,
                t - f - 1,
                if t - f - 1 == 1 { "" } else { "s" },
                f + 1,
                f + 1,
            ));
        }
    }
    // A rollback must re-apply its target with the release that installed
    // it: another one would be an in-place upgrade nobody reviewed as one.
    for h in handovers(plan) {
        let find = |step: &str| plan.changes.iter().find(|c| c.step == step);
        let (Some(kept), Some(by)) = (find(h.step), find(h.by)) else {
            continue;
        };
        let (was, now) = (facts(&kept.before), facts(&by.after));
        if was.istio_version != now.istio_version {
            out.push(format!(
                "{}: the mesh file rolls back to revision `{}`, which Istio {} installed, but \
                 gives it Istio {}: that would upgrade the revision in place while rolling back \
                 to it. Set `istio_version` and `[istioctl] path` to the ones the revision had in \
                 [[mesh.keep_revision]]",
                h.by,
                h.revision,
                shown(&was),
                now.istio_version.as_deref().unwrap_or("(not pinned)"),
            ));
        }
    }
    // A tag moving away from a revision that this same plan uninstalls.
    let removed = removed_revisions(plan);
    for c in plan
        .changes
        .iter()
        .filter(|c| c.kind == "revision-tag" && c.action == Action::Update)
    {
        let Some(from) = facts(&c.before).revision else {
            continue;
        };
        let removed = removed
            .iter()
            .find(|(d, rev)| d.cluster == c.cluster && *rev == from);
        if let Some((d, _)) = removed {
            out.push(format!(
                "{}: the tag still points at revision `{from}`, and this plan both moves it and \
                 uninstalls `{from}` ({}): pods injected in between would find no injector. Move \
                 the tag first (keep `{from}` in [[mesh.keep_revision]] and apply), then remove \
                 `{from}` in a later apply",
                c.step, d.step
            ));
        }
    }
    out
}

/// The control planes this plan upgrades in place (the same revision,
/// another Istio version): where `istioctl x precheck` runs first.
pub fn in_place(plan: &Plan) -> Vec<&Change> {
    plan.changes
        .iter()
        .filter(|c| {
            c.action == Action::Update && c.kind == "install-control-plane" && !is_kept_install(c)
        })
        .filter(|c| {
            let (b, a) = (facts(&c.before), facts(&c.after));
            b.revision == a.revision
                && a.istio_version.is_some()
                && b.istio_version != a.istio_version
        })
        .collect()
}

fn shown(f: &Facts) -> &str {
    f.istio_version.as_deref().unwrap_or("(not pinned)")
}

/// The minor release of `1.28`, `1.28.3`, `1.31-dev.20260827`.
fn minor(version: &str) -> Option<u32> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    (parts.next()? == "1").then_some(())?;
    parts.next()?.parse().ok()
}

/// Makes each `C/revision-tag#default` that points away from revision
/// `default` an update when the plan runs an install without a revision in
/// C (a kept `default` re-applied, drift repaired, `--replace`): that
/// install re-points the tag (Istio's `operator/pkg/webhook`), and the tag
/// step, which the graph orders after it, sets it back in the same apply.
pub fn reset_default_tags(plan: &mut Plan) {
    // Per cluster, one install without a revision that the plan runs.
    let unrevisioned: std::collections::BTreeMap<String, String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Create | Action::Update))
        .filter(|c| c.kind == "install-control-plane" || c.kind == "install-remote")
        .filter(|c| facts(&c.after).revision.as_deref() == Some("default"))
        .map(|c| (c.cluster.clone(), c.step.clone()))
        .collect();
    let mut changed = false;
    for c in plan.changes.iter_mut() {
        if c.action != Action::NoOp
            || c.kind != "revision-tag"
            || !c.step.ends_with("#default")
            || facts(&c.after).revision.as_deref() == Some("default")
        {
            continue;
        }
        let Some(install) = unrevisioned.get(&c.cluster) else {
            continue;
        };
        c.action = Action::Update;
        c.reason = Some(format!(
            "set again: {install} installs without a revision, which points tag `default` at \
             revision `default` (Istio's installer does so on every such install)"
        ));
        changed = true;
    }
    if changed {
        plan.summary = plans::Summary::of(&plan.changes);
    }
}

#[cfg(test)]
mod tests {
    use super::minor;

    #[test]
    fn minors() {
        assert_eq!(minor("1.28"), Some(28));
        assert_eq!(minor("1.28.3"), Some(28));
        assert_eq!(minor("1.31-dev.20260827"), Some(31));
        assert_eq!(minor("2.0"), None);
        assert_eq!(minor("x"), None);
    }
}
