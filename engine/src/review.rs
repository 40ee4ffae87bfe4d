//! What a reviewer reads beside the steps of a plan: what it means in plain
//! words, what its deletes remove, what `mesh plan` would refuse, and the
//! policy's verdict ([`crate::policy`]). Pure: it fills the plan's review
//! fields, which every format renders and a saved plan carries.
//!
//! The meaning is a comparison of two pictures of the mesh (its clusters'
//! roles, networks and primaries, the revision, the Istio version, the
//! root of trust): for `mesh diff`, taken from the two mesh files; for
//! `mesh plan`, read from the plan's own recorded and planned inputs
//! (`providers::facts`), since the state keeps no mesh file.

use crate::config::{MeshFile, Role};
use plans::{Action, Command, Plan, Removal};

/// Fills the review of a `mesh plan` (and of the plan `mesh apply`
/// computes): notes from the plan, removals, and the policy of `mesh`
/// with the rules in `allowed` overridden.
pub fn plan(plan: &mut Plan, mesh: &MeshFile, allowed: &[String]) {
    plan.command = Command::Plan;
    crate::upgrades::mark_handovers(plan);
    let before = Picture::of_plan(plan, Side::Before);
    let after = Picture::of_plan(plan, Side::After);
    plan.notes = notes(&before, &after);
    plan.notes.extend(tag_notes(plan));
    plan.removals = removals(plan);
    // After what the planner refused (a `--target` that splits a
    // revision's removal).
    let refused = crate::upgrades::refusals(plan);
    plan.refused.extend(refused);
    plan.policy = crate::policy::evaluate(&mesh.policy, plan, allowed);
}

/// Fills the review of the plan `mesh apply` (or `destroy`) computes. With
/// a saved plan, the overrides are the ones it records, and an `--allow`
/// it does not record is refused (its reviewers saw it without); else the
/// overrides `given`.
pub fn apply(
    plan: &mut Plan,
    mesh: &MeshFile,
    saved: Option<&Plan>,
    given: &[String],
) -> Result<(), String> {
    let allowed = match saved {
        Some(saved) => crate::policy::allowed_for_saved(saved, given)?,
        None => given.to_vec(),
    };
    self::plan(plan, mesh, &allowed);
    Ok(())
}

/// Fills the review of a `mesh diff` of `base` (None: no mesh yet, every
/// step is created) against `head` (None: the mesh file is gone, every
/// step is deleted). The policy is the head's (else the base's), with no
/// override: the diff shows what `mesh plan` will say.
pub fn diff(plan: &mut Plan, base: Option<&MeshFile>, head: Option<&MeshFile>) {
    plan.command = Command::Diff;
    crate::upgrades::mark_handovers(plan);
    let (before, after) = (Picture::of_file(base), Picture::of_file(head));
    plan.notes = notes(&before, &after);
    plan.notes.extend(tag_notes(plan));
    plan.removals = removals(plan);
    plan.refused = Vec::new();
    if let (Some(b), Some(h)) = (base, head)
        && b.mesh.id != h.mesh.id
    {
        plan.refused.push(format!(
            "the mesh ID changes from `{}` to `{}`. A mesh ID change means a new mesh: \
             `mesh plan` refuses the state of `{}` for it. Keep the ID, or destroy the old \
             mesh (`mesh destroy` with the base file) and apply the new one with its own state",
            b.mesh.id, h.mesh.id, b.mesh.id
        ));
    }
    if let Some(policy) = head.or(base).map(|m| &m.policy) {
        plan.policy = crate::policy::evaluate(policy, plan, &[]);
    }
}

