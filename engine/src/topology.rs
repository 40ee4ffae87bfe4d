//! The topology compiler: a validated mesh file → the step graph.
//!
//! This is the one place that knows the primary-remote procedure's shape
//! (DESIGN.md's step table): which steps a primary and each of its remotes
//! need, and what runs before what. What each step *does* is in `providers`;
//! how steps are ordered, planned and run is in [`crate::graph`],
//! [`crate::planner`] and the executor.

use crate::config::{Cluster, MeshFile};
use crate::graph::{Dag, GraphBuilder, GraphError, Node};
use providers::kinds::{
    attach, eastwest_address, expose_istiod, install_control_plane, install_eastwest_gateway,
    install_remote, prepare_namespace,
};
use providers::{StepInput, StepKind, Target};
use std::path::PathBuf;

/// How long `eastwest-address` waits for a load-balancer address by default.
pub const EASTWEST_ADDRESS_TIMEOUT_SECS: u64 = 300;

/// One step of the mesh: its ID, the cluster it acts on, and its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// `<cluster>/<kind>`.
    pub id: String,
    /// The cluster named in the ID.
    pub cluster: String,
    /// Where the step's objects live. The same cluster as the ID's, except
    /// for `R/attach`, whose Secret lives in R's primary.
    pub target: Target,
    pub input: StepInput,
}

impl Step {
    pub fn kind(&self) -> StepKind {
        self.input.kind()
    }
}

impl Node for Step {
    fn id(&self) -> &str {
        &self.id
    }
}

pub type StepGraph = Dag<Step>;

/// The ID of `kind` on `cluster`.
pub fn step_id(cluster: &str, kind: StepKind) -> String {
    format!("{cluster}/{kind}")
}

/// Compiles the mesh into its step graph. Validation has already guaranteed
/// that every remote's primary exists, so this only fails on a bug.
pub fn compile(mesh: &MeshFile) -> Result<StepGraph, GraphError> {
    let mut b = GraphBuilder::new();
    let base_dir = mesh.path.parent().map(PathBuf::from).unwrap_or_default();
    let target = |c: &Cluster| Target {
        cluster: c.name.clone(),
        context: c.context.clone(),
        kubeconfig: c.kubeconfig.as_deref().map(|k| resolve_path(&base_dir, k)),
    };
    let revision = mesh.mesh.revision.clone();

    for p in mesh.primaries() {
        let remotes: Vec<&Cluster> = mesh.remotes_of(&p.name).collect();
        let step = |kind: StepKind, target: Target, input: StepInput| {
            debug_assert_eq!(kind, input.kind());
            Step {
                id: step_id(&p.name, kind),
                cluster: p.name.clone(),
                target,
                input,
            }
        };
        let cp = step_id(&p.name, StepKind::InstallControlPlane);
        let ew = step_id(&p.name, StepKind::InstallEastwestGateway);
        let addr = step_id(&p.name, StepKind::EastwestAddress);
        let expose = step_id(&p.name, StepKind::ExposeIstiod);

        b.add(step(
            StepKind::InstallControlPlane,
            target(p),
            StepInput::InstallControlPlane(install_control_plane::Input {
                mesh_id: mesh.mesh.id.clone(),
                cluster: p.name.clone(),
                network: p.network.clone(),
                revision: revision.clone(),
                external_istiod: !remotes.is_empty(),
                istio_version: mesh.mesh.istio_version.clone(),
                values: p.values.clone(),
            }),
        ))?;
        // DESIGN.md "Topologies and trust": a primary without remotes needs
        // no east-west gateway (on one network), no address wait, and no
        // istiod exposed on a public load balancer for nobody.
        if remotes.is_empty() {
            continue;
        }
        b.add(step(
            StepKind::InstallEastwestGateway,
            target(p),
            StepInput::InstallEastwestGateway(install_eastwest_gateway::Input {
                network: p.network.clone(),
                revision: revision.clone(),
                values: p.eastwest_values.clone(),
                istio_version: mesh.mesh.istio_version.clone(),
            }),
        ))?;
        b.depend(&ew, &cp);
        b.add(step(
            StepKind::EastwestAddress,
            target(p),
            StepInput::EastwestAddress(eastwest_address::Input {
                timeout_secs: EASTWEST_ADDRESS_TIMEOUT_SECS,
            }),
        ))?;
        b.depend(&addr, &ew);
        b.add(step(
            StepKind::ExposeIstiod,
            target(p),
            StepInput::ExposeIstiod(expose_istiod::Input {
                revision: revision.clone(),
            }),
        ))?;
        b.depend(&expose, &ew);

        for r in remotes {
            let rstep = |kind: StepKind, target: Target, input: StepInput| Step {
                id: step_id(&r.name, kind),
                cluster: r.name.clone(),
                target,
                input,
            };
            let prep = step_id(&r.name, StepKind::PrepareNamespace);
            let remote = step_id(&r.name, StepKind::InstallRemote);
            let attach = step_id(&r.name, StepKind::Attach);
            b.add(rstep(
                StepKind::PrepareNamespace,
                target(r),
                StepInput::PrepareNamespace(prepare_namespace::Input {
                    primary: p.name.clone(),
                }),
            ))?;
            b.add(rstep(
                StepKind::InstallRemote,
                target(r),
                StepInput::InstallRemote(install_remote::Input {
                    cluster: r.name.clone(),
                    network: r.network.clone(),
                    primary: p.name.clone(),
                    revision: revision.clone(),
                    values: r.values.clone(),
                    istio_version: mesh.mesh.istio_version.clone(),
                }),
            ))?;
            b.depend(&remote, &prep);
            b.depend(&remote, &addr);
            b.depend(&remote, &expose);
            // The Secret is written in the primary; reading the token needs R.
            b.add(rstep(
                StepKind::Attach,
                target(p),
                StepInput::Attach(attach::Input {
                    remote: r.name.clone(),
                    remote_context: r.context.clone(),
                    primary: p.name.clone(),
                    api_server: r.api_server.clone(),
                    remote_kubeconfig: target(r).kubeconfig,
                    reader: attach::Reader::from_values(&r.values),
                }),
            ))?;
            b.depend(&attach, &remote);
            b.depend(&attach, &cp);
        }
    }
    b.build()
}

