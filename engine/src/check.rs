//! `mesh check`: what each cluster should look like (from the mesh file,
//! its step graph and the state), the run of the live checks of
//! `providers::check` on every cluster at once, the drift a refresh sees,
//! and the report in text and JSON.
//!
//! Here, not in `providers`, because the expectations come from the step
//! graph and the state, and the drift lines reuse [`crate::refresh`] and
//! [`crate::planner`]: a check and a plan never disagree about drift.

use crate::config::MeshFile;
use crate::planner::{self, Mode, Refresh};
use crate::topology::StepGraph;
use futures::stream::{self, StreamExt};
use providers::check::{Check, ClusterSpec, LinkSpec, Status, TrustSpec};
use providers::env::Env;
use providers::{StepInput, StepKind};
use state::State;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// How many clusters are checked at once, and how many recorded steps are
/// read back at once.
const PARALLELISM: usize = 64;

/// What every cluster of the mesh file should look like. Clusters come in
/// file order.
pub fn specs(mesh: &MeshFile, graph: &StepGraph, state: Option<&State>) -> Vec<ClusterSpec> {
    let recorded_address = |primary: &str| -> Option<String> {
        state?
            .steps
            .get(&format!("{primary}/{}", StepKind::EastwestAddress))?
            .outputs
            .get("address")?
            .as_str()
            .map(String::from)
    };
    let root = mesh.trust.as_ref().map(|t| TrustSpec {
        root_pem: t.root_cert_pem.clone(),
        root_sha256: providers::ca::inspect(&t.root_cert_pem)
            .map(|i| i.sha256)
            .unwrap_or_default(),
    });
    mesh.clusters
        .iter()
        .filter_map(|c| {
            // The cluster's own target, as its steps use it.
            let target = graph
                .in_order()
                .find(|s| s.target.cluster == c.name)?
                .target
                .clone();
            // The cluster's step of a kind (its mesh revision's, not a
            // kept revision's `#rev` step): found by kind, so a renamed kind
            // cannot switch a check off.
            let step = |kind: StepKind| graph.get(&format!("{}/{kind}", c.name));
            let (network_label, primary_annotation) =
                match step(StepKind::PrepareNamespace).map(|s| &s.input) {
                    Some(StepInput::PrepareNamespace(i)) => (i.network.clone(), i.primary.clone()),
                    _ => (None, None),
                };
            let eastwest = step(StepKind::InstallEastwestGateway).map(|_| {
                step(StepKind::EastwestAddress)
                    .is_some()
                    .then(|| recorded_address(&c.name))
                    .flatten()
            });
            let links = graph
                .in_order()
                .filter(|s| s.cluster == c.name)
                .filter_map(|s| match &s.input {
                    StepInput::Attach(input) => Some(LinkSpec {
                        step: s.id.clone(),
                        primary: input.primary.clone(),
                        api_server: input.api_server.clone(),
                        reader: input.reader.clone(),
                        primary_target: s.target.clone(),
                    }),
                    _ => None,
                })
                .collect();
            let istiod_reads = graph
                .in_order()
                .filter(|s| s.target.cluster == c.name && s.cluster != c.name)
                .filter(|s| matches!(s.input, StepInput::Attach(_)))
                .map(|s| (s.id.clone(), s.cluster.clone()))
                .collect();
            Some(ClusterSpec {
                name: c.name.clone(),
                target,
                primary: c.primary.clone().or(primary_annotation),
                network_label,
                revision: mesh.mesh.revision.clone(),
                istio_version: mesh.mesh.istio_version.clone(),
                trust: root.clone().filter(|_| c.primary.is_none()),
                eastwest,
                pilot_address: c.primary.as_deref().map(recorded_address),
                links,
                istiod_reads,
                ambient: (mesh.mesh.dataplane == crate::config::Dataplane::Ambient)
                    .then(|| step(StepKind::AmbientEastwestGateway).is_some()),
            })
        })
        .collect()
}