/// Which revision tags move where, on which clusters: the step of a canary
/// upgrade that moves workloads (`default` drives `istio-injection=enabled`).
fn tag_notes(plan: &Plan) -> Vec<String> {
    use std::collections::BTreeMap;
    let rev = |side: &Option<String>| crate::upgrades::facts(side).revision;
    /// A tag, the revision it pointed at, and the one it points at.
    type Move = (String, Option<String>, Option<String>);
    let mut moves: BTreeMap<Move, Vec<&str>> = BTreeMap::new();
    let released: Vec<&str> = crate::upgrades::released_tags(plan)
        .into_iter()
        .map(|c| c.step.as_str())
        .collect();
    for c in plan
        .changes
        .iter()
        .filter(|c| c.kind == "revision-tag" && !released.contains(&c.step.as_str()))
    {
        let (from, to) = match c.action {
            Action::Create => (None, rev(&c.after)),
            Action::Delete => (rev(&c.before), None),
            Action::Update => (rev(&c.before), rev(&c.after)),
            _ => continue,
        };
        if from == to {
            continue;
        }
        let tag = c.step.rsplit_once('#').map_or("", |(_, t)| t).to_string();
        moves.entry((tag, from, to)).or_default().push(&c.cluster);
    }
    moves
        .into_iter()
        .map(|((tag, from, to), clusters)| {
            let on = clusters.join(", ");
            let why = if tag == "default" {
                " (new pods of `istio-injection=enabled` namespaces)"
            } else {
                ""
            };
            match (from, to) {
                (Some(a), Some(b)) => {
                    format!("tag `{tag}` moves from revision `{a}` to `{b}` on {on}{why}")
                }
                (None, Some(b)) => format!("tag `{tag}` points at revision `{b}` on {on}{why}"),
                (Some(a), None) => format!("tag `{tag}` (on revision `{a}`) is removed from {on}"),
                (None, None) => String::new(),
            }
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// What the plan's deletes remove: a handed-over install and a released
/// tag remove nothing.
fn removals(plan: &Plan) -> Vec<Removal> {
    let mut handed: Vec<&str> = crate::upgrades::handovers(plan)
        .iter()
        .map(|h| h.step)
        .collect();
    handed.extend(
        crate::upgrades::released_tags(plan)
            .into_iter()
            .map(|c| c.step.as_str()),
    );
    plan.changes
        .iter()
        .filter(|c| c.action == Action::Delete && !handed.contains(&c.step.as_str()))
        .map(|c| Removal {
            step: c.step.clone(),
            removes: providers::facts::removes(
                &c.kind,
                &c.cluster,
                c.secret_holder(),
                c.before.as_deref().unwrap_or_default(),
            ),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Before,
    After,
}

/// One cluster as a picture of the mesh has it.
#[derive(Debug, Clone, Default, PartialEq)]
struct Member {
    name: String,
    role: Option<Role>,
    network: Option<String>,
    /// A remote's primary.
    primary: Option<String>,
}

/// The mesh as one side of a change has it. `None`: that side does not say.
#[derive(Debug, Clone, Default, PartialEq)]
struct Picture {
    /// In file (or plan) order.
    members: Vec<Member>,
    /// The control planes' revision (`default` when none).
    revision: Option<String>,
    /// Whether the side has an install step, so that `istio_version`
    /// None means "not pinned" rather than "not known".
    has_installs: bool,
    istio_version: Option<String>,
    /// The root of trust's sha256; None without `[trust]`.
    root: Option<String>,
    /// Revisions kept beside `revision` (`[[mesh.keep_revision]]`), with
    /// their Istio versions.
    kept: Vec<(String, Option<String>)>,
}

impl Picture {
    fn of_file(mesh: Option<&MeshFile>) -> Picture {
        let Some(mesh) = mesh else {
            return Picture::default();
        };
        Picture {
            members: mesh
                .clusters
                .iter()
                .map(|c| Member {
                    name: c.name.clone(),
                    role: Some(c.role),
                    network: Some(c.network.clone()),
                    primary: c.primary.clone(),
                })
                .collect(),
            revision: Some(mesh.mesh.revision.clone().unwrap_or("default".into())),
            has_installs: !mesh.clusters.is_empty(),
            istio_version: mesh.mesh.istio_version.clone(),
            kept: mesh
                .mesh
                .keep_revisions
                .iter()
                .map(|k| (k.name.clone(), k.istio_version.clone()))
                .collect(),
            root: mesh.trust.as_ref().map(|t| {
                providers::ca::inspect(&t.root_cert_pem)
                    .map(|i| i.sha256)
                    // Only parsed, not loaded: the file names the root.
                    .unwrap_or_else(|_| t.root_cert.display().to_string())
            }),
        }
    }

    fn of_plan(plan: &Plan, side: Side) -> Picture {
        let mut p = Picture::default();
        for c in &plan.changes {
            let text = match side {
                Side::Before if c.action != Action::Create => c.before.as_deref(),
                Side::After if c.action != Action::Delete => c.after.as_deref(),
                _ => None,
            };
            let Some(text) = text else { continue };
            let facts = providers::facts::of_input(text);
            // A kept revision's install (`…#<revision>`): beside the mesh's.
            if crate::upgrades::is_kept_install(c) {
                let rev = facts.revision.clone().unwrap_or_else(|| "default".into());
                if !p.kept.iter().any(|(k, _)| *k == rev) {
                    p.kept.push((rev, facts.istio_version.clone()));
                }
                continue;
            }
            let role = match c.kind.as_str() {
                "install-control-plane" => Some(Role::Primary),
                "install-remote" => Some(Role::Remote),
                _ => None,
            };
            if role == Some(Role::Primary) && p.revision.is_none() {
                p.revision = facts.revision.clone();
            }
            if facts.revision.is_some() && !p.has_installs {
                // The first install says whether the version is pinned.
                p.has_installs = true;
                p.istio_version = facts.istio_version.clone();
            }
            if facts.root_sha256.is_some() && p.root.is_none() {
                p.root = facts.root_sha256.clone();
            }
            let i = match p.members.iter().position(|m| m.name == c.cluster) {
                Some(i) => i,
                None => {
                    p.members.push(Member {
                        name: c.cluster.clone(),
                        ..Member::default()
                    });
                    p.members.len() - 1
                }
            };
            let m = &mut p.members[i];
            m.role = m.role.or(role);
            // The namespace's label is the network itself; an install's
            // values say it too.
            let labelled = c.kind == "prepare-namespace" && facts.network.is_some();
            if labelled || (m.network.is_none() && role.is_some()) {
                m.network = facts.network;
            }
            m.primary = m.primary.take().or(facts.primary);
        }
        // A cluster with no install step on this side (only a Secret of it
        // left, say) is not a member the notes can speak of.
        p.members.retain(|m| m.role.is_some());
        p
    }
}

impl Picture {
    /// The networks the members are on, each once, in order.
    fn networks(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for n in self.members.iter().filter_map(|m| m.network.as_deref()) {
            if !v.contains(&n) {
                v.push(n);
            }
        }
        v
    }
}

fn role_name(m: &Member) -> String {
    match (m.role, &m.primary) {
        (Some(Role::Primary), _) => "a primary".into(),
        (Some(Role::Remote), Some(p)) => format!("a remote of {p}"),
        (Some(Role::Remote), None) => "a remote".into(),
        (None, _) => "a cluster".into(),
    }
}

fn on_network(m: &Member) -> String {
    m.network
        .as_ref()
        .map(|n| format!(" on {n}"))
        .unwrap_or_default()
}

/// One plain-language line per change of meaning, mesh-wide first, then
/// cluster by cluster.
fn notes(before: &Picture, after: &Picture) -> Vec<String> {
    let mut notes = Vec::new();
    let both = !before.members.is_empty() && !after.members.is_empty();
    mesh_notes(before, after, &mut notes);
    revision_notes(before, after, both, &mut notes);
    if both {
        topology_notes(before, after, &mut notes);
    }
    member_notes(before, after, &mut notes);
    notes
}

/// A mesh made or removed; the Istio version changed or pinned.
fn mesh_notes(before: &Picture, after: &Picture, notes: &mut Vec<String>) {
    if before.members.is_empty() && !after.members.is_empty() {
        let n = after.members.len();
        notes.push(format!(
            "a new mesh: {n} cluster{} join{}",
            if n == 1 { "" } else { "s" },
            if n == 1 { "s" } else { "" }
        ));
    }
    if !before.members.is_empty() && after.members.is_empty() {
        notes.push("every cluster leaves: the whole mesh is removed".into());
    }
    let both = !before.members.is_empty() && !after.members.is_empty();
    if both && before.has_installs && after.has_installs {
        match (&before.istio_version, &after.istio_version) {
            (Some(a), Some(b)) if a != b => notes.push(format!(
                "Istio goes from {a} to {b}: {}",
                if before.revision == after.revision {
                    "every istioctl install runs again in place, on the same revision".to_string()
                } else if let Some(rev) = rolled_back_to(before, after) {
                    format!("back to revision `{rev}`, which was kept installed (a rollback)")
                } else {
                    "installed as a new revision beside the old one (a canary)".to_string()
                }
            )),
            (None, Some(b)) => notes.push(format!("the Istio version is pinned to {b}")),
            (Some(a), None) => {
                notes.push(format!("the Istio version is no longer pinned (was {a})"))
            }
            _ => {}
        }
    }
}

/// The mesh's revision changed; kept revisions added or uninstalled.
fn revision_notes(before: &Picture, after: &Picture, both: bool, notes: &mut Vec<String>) {
    if both
        && let (Some(a), Some(b)) = (&before.revision, &after.revision)
        && a != b
    {
        let kept_after = after.kept.iter().any(|(k, _)| k == a);
        notes.push(if rolled_back_to(before, after).is_some() {
            format!(
                "revision `{b}`, kept beside `{a}`, is the mesh's revision again (a rollback): \
                 it stays installed (re-applied by the Istio release that installed it, never \
                 uninstalled); \
                 `{a}` {}",
                if kept_after {
                    format!(
                        "stays installed as a kept revision: move the tags and namespaces back to \
                         `{b}`, then remove `{a}` from [[mesh.keep_revision]] to uninstall it"
                    )
                } else {
                    "is uninstalled".to_string()
                }
            )
        } else if kept_after {
            format!(
                "revision `{b}` is added beside revision `{a}`, which stays installed as a kept \
                 revision (a canary upgrade): move the tags and namespaces to `{b}`, then remove \
                 `{a}` from [[mesh.keep_revision]] to uninstall it"
            )
        } else {
            format!(
                "revision `{b}` is added: its control planes install beside revision `{a}`, which \
                 stays installed but untracked: keep it as a [[mesh.keep_revision]] (a canary \
                 upgrade), or uninstall it by hand"
            )
        });
    }
    for (k, v) in &after.kept {
        if !before.kept.iter().any(|(b, _)| b == k) && before.revision.as_deref() != Some(k) {
            notes.push(format!(
                "revision `{k}`{} is kept installed beside revision `{}`, by its own istioctl",
                v.as_ref()
                    .map(|v| format!(" (Istio {v})"))
                    .unwrap_or_default(),
                after.revision.as_deref().unwrap_or("default")
            ));
        }
    }
    for (k, _) in &before.kept {
        if !after.kept.iter().any(|(a, _)| a == k) && after.revision.as_deref() != Some(k) {
            notes.push(format!(
                "revision `{k}` is uninstalled from every cluster (`istioctl uninstall --revision {k}`, \
                 by the istioctl that installed it); revision `{}` stays",
                after.revision.as_deref().unwrap_or("default")
            ));
        }
    }
}

/// The revision a plan rolls back to: the mesh's revision changes to one
/// that was kept beside it.
fn rolled_back_to<'a>(before: &Picture, after: &'a Picture) -> Option<&'a str> {
    let b = after.revision.as_deref()?;
    (before.revision.as_deref() != Some(b) && before.kept.iter().any(|(k, _)| k == b)).then_some(b)
}

/// The networks and the root of trust, when both sides have clusters.
fn topology_notes(before: &Picture, after: &Picture, notes: &mut Vec<String>) {
    {
        let (was, now) = (before.networks(), after.networks());
        if was.len() == 1 && now.len() > 1 {
            notes.push(format!(
                "the mesh becomes multi-network ({}): each istio-system is labelled with its \
                 network, and each primary gets an east-west gateway that exposes its services",
                now.join(", ")
            ));
        } else if was.len() > 1 && now.len() == 1 {
            notes.push(format!("the mesh goes back to one network ({})", now[0]));
        }
    }
    {
        match (&before.root, &after.root) {
            (Some(a), Some(b)) if a != b => notes.push(
                "the root of trust is rotated: every primary's intermediate CA is issued again \
                 from the new root"
                    .into(),
            ),
            (None, Some(_)) => notes.push(
                "a root of trust is added: every primary gets an intermediate CA from it".into(),
            ),
            (Some(_), None) => notes.push("the root of trust is removed".into()),
            _ => {}
        }
    }
}

/// Each cluster that joins, changes role, primary or network, or leaves.
fn member_notes(before: &Picture, after: &Picture, notes: &mut Vec<String>) {
    for m in &after.members {
        match before.members.iter().find(|b| b.name == m.name) {
            None => notes.push(format!(
                "{} joins as {}{}",
                m.name,
                role_name(m),
                on_network(m)
            )),
            Some(b) => {
                if b.role != m.role && b.role.is_some() && m.role.is_some() {
                    notes.push(format!(
                        "{} changes from {} to {}",
                        m.name,
                        role_name(b),
                        role_name(m)
                    ));
                } else if b.role == Some(Role::Remote)
                    && m.role == Some(Role::Remote)
                    && b.primary.is_some()
                    && m.primary.is_some()
                    && b.primary != m.primary
                {
                    notes.push(format!(
                        "{} moves from primary {} to primary {}",
                        m.name,
                        b.primary.as_deref().unwrap_or_default(),
                        m.primary.as_deref().unwrap_or_default()
                    ));
                }
                if let (Some(x), Some(y)) = (&b.network, &m.network)
                    && x != y
                {
                    notes.push(format!("{} moves to {y} (from {x})", m.name));
                }
            }
        }
    }
    for b in &before.members {
        if !after.members.iter().any(|m| m.name == b.name) {
            notes.push(match b.role {
                Some(Role::Primary) => format!(
                    "primary {} is removed: its control plane is uninstalled",
                    b.name
                ),
                _ => format!("{} ({}) leaves the mesh", b.name, role_name(b)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> MeshFile {
        crate::config::parse(text, std::path::Path::new("mesh.toml")).unwrap()
    }

    const BASE: &str = r#"
[mesh]
id = "mesh1"
istio_version = "1.27.0"

[[cluster]]
name = "cluster1"
context = "c1"
network = "network1"
role = "primary"

[[cluster]]
name = "cluster2"
context = "c2"
network = "network1"
role = "remote"
primary = "cluster1"

[[cluster]]
name = "cluster4"
context = "c4"
network = "network1"
role = "remote"
primary = "cluster1"
"#;

    #[test]
    fn a_diff_of_two_files_says_what_they_mean() {
        let base = file(BASE);
        let head_text = BASE
            .replace("\"1.27.0\"", "\"1.28.0\"\nrevision = \"canary\"")
            .replace(
                "context = \"c4\"\nnetwork = \"network1\"",
                "context = \"c4\"\nnetwork = \"network2\"",
            )
            .replace(
                "[[cluster]]\nname = \"cluster2\"\ncontext = \"c2\"\nnetwork = \"network1\"\nrole = \"remote\"\nprimary = \"cluster1\"\n",
                "",
            )
            .replace("id = \"mesh1\"", "id = \"mesh2\"");
        let head = file(&head_text);
        let mut plan = Plan::new("mesh2", vec![]);
        diff(&mut plan, Some(&base), Some(&head));
        assert_eq!(plan.command, Command::Diff);
        assert_eq!(
            plan.notes,
            [
                "Istio goes from 1.27.0 to 1.28.0: installed as a new revision beside the old one \
                 (a canary)",
                "revision `canary` is added: its control planes install beside revision `default`, \
                 which stays installed but untracked: keep it as a [[mesh.keep_revision]] (a \
                 canary upgrade), or uninstall it by hand",
                "the mesh becomes multi-network (network1, network2): each istio-system is \
                 labelled with its network, and each primary gets an east-west gateway that \
                 exposes its services",
                "cluster4 moves to network2 (from network1)",
                "cluster2 (a remote of cluster1) leaves the mesh",
            ]
        );
        assert!(plan.refused[0].starts_with("the mesh ID changes from `mesh1` to `mesh2`"));

        let mut new = Plan::new("mesh1", vec![]);
        diff(&mut new, None, Some(&base));
        assert_eq!(
            new.notes,
            [
                "a new mesh: 3 clusters join",
                "cluster1 joins as a primary on network1",
                "cluster2 joins as a remote of cluster1 on network1",
                "cluster4 joins as a remote of cluster1 on network1",
            ]
        );
        assert!(new.refused.is_empty());
    }

    #[test]
    fn a_plan_reads_the_same_meaning_from_its_inputs() {
        let base = file(BASE);
        let head = file(
            &BASE
                .replace(
                    "context = \"c4\"\nnetwork = \"network1\"",
                    "context = \"c4\"\nnetwork = \"network2\"",
                )
                .replace("1.27.0", "1.28.0"),
        );
        // The base as applied (every output unknown), planned against the head.
        let g0 = crate::topology::compile(&base).unwrap();
        let g1 = crate::topology::compile(&head).unwrap();
        let mut plan = crate::planner::diff("mesh1", &g0, &g1);
        let mut head_policy = head.clone();
        head_policy.policy.require_canary = true;
        super::plan(&mut plan, &head_policy, &[]);
        assert_eq!(plan.command, Command::Plan);
        assert_eq!(
            plan.notes,
            [
                "Istio goes from 1.27.0 to 1.28.0: every istioctl install runs again in place, \
                 on the same revision",
                "the mesh becomes multi-network (network1, network2): each istio-system is \
                 labelled with its network, and each primary gets an east-west gateway that \
                 exposes its services",
                "cluster4 moves to network2 (from network1)",
            ]
        );
        assert_eq!(plan.policy.result, plans::PolicyResult::Violated);
        assert!(
            plan.policy
                .violations
                .iter()
                .all(|v| v.rule == "require_canary")
        );
    }
}
