//! Preflight: before a plan is shown or any step runs, every cluster the
//! plan touches answers and allows what its steps will do, and istioctl is
//! there (in the pinned version). [`needs`] decides what to check from the
//! plan (pure); [`run`] checks it, each cluster once, clusters
//! concurrently (the checks themselves are `providers::preflight`).
//!
//! A cluster is touched by a step whose action is not no-op (for
//! `R/attach`, both the primary it writes to and the remote it reads the
//! token from), and, when the plan refreshes, by every recorded step, which
//! refresh reads.

use crate::topology::StepGraph;
use futures::stream::{self, StreamExt};
use plans::{Action, Plan};
use providers::env::Env;
use providers::preflight::{self, Access, ClusterCheck, Findings, ReadBy};
use providers::{StepInput, StepKind, Target};
use serde_json::Value;
use state::State;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What a plan needs checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Needs {
    /// One entry per cluster (kubeconfig and context), in plan order.
    pub clusters: Vec<ClusterCheck>,
    /// A step that runs istioctl changes.
    pub istioctl: bool,
}

impl Needs {
    /// The entry of `target`'s cluster, made on first use. Clusters are
    /// told apart by kubeconfig and context, the way connections are, with
    /// `default_kubeconfig` standing for a target without its own.
    fn cluster(&mut self, target: &Target, default_kubeconfig: Option<&Path>) -> &mut ClusterCheck {
        let key = |t: &Target| -> (Option<PathBuf>, String) {
            (
                t.kubeconfig
                    .clone()
                    .or_else(|| default_kubeconfig.map(Path::to_path_buf)),
                t.context.clone(),
            )
        };
        let wanted = key(target);
        let i = match self.clusters.iter().position(|c| key(&c.target) == wanted) {
            Some(i) => i,
            None => {
                self.clusters.push(ClusterCheck {
                    target: target.clone(),
                    steps: BTreeSet::new(),
                    access: Default::default(),
                    read_by: None,
                });
                self.clusters.len() - 1
            }
        };
        &mut self.clusters[i]
    }

    fn add(&mut self, target: &Target, step: &str, access: Vec<Access>, dk: Option<&Path>) {
        let c = self.cluster(target, dk);
        c.steps.insert(step.to_string());
        for a in access {
            c.access.entry(a).or_default().insert(step.to_string());
        }
    }
}

/// What `plan` needs checked. `refresh`: the plan reads every recorded
/// step back first. Deleted steps gone from the mesh file are found
/// through the state's record (`default_kubeconfig`, as refresh does).
pub fn needs(
    plan: &Plan,
    graph: &StepGraph,
    state: Option<&State>,
    refresh: bool,
    default_kubeconfig: Option<&Path>,
) -> Needs {
    let dk = default_kubeconfig;
    let mut needs = Needs::default();
    let recorded_target = |id: &str| -> Option<Target> {
        if let Some(s) = graph.get(id) {
            return Some(s.target.clone());
        }
        let rec = state?.steps.get(id)?;
        Some(Target {
            cluster: rec.cluster.clone(),
            context: rec.context.clone(),
            kubeconfig: dk.map(Path::to_path_buf),
        })
    };
    for change in &plan.changes {
        match change.action {
            Action::NoOp => {}
            Action::Create | Action::Update => {
                let Some(step) = graph.get(&change.step) else {
                    continue;
                };
                let update = change.action == Action::Update;
                needs.istioctl |= step.kind().runs_istioctl(false);
                for need in step.input.apply_access(update) {
                    let target = need.remote.as_ref().unwrap_or(&step.target);
                    needs.add(target, &step.id, vec![need.access], dk);
                }
                if let StepInput::Attach(input) = &step.input {
                    let remote = providers::kinds::attach::remote_target(input);
                    let c = needs.cluster(&remote, dk);
                    let read = c.read_by.get_or_insert_with(|| ReadBy {
                        api_server: input.api_server.clone(),
                        primaries: BTreeSet::new(),
                    });
                    read.primaries.insert(input.primary.clone());
                }
            }
            Action::Delete => {
                let Ok(kind) = change.kind.parse::<StepKind>() else {
                    continue;
                };
                let Some(target) = recorded_target(&change.step) else {
                    continue;
                };
                needs.istioctl |= kind.runs_istioctl(true);
                needs.add(&target, &change.step, kind.destroy_access(), dk);
                // A link's destroy also revokes its token in the cluster it
                // read: deleting that Secret needs its own permission there.
                if kind == StepKind::Attach
                    && let Some(rec) = state.and_then(|s| s.steps.get(&change.step))
                    && let (Some(cluster), Some(context), Some(secret)) = (
                        rec.outputs.get("token_cluster").and_then(Value::as_str),
                        rec.outputs.get("token_context").and_then(Value::as_str),
                        rec.outputs.get("token_secret").and_then(Value::as_str),
                    )
                {
                    let remote = graph
                        .in_order()
                        .find(|s| s.target.cluster == cluster && s.target.context == context)
                        .map(|s| s.target.clone())
                        .unwrap_or_else(|| Target {
                            cluster: cluster.to_string(),
                            context: context.to_string(),
                            kubeconfig: dk.map(Path::to_path_buf),
                        });
                    let ns = secret.split_once('/').map_or("istio-system", |(ns, _)| ns);
                    needs.add(
                        &remote,
                        &change.step,
                        // Read first: destroy revokes only a token Secret it
                        // finds live to be the link's own.
                        vec![
                            Access::new("get", "", "secrets", Some(ns)),
                            Access::new("delete", "", "secrets", Some(ns)),
                        ],
                        dk,
                    );
                }
            }
        }
    }
    if refresh && let Some(st) = state {
        for id in st.steps.keys() {
            if let Some(target) = recorded_target(id) {
                needs.add(&target, id, Vec::new(), dk);
            }
        }
    }
    needs
}