/// Runs every check of `specs` (only `only`'s when given), every cluster at
/// once, then the drift and state lines. Lines come grouped by cluster, in
/// the order of `specs`.
pub async fn run(
    env: &Env,
    mesh: &MeshFile,
    graph: &StepGraph,
    state: Option<&State>,
    specs: &[ClusterSpec],
    only: Option<&str>,
    default_kubeconfig: Option<PathBuf>,
) -> Vec<Check> {
    let selected: Vec<&ClusterSpec> = specs
        .iter()
        .filter(|s| only.is_none_or(|o| o == s.name))
        .collect();
    // The clusters to reach: the selected ones and the control planes
    // their links are in.
    let wanted: BTreeSet<&str> = selected
        .iter()
        .flat_map(|s| {
            std::iter::once(s.name.as_str()).chain(s.links.iter().map(|l| l.primary.as_str()))
        })
        .collect();
    let reaching = specs
        .iter()
        .filter(|s| wanted.contains(s.name.as_str()))
        .map(|s| async move { (s.name.clone(), providers::check::reach(env, s).await) });
    let reached: BTreeMap<String, Result<providers::check::Reached, Check>> =
        stream::iter(reaching)
            .buffer_unordered(PARALLELISM)
            .collect()
            .await;
    let up: BTreeSet<String> = reached
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n.clone())
        .collect();
    let limit = deadline();
    let checking = selected.iter().map(|s| {
        let (reached, up) = (&reached, &up);
        async move {
            match reached.get(&s.name) {
                Some(Ok(me)) => {
                    let checked = providers::check::check_cluster(env, s, me, up);
                    match tokio::time::timeout(limit, checked).await {
                        Ok(lines) => lines,
                        Err(_) => vec![overdue(&s.name, &s.target.context, limit)],
                    }
                }
                Some(Err(fail)) => vec![fail.clone()],
                None => Vec::new(),
            }
        }
    });
    // Each step's read back has the same deadline (a WARN past it).
    let drift = drift(env, mesh, graph, state, &up, only, default_kubeconfig);
    let (per_cluster, mut drift) = futures::join!(
        stream::iter(checking)
            .buffered(PARALLELISM)
            .collect::<Vec<_>>(),
        drift
    );
    let mut out = Vec::new();
    for (spec, mut lines) in selected.iter().zip(per_cluster) {
        if up.contains(&spec.name) {
            lines.extend(drift.remove(&spec.name).unwrap_or_default());
        }
        out.extend(lines);
    }
    out
}