/// `~/` expands to the home directory; relative paths are relative to the
/// mesh file's folder, so a mesh file means the same from any working directory.
fn resolve_path(base: &std::path::Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    base.join(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MeshSection, Role};
    use serde_json::Map;

    fn cluster(name: &str, role: Role, primary: Option<&str>) -> Cluster {
        Cluster {
            name: name.into(),
            context: format!("kind-{name}"),
            network: "network1".into(),
            role,
            primary: primary.map(Into::into),
            kubeconfig: None,
            api_server: None,
            values: Map::new(),
            eastwest_values: Map::new(),
        }
    }

    fn mesh(clusters: Vec<Cluster>) -> MeshFile {
        MeshFile {
            path: PathBuf::from("/tmp/m/mesh.toml"),
            mesh: MeshSection {
                id: "mesh1".into(),
                revision: None,
                istio_version: None,
            },
            istioctl: Default::default(),
            state: Default::default(),
            clusters,
        }
    }

    #[test]
    fn seed_topology_has_the_design_table_steps_and_dependencies() {
        let g = compile(&mesh(vec![
            cluster("cluster1", Role::Primary, None),
            cluster("cluster2", Role::Remote, Some("cluster1")),
        ]))
        .unwrap();
        let ids: Vec<&str> = g.in_order().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "cluster1/install-control-plane",
                "cluster1/install-eastwest-gateway",
                "cluster1/eastwest-address",
                "cluster1/expose-istiod",
                "cluster2/prepare-namespace",
                "cluster2/install-remote",
                "cluster2/attach",
            ]
        );
        let deps = |id: &str| g.dependencies(id);
        assert!(deps("cluster1/install-control-plane").is_empty());
        assert_eq!(
            deps("cluster1/install-eastwest-gateway"),
            ["cluster1/install-control-plane"]
        );
        assert_eq!(
            deps("cluster1/eastwest-address"),
            ["cluster1/install-eastwest-gateway"]
        );
        assert_eq!(
            deps("cluster1/expose-istiod"),
            ["cluster1/install-eastwest-gateway"]
        );
        assert!(deps("cluster2/prepare-namespace").is_empty());
        assert_eq!(
            deps("cluster2/install-remote"),
            [
                "cluster1/eastwest-address",
                "cluster1/expose-istiod",
                "cluster2/prepare-namespace"
            ]
        );
        assert_eq!(
            deps("cluster2/attach"),
            ["cluster1/install-control-plane", "cluster2/install-remote"]
        );
        // attach writes its Secret in the primary.
        assert_eq!(
            g.get("cluster2/attach").unwrap().target.context,
            "kind-cluster1"
        );
        assert_eq!(g.get("cluster2/attach").unwrap().cluster, "cluster2");
        match &g.get("cluster1/install-control-plane").unwrap().input {
            StepInput::InstallControlPlane(i) => assert!(i.external_istiod),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_primary_without_remotes_is_only_its_control_plane() {
        // No east-west gateway, address wait or exposed istiod for nobody
        // (DESIGN.md, "Topologies and trust"; one network, no remotes).
        let g = compile(&mesh(vec![cluster("solo", Role::Primary, None)])).unwrap();
        let ids: Vec<&str> = g.in_order().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["solo/install-control-plane"]);
        match &g.get("solo/install-control-plane").unwrap().input {
            StepInput::InstallControlPlane(i) => assert!(!i.external_istiod),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn many_primaries_each_with_many_remotes() {
        let mut cs = Vec::new();
        for p in 0..3 {
            cs.push(cluster(&format!("p{p}"), Role::Primary, None));
            for r in 0..5 {
                cs.push(cluster(
                    &format!("p{p}r{r}"),
                    Role::Remote,
                    Some(&format!("p{p}")),
                ));
            }
        }
        let g = compile(&mesh(cs)).unwrap();
        assert_eq!(g.len(), 3 * 4 + 15 * 3);
        assert_eq!(
            g.dependencies("p2r4/install-remote"),
            [
                "p2/eastwest-address",
                "p2/expose-istiod",
                "p2r4/prepare-namespace"
            ]
        );
        // Every step comes after all of its dependencies.
        let pos: std::collections::HashMap<&str, usize> = g
            .in_order()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        for s in g.in_order() {
            for d in g.dependencies(&s.id) {
                assert!(pos[d] < pos[s.id.as_str()], "{d} before {}", s.id);
            }
        }
    }

    #[test]
    fn kubeconfig_paths_resolve_against_the_mesh_file() {
        let mut c = cluster("cluster1", Role::Primary, None);
        c.kubeconfig = Some("kube/config".into());
        let g = compile(&mesh(vec![c])).unwrap();
        assert_eq!(
            g.get("cluster1/install-control-plane")
                .unwrap()
                .target
                .kubeconfig,
            Some(PathBuf::from("/tmp/m/kube/config"))
        );
    }
}