/// Runs the checks of `needs`, at most `parallelism` clusters at once,
/// beside istioctl's (when a step runs it, or a version is `pinned`).
/// Findings come in the order of `needs.clusters`, istioctl's last.
pub async fn run(
    env: &Env,
    needs: &Needs,
    pinned: Option<&str>,
    kept: &[crate::config::KeptRevision],
    loopback_reachable: bool,
    parallelism: usize,
) -> Findings {
    let clusters = stream::iter(needs.clusters.iter().enumerate())
        .map(|(i, c)| async move {
            (
                i,
                preflight::check_cluster(&env.clusters, c, loopback_reachable).await,
            )
        })
        .buffer_unordered(parallelism.max(1))
        .collect::<Vec<_>>();
    // The mesh's istioctl, and each kept revision's own (in its version).
    let istioctl = async {
        let mut errors = Vec::new();
        if needs.istioctl || pinned.is_some() {
            errors.extend(
                preflight::check_istioctl(&env.istioctl, pinned)
                    .await
                    .err()
                    .map(|e| e.to_string()),
            );
            for k in kept {
                let own = env.istioctl.with_program(&k.istioctl);
                if let Err(e) = preflight::check_istioctl(&own, k.istio_version.as_deref()).await {
                    errors.push(format!(
                        "kept revision `{}` ({}, its `istioctl`): {e}",
                        k.name, k.written_at
                    ));
                }
            }
        }
        errors
    };
    let (mut per_cluster, istioctl) = futures::join!(clusters, istioctl);
    per_cluster.sort_by_key(|(i, _)| *i);
    let mut found = Findings::default();
    for (_, f) in per_cluster {
        found.extend(f);
    }
    found.errors.extend(istioctl);
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::{self, Mode};

    fn seed() -> (crate::config::MeshFile, StepGraph) {
        let text = include_str!("../../examples/primary-remote.toml");
        let mesh = crate::config::parse(text, Path::new("/m/mesh.toml")).unwrap();
        let graph = crate::topology::compile(&mesh).unwrap();
        (mesh, graph)
    }

    #[test]
    fn a_first_plan_checks_both_clusters_and_what_each_step_does_there() {
        let (_, graph) = seed();
        let plan = planner::plan("mesh1", &graph, None, None, Mode::Converge);
        let n = needs(&plan, &graph, None, true, None);
        assert!(n.istioctl);
        let names: Vec<&str> = n
            .clusters
            .iter()
            .map(|c| c.target.context.as_str())
            .collect();
        assert_eq!(names, ["kind-cluster1", "kind-cluster2"]);
        let c1 = &n.clusters[0];
        let crds = Access {
            verb: "create",
            group: "apiextensions.k8s.io",
            resource: "customresourcedefinitions",
            namespace: None,
        };
        assert!(c1.access[&crds].contains("cluster1/install-control-plane"));
        // cluster2/attach writes its Secret in cluster1 and reads cluster2.
        assert!(c1.steps.contains("cluster2/attach"));
        let c2 = &n.clusters[1];
        assert!(c2.steps.contains("cluster2/attach"));
        let read = c2
            .read_by
            .as_ref()
            .expect("remote secrets point at cluster2");
        assert_eq!(read.primaries, BTreeSet::from(["cluster1".to_string()]));
        assert!(c1.read_by.is_none());
    }

    #[test]
    fn a_clean_plan_checks_only_what_refresh_reads() {
        let (_, graph) = seed();
        let mut st = State::new("mesh1");
        for step in graph.in_order() {
            let known = st.clone();
            let lookup = move |id: &str, key: &str| match known
                .steps
                .get(id)
                .and_then(|r| r.outputs.get(key))
            {
                Some(v) => providers::Known::Known(v.clone()),
                None => providers::Known::AfterApply,
            };
            let input = planner::render_step(step, &lookup);
            let mut outputs = std::collections::BTreeMap::new();
            if step.kind() == StepKind::EastwestAddress {
                outputs.insert("address".to_string(), "172.18.0.200".into());
            }
            let rec = planner::record(
                step,
                &graph,
                &input,
                outputs,
                state::Status::Applied,
                "2026-01-01T00:00:00Z".into(),
            );
            st.steps.insert(step.id.clone(), rec);
        }
        let plan = planner::plan("mesh1", &graph, Some(&st), None, Mode::Converge);
        assert!(!plan.summary.has_changes(), "{:?}", plan.summary);
        let quiet = needs(&plan, &graph, Some(&st), false, None);
        assert!(quiet.clusters.is_empty() && !quiet.istioctl);
        let read = needs(&plan, &graph, Some(&st), true, None);
        assert_eq!(read.clusters.len(), 2);
        assert!(read.clusters.iter().all(|c| c.access.is_empty()));
        // Destroying runs istioctl's uninstall and deletes.
        let destroy = planner::plan("mesh1", &graph, Some(&st), None, Mode::Destroy);
        let d = needs(&destroy, &graph, Some(&st), false, None);
        assert!(d.istioctl);
        assert!(d.clusters[0].access.keys().any(|a| a.verb == "delete"));
    }
}