/// How long the checks of one cluster may take, after it answered: a
/// cluster that accepts connections but answers slowly, or not at all, is
/// a FAIL after this, never a check that hangs (`MESH_CHECK_DEADLINE_SECS`
/// changes it, for very slow links; docs/check.md).
fn deadline() -> std::time::Duration {
    let secs = std::env::var("MESH_CHECK_DEADLINE_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(60);
    std::time::Duration::from_secs(secs)
}

/// The FAIL of a cluster whose `what` did not finish within `limit`.
fn overdue(cluster: &str, context: &str, limit: std::time::Duration) -> Check {
    Check::fail(
        cluster,
        "deadline",
        format!(
            "its checks did not finish within {} s: the API server answered its version, then \
             too slowly or not at all, so this cluster's other lines are not shown",
            limit.as_secs()
        ),
    )
    .fix(format!(
        "`kubectl --context {context} get --raw /readyz?verbose` shows what the API server waits on; \
         MESH_CHECK_DEADLINE_SECS=N allows a slow link more time"
    ))
}

/// The state against the clusters (a refresh of each recorded step of the
/// reachable clusters: its drift) and against the mesh file (a plan), as
/// lines by cluster. A state that does not match the mesh file is a WARN,
/// never an error.
async fn drift(
    env: &Env,
    mesh: &MeshFile,
    graph: &StepGraph,
    state: Option<&State>,
    up: &BTreeSet<String>,
    only: Option<&str>,
    default_kubeconfig: Option<PathBuf>,
) -> BTreeMap<String, Vec<Check>> {
    let mut lines: BTreeMap<String, Vec<Check>> = BTreeMap::new();
    let Some(state) = state else {
        for c in mesh.clusters.iter().filter(|c| up.contains(&c.name)) {
            lines.entry(c.name.clone()).or_default().push(
                Check::warn(
                    &c.name,
                    "state",
                    "no state: nothing was applied with this mesh file (or the state is elsewhere)"
                        .into(),
                )
                .fix("`mesh plan`, then `mesh apply`; or pass the state with --state"),
            );
        }
        return lines;
    };
    let refresh = refresh_lines(env, graph, state, up, only, default_kubeconfig, &mut lines).await;
    state_lines(mesh, graph, state, &refresh, up, only, &mut lines);
    lines
}

/// Reads back each recorded step of the mesh file whose clusters answered,
/// each with its own result (one step that cannot be read does not hide
/// the others' drift): a `drift <step>` line for each that drifted or
/// could not be read. Returns what was read.
async fn refresh_lines(
    env: &Env,
    graph: &StepGraph,
    state: &State,
    up: &BTreeSet<String>,
    only: Option<&str>,
    default_kubeconfig: Option<PathBuf>,
    lines: &mut BTreeMap<String, Vec<Check>>,
) -> Refresh {
    let results = crate::refresh::read_each(
        env,
        graph,
        state,
        default_kubeconfig,
        PARALLELISM,
        Some(deadline()),
        |id, rec| {
            only.is_none_or(|o| o == rec.cluster)
                && graph
                    .get(id)
                    .is_some_and(|s| up.contains(&s.cluster) && up.contains(&s.target.cluster))
        },
    )
    .await;
    let mut refresh = Refresh::new();
    for (id, r) in results {
        let cluster = id.split('/').next().unwrap_or_default().to_string();
        match r {
            Ok(obs) => {
                refresh.insert(id, obs);
            }
            Err(e) => {
                lines.entry(cluster.clone()).or_default().push(
                    Check::warn(
                        &cluster,
                        format!("drift {id}"),
                        format!("could not be read back: {}", e.message),
                    )
                    .fix("check access to the cluster, then `mesh plan`"),
                );
            }
        }
    }
    for (id, obs) in &refresh {
        if obs.drift.is_empty() {
            continue;
        }
        let cluster = id.split('/').next().unwrap_or_default().to_string();
        lines.entry(cluster.clone()).or_default().push(
            Check::fail(
                &cluster,
                format!("drift {id}"),
                format!(
                    "the cluster no longer matches what mesh applied: {}",
                    obs.drift.join("; ")
                ),
            )
            .fix("`mesh plan` shows the repair, `mesh apply` makes it"),
        );
    }
    refresh
}

/// The state against the mesh file: a `state` line per cluster, with what
/// a plan would do besides repairing drift.
fn state_lines(
    mesh: &MeshFile,
    graph: &StepGraph,
    state: &State,
    refresh: &Refresh,
    up: &BTreeSet<String>,
    only: Option<&str>,
    lines: &mut BTreeMap<String, Vec<Check>>,
) {
    let plan = planner::plan(
        &mesh.mesh.id,
        graph,
        Some(state),
        Some(refresh),
        Mode::Converge,
    );
    let mut pending: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ch in &plan.changes {
        let drifted = refresh.get(&ch.step).is_some_and(|o| !o.drift.is_empty());
        if ch.action == plans::Action::NoOp || drifted {
            continue;
        }
        pending.entry(ch.cluster.clone()).or_default().push(format!(
            "{} {}",
            ch.action.as_str(),
            ch.step
        ));
    }
    for c in mesh.clusters.iter().filter(|c| up.contains(&c.name)) {
        if only.is_some_and(|o| o != c.name) {
            continue;
        }
        let recorded = state.steps.values().filter(|r| r.cluster == c.name).count();
        let line = match pending.remove(&c.name) {
            Some(p) => Check::warn(
                &c.name,
                "state",
                format!(
                    "the state does not match the mesh file: {} step{} to apply ({})",
                    p.len(),
                    if p.len() == 1 { "" } else { "s" },
                    p.join(", ")
                ),
            )
            .fix("`mesh plan`, then `mesh apply`"),
            None => Check::pass(
                &c.name,
                "state",
                format!(
                    "{recorded} recorded step{} match the mesh file",
                    if recorded == 1 { "" } else { "s" }
                ),
            ),
        };
        lines.entry(c.name.clone()).or_default().push(line);
    }
}

/// 0 when nothing failed (warnings allowed), 2 when a check failed.
pub fn exit_code(checks: &[Check]) -> u8 {
    if checks.iter().any(|c| c.status == Status::Fail) {
        2
    } else {
        0
    }
}

/// One JSON object per check, as an array.
pub fn json(checks: &[Check]) -> String {
    serde_json::to_string_pretty(checks).unwrap_or_else(|_| "[]".into())
}

/// Grouped by cluster (with its role and network), one line per check,
/// the fix under each line that is not a pass, then the counts.
pub fn text(mesh: &MeshFile, checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|c| c.check.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    let mut out = String::new();
    let mut current: Option<&str> = None;
    for c in checks {
        if current != Some(c.cluster.as_str()) {
            if current.is_some() {
                out.push('\n');
            }
            let heading = match mesh.cluster(&c.cluster) {
                Some(m) => match &m.primary {
                    None => format!("{} (primary, network {})", m.name, m.network),
                    Some(p) => format!("{} (remote of {p}, network {})", m.name, m.network),
                },
                None => providers::rendered::one_line(&c.cluster),
            };
            out.push_str(&heading);
            out.push('\n');
            current = Some(&c.cluster);
        }
        // Every field on its one line: what a cluster answered (a version,
        // a name) cannot forge a line of the report.
        let line = providers::rendered::one_line;
        out.push_str(&format!(
            "  {}  {:<width$}  {}\n",
            c.status,
            line(&c.check),
            line(&c.detail)
        ));
        if let Some(fix) = &c.fix
            && c.status != Status::Pass
        {
            out.push_str(&format!("        fix: {}\n", line(fix)));
        }
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let clusters: BTreeSet<&str> = checks.iter().map(|c| c.cluster.as_str()).collect();
    let (w, f) = (count(Status::Warn), count(Status::Fail));
    out.push_str(&format!(
        "\n{} cluster{} checked: {} passed, {w} warning{}, {f} failed.\n",
        clusters.len(),
        if clusters.len() == 1 { "" } else { "s" },
        count(Status::Pass),
        if w == 1 { "" } else { "s" },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh() -> MeshFile {
        crate::config::parse(
            r#"
[mesh]
id = "m"
[[cluster]]
name = "c1"
context = "k1"
network = "n1"
role = "primary"
[[cluster]]
name = "c2"
context = "k2"
network = "n2"
role = "remote"
primary = "c1"
"#,
            std::path::Path::new("mesh.toml"),
        )
        .unwrap()
    }

    #[test]
    fn specs_follow_the_graph() {
        let m = mesh();
        let g = crate::topology::compile(&m).unwrap();
        let s = specs(&m, &g, None);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "c1");
        assert_eq!(s[0].network_label.as_deref(), Some("n1"));
        assert_eq!(s[0].primary, None);
        assert_eq!(s[0].eastwest, Some(None));
        assert_eq!(
            s[0].istiod_reads,
            vec![("c2/attach".to_string(), "c2".to_string())]
        );
        assert_eq!(s[1].primary.as_deref(), Some("c1"));
        assert_eq!(s[1].links.len(), 1);
        assert_eq!(s[1].links[0].step, "c2/attach");
        assert_eq!(s[1].pilot_address, Some(None));
        assert_eq!(s[1].target.context, "k2");
    }

    #[test]
    fn text_groups_by_cluster_and_says_the_fix() {
        let m = mesh();
        let checks = vec![
            Check::pass("c1", "api server", "answers".into()),
            Check::fail("c2", "istio-system", "missing".into()).fix("mesh apply"),
            Check::warn("c2", "state", "no state".into()),
        ];
        let t = text(&m, &checks);
        assert!(
            t.starts_with("c1 (primary, network n1)\n  PASS  api server"),
            "{t}"
        );
        assert!(
            t.contains("c2 (remote of c1, network n2)\n  FAIL  istio-system"),
            "{t}"
        );
        assert!(t.contains("        fix: mesh apply\n"), "{t}");
        assert!(
            t.ends_with("2 clusters checked: 1 passed, 1 warning, 1 failed.\n"),
            "{t}"
        );
        assert_eq!(exit_code(&checks), 2);
        assert_eq!(exit_code(&checks[..1]), 0);
        // A value with a newline stays on its line.
        let forged = vec![Check::pass(
            "c1",
            "api server",
            "v1.34\n  PASS  forged".into(),
        )];
        assert!(
            text(&m, &forged).contains("v1.34\\n  PASS  forged"),
            "{}",
            text(&m, &forged)
        );
        let j: serde_json::Value = serde_json::from_str(&json(&checks)).unwrap();
        assert_eq!(j[1]["status"], "FAIL");
        assert_eq!(j[1]["fix"], "mesh apply");
    }
}
