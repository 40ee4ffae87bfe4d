//! The topology compiler: a validated mesh file → the step graph.
//!
//! This is the one place that knows the primary-remote procedure's shape
//! (the step tables of docs/mesh-toml.md): which steps a primary and each of its remotes
//! need, and what runs before what. What each step *does* is in `providers`;
//! how steps are ordered, planned and run is in [`crate::graph`],
//! [`crate::planner`] and the executor.

use crate::config::Role;
use crate::config::{Cluster, Dataplane, MeshFile};
use crate::graph::{Dag, GraphBuilder, GraphError, Node};
use providers::kinds::{
    ambient_eastwest_gateway, attach, eastwest_address, expose_istiod, expose_services,
    gateway_api_crds, install_control_plane, install_eastwest_gateway, install_remote, plug_ca,
    prepare_namespace, revision_tag,
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

/// Each cluster of the graph once, by the target its own steps act on
/// (not a step that writes to another cluster), in the graph's order.
pub fn cluster_targets(graph: &StepGraph) -> Vec<&providers::Target> {
    let mut targets: Vec<&providers::Target> = Vec::new();
    for step in graph.in_order() {
        if step.target.cluster == step.cluster && !targets.iter().any(|t| t.cluster == step.cluster)
        {
            targets.push(&step.target);
        }
    }
    targets
}

/// The ID of `kind` on `cluster`.
pub fn step_id(cluster: &str, kind: StepKind) -> String {
    format!("{cluster}/{kind}")
}

/// The ID of a step that exists once per name on a cluster: a kept
/// revision's install (`cluster1/install-control-plane#1-30`) or a revision
/// tag (`cluster2/revision-tag#default`).
pub fn named_step_id(cluster: &str, kind: StepKind, name: &str) -> String {
    format!("{cluster}/{kind}#{name}")
}

/// What may follow the kind in a step ID of `kind` that [`compile`] makes:
/// the shapes a `[policy]` glob is checked against, so that a glob that
/// can match no step is refused where it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdShape {
    /// `<cluster>/<kind>` alone (every kind but `revision-tag`).
    pub plain: bool,
    /// `<cluster>/attach@<primary>` ([`attach_id`]).
    pub at_primary: bool,
    /// `<cluster>/<kind>#<name>` ([`named_step_id`]): a kept revision's
    /// install, a revision tag.
    pub named: bool,
}

/// The step IDs [`compile`] makes of `kind`.
pub fn id_shape(kind: StepKind) -> IdShape {
    match kind {
        StepKind::Attach => IdShape {
            plain: true,
            at_primary: true,
            named: false,
        },
        StepKind::InstallControlPlane | StepKind::InstallRemote => IdShape {
            plain: true,
            at_primary: false,
            named: true,
        },
        StepKind::RevisionTag => IdShape {
            plain: false,
            at_primary: false,
            named: true,
        },
        _ => IdShape {
            plain: true,
            at_primary: false,
            named: false,
        },
    }
}

/// The revision an install input names: None (`default`) for the
/// unrevisioned control plane.
fn revision_input(name: &str) -> Option<String> {
    (name != "default").then(|| name.to_string())
}

/// Compiles the mesh into its step graph, by the step tables of docs/mesh-toml.md (the
/// seed's, and "Topologies and trust" for several networks, several
/// primaries and a common root). Validation has already guaranteed that
/// every remote's primary exists, so this only fails on a bug.
pub fn compile(mesh: &MeshFile) -> Result<StepGraph, GraphError> {
    let mut c = Compiler {
        mesh,
        b: GraphBuilder::new(),
        base_dir: mesh.path.parent().map(PathBuf::from).unwrap_or_default(),
        multi_network: mesh.is_multi_network(),
        ambient: mesh.mesh.dataplane == Dataplane::Ambient,
    };
    for p in mesh.primaries() {
        let remotes: Vec<&Cluster> = mesh.remotes_of(&p.name).collect();
        c.primary(p, &remotes)?;
        for r in remotes {
            c.remote(r, p)?;
        }
    }
    c.cross_attach()?;
    c.tags()?;
    c.b.build()
}

/// The graph being built, and what every step's input draws on.
struct Compiler<'m> {
    mesh: &'m MeshFile,
    b: GraphBuilder<Step>,
    /// The mesh file's folder: cluster kubeconfig paths are relative to it.
    base_dir: PathBuf,
    multi_network: bool,
    /// `dataplane = "ambient"`: every cluster a primary (validated).
    ambient: bool,
}

impl Compiler<'_> {
    fn target(&self, c: &Cluster) -> Target {
        Target {
            cluster: c.name.clone(),
            context: c.context.clone(),
            kubeconfig: c
                .kubeconfig
                .as_deref()
                .map(|k| resolve_path(&self.base_dir, k)),
        }
    }

    /// Adds a step of cluster `c` whose objects live in `c` itself; returns
    /// its ID.
    fn add(&mut self, c: &Cluster, input: StepInput) -> Result<String, GraphError> {
        let id = step_id(&c.name, input.kind());
        self.add_as(c, id, input)
    }

    /// As [`Compiler::add`], with the ID given (a named step).
    fn add_as(&mut self, c: &Cluster, id: String, input: StepInput) -> Result<String, GraphError> {
        self.b.add(Step {
            id: id.clone(),
            cluster: c.name.clone(),
            target: self.target(c),
            input,
        })?;
        Ok(id)
    }

    /// A primary's steps: its namespace and CA (when the mesh needs them),
    /// its control plane, and what its remotes and other networks reach it
    /// through (the east-west gateway, its address, istiod and services
    /// exposed).
    fn primary(&mut self, p: &Cluster, remotes: &[&Cluster]) -> Result<(), GraphError> {
        let (revision, version) = (&self.mesh.mesh.revision, &self.mesh.mesh.istio_version);
        let multi_network = self.multi_network;
        let cp_after = self.primary_namespace_and_ca(p)?;
        let cp = self.add(
            p,
            StepInput::InstallControlPlane(install_control_plane::Input {
                mesh_id: self.mesh.mesh.id.clone(),
                cluster: p.name.clone(),
                network: p.network.clone(),
                revision: revision.clone(),
                external_istiod: !remotes.is_empty(),
                istio_version: version.clone(),
                values: p.values.clone(),
                istioctl: None,
                multi_root: false,
                xds_agent: false,
                ambient: self
                    .ambient
                    .then_some(install_control_plane::Ambient { multi_network }),
            }),
        )?;
        if let Some(after) = &cp_after {
            self.b.depend(&cp, after);
        }
        if self.ambient {
            return self.ambient_primary(p, &cp);
        }
        self.kept_control_planes(p, remotes, &cp, cp_after.as_ref())?;
        self.primary_gateways(p, remotes, &cp)
    }

    /// Before the control plane: istio-system labelled with the network,
    /// and the primary's own intermediate CA as `cacerts`, when the mesh
    /// needs them. The last of them, which the control plane waits for.
    fn primary_namespace_and_ca(&mut self, p: &Cluster) -> Result<Option<String>, GraphError> {
        let multi_network = self.multi_network;
        let mut cp_after = None;
        if multi_network || self.mesh.trust.is_some() {
            // Ambient's istiod takes each cluster's network from this label
            // only: it is written on one network too.
            let prep = self.add(
                p,
                StepInput::PrepareNamespace(prepare_namespace::Input {
                    primary: None,
                    network: (multi_network || self.ambient).then(|| p.network.clone()),
                }),
            )?;
            cp_after = Some(prep);
        }
        if let Some(t) = &self.mesh.trust {
            let plug = self.add(
                p,
                StepInput::PlugCa(plug_ca::Input {
                    cluster: p.name.clone(),
                    root_cert_pem: t.root_cert_pem.clone(),
                    root_sha256: providers::ca::inspect(&t.root_cert_pem)
                        .map(|i| i.sha256)
                        .unwrap_or_default(),
                    root_key: t.root_key.clone(),
                    days: t.intermediate_days,
                    stage: plug_ca::Stage::Plain,
                }),
            )?;
            self.b
                .depend(&plug, step_id(&p.name, StepKind::PrepareNamespace));
            cp_after = Some(plug);
        }
        Ok(cp_after)
    }

    /// Each kept revision's control plane, by its own istioctl, beside the
    /// mesh's (`cp`): after it, so the mesh's revision has taken what
    /// revisions share (the ingress gateway moves with `revision`, in
    /// place, as in Istio's canary guide) before a kept install, which
    /// renders none of it, prunes; a kept revision's uninstall then leaves
    /// it.
    fn kept_control_planes(
        &mut self,
        p: &Cluster,
        remotes: &[&Cluster],
        cp: &str,
        cp_after: Option<&String>,
    ) -> Result<(), GraphError> {
        for k in &self.mesh.mesh.keep_revisions {
            let id = named_step_id(&p.name, StepKind::InstallControlPlane, &k.name);
            let kept = self.add_as(
                p,
                id,
                StepInput::InstallControlPlane(install_control_plane::Input {
                    mesh_id: self.mesh.mesh.id.clone(),
                    cluster: p.name.clone(),
                    network: p.network.clone(),
                    revision: revision_input(&k.name),
                    external_istiod: !remotes.is_empty(),
                    istio_version: k.istio_version.clone(),
                    values: p.values.clone(),
                    istioctl: Some(k.istioctl.clone()),
                    multi_root: false,
                    xds_agent: false,
                    ambient: None,
                }),
            )?;
            self.b.depend(&kept, cp);
            if let Some(after) = cp_after {
                self.b.depend(&kept, after);
            }
        }
        Ok(())
    }

    /// What the remotes and the other networks reach a primary through:
    /// the east-west gateway, its address, istiod and services exposed.
    fn primary_gateways(
        &mut self,
        p: &Cluster,
        remotes: &[&Cluster],
        cp: &str,
    ) -> Result<(), GraphError> {
        let (revision, version) = (&self.mesh.mesh.revision, &self.mesh.mesh.istio_version);
        let multi_network = self.multi_network;
        // A primary alone on one network needs no east-west gateway, no
        // address wait, and no istiod exposed on a public load balancer.
        if remotes.is_empty() && !multi_network {
            return Ok(());
        }
        let ew = self.add(
            p,
            StepInput::InstallEastwestGateway(install_eastwest_gateway::Input {
                network: p.network.clone(),
                revision: revision.clone(),
                values: p.eastwest_values.clone(),
                istio_version: version.clone(),
            }),
        )?;
        self.b.depend(&ew, cp);
        if multi_network {
            let services = self.add(p, StepInput::ExposeServices(expose_services::Input {}))?;
            self.b.depend(&services, &ew);
        }
        if remotes.is_empty() {
            return Ok(());
        }
        let addr = self.add(
            p,
            StepInput::EastwestAddress(eastwest_address::Input {
                timeout_secs: EASTWEST_ADDRESS_TIMEOUT_SECS,
            }),
        )?;
        self.b.depend(&addr, &ew);
        let expose = self.add(
            p,
            StepInput::ExposeIstiod(expose_istiod::Input {
                revision: revision.clone(),
                kept: self
                    .mesh
                    .mesh
                    .keep_revisions
                    .iter()
                    .map(|k| k.name.clone())
                    .collect(),
            }),
        )?;
        self.b.depend(&expose, &ew);
        Ok(())
    }

    /// An ambient primary's own steps besides its namespace, CA and control
    /// plane (Istio's ambient multicluster guide): the Gateway API CRDs,
    /// before istiod so that it watches them from the start, and on several
    /// networks the ambient east-west gateway. No classic east-west gateway
    /// and nothing exposed through it: ambient workloads cross networks
    /// through the ambient gateway alone, and there are no remotes.
    fn ambient_primary(&mut self, p: &Cluster, cp: &str) -> Result<(), GraphError> {
        let crds = self.add(
            p,
            StepInput::GatewayApiCrds(gateway_api_crds::Input {
                bundle_version: gateway_api_crds::BUNDLE_VERSION.to_string(),
            }),
        )?;
        self.b.depend(cp, &crds);
        // First in the cluster: CRDs another tool installed at another
        // release refuse the step before anything of the cluster changes.
        self.b
            .depend(step_id(&p.name, StepKind::PrepareNamespace), &crds);
        if self.multi_network {
            let ew = self.add(
                p,
                StepInput::AmbientEastwestGateway(ambient_eastwest_gateway::Input {
                    network: p.network.clone(),
                    revision: self.mesh.mesh.revision.clone(),
                }),
            )?;
            self.b.depend(&ew, cp);
            self.b.depend(&ew, &crds);
        }
        Ok(())
    }

    /// A remote's steps: its namespace, the remote profile pointing at its
    /// primary, its own east-west gateway when it is on another network,
    /// and its remote secret in the primary (`R/attach`).
    fn remote(&mut self, r: &Cluster, p: &Cluster) -> Result<(), GraphError> {
        let (revision, version) = (&self.mesh.mesh.revision, &self.mesh.mesh.istio_version);
        let multi_network = self.multi_network;
        let rprep = self.add(
            r,
            StepInput::PrepareNamespace(prepare_namespace::Input {
                primary: Some(p.name.clone()),
                network: multi_network.then(|| r.network.clone()),
            }),
        )?;
        let remote = self.add(
            r,
            StepInput::InstallRemote(install_remote::Input {
                cluster: r.name.clone(),
                network: r.network.clone(),
                primary: p.name.clone(),
                revision: revision.clone(),
                values: r.values.clone(),
                istio_version: version.clone(),
                multi_network,
                istioctl: None,
            }),
        )?;
        self.b.depend(&remote, &rprep);
        self.b
            .depend(&remote, step_id(&p.name, StepKind::EastwestAddress));
        self.b
            .depend(&remote, step_id(&p.name, StepKind::ExposeIstiod));
        // Each kept revision's remote profile, by its own istioctl, before
        // the mesh's: a remote profile shares no gateway, and its CRDs
        // are left to the mesh's, which runs last.
        for k in &self.mesh.mesh.keep_revisions {
            let id = named_step_id(&r.name, StepKind::InstallRemote, &k.name);
            let kept = self.add_as(
                r,
                id,
                StepInput::InstallRemote(install_remote::Input {
                    cluster: r.name.clone(),
                    network: r.network.clone(),
                    primary: p.name.clone(),
                    revision: revision_input(&k.name),
                    values: r.values.clone(),
                    istio_version: k.istio_version.clone(),
                    multi_network,
                    istioctl: Some(k.istioctl.clone()),
                }),
            )?;
            self.b.depend(&remote, &kept);
            self.b.depend(&kept, &rprep);
            self.b
                .depend(&kept, step_id(&p.name, StepKind::EastwestAddress));
            self.b
                .depend(&kept, step_id(&p.name, StepKind::ExposeIstiod));
        }
        // The Secret is written in the primary; reading the token needs R.
        let attach = step_id(&r.name, StepKind::Attach);
        self.b.add(Step {
            id: attach.clone(),
            cluster: r.name.clone(),
            target: self.target(p),
            input: StepInput::Attach(attach_input(r, p, &self.target(r))),
        })?;
        self.b.depend(&attach, &remote);
        self.b
            .depend(&attach, step_id(&p.name, StepKind::InstallControlPlane));
        // A remote on another network than its primary's has its own
        // east-west gateway, for its network's traffic. After `attach`, as
        // Istio's guide orders it: the primary's istiod can verify the
        // gateway pod's token (and so sign its certificate) only once it
        // reads the remote through its remote secret.
        if r.network != p.network {
            let rew = self.add(
                r,
                StepInput::InstallEastwestGateway(install_eastwest_gateway::Input {
                    network: r.network.clone(),
                    revision: revision.clone(),
                    values: r.eastwest_values.clone(),
                    istio_version: version.clone(),
                }),
            )?;
            self.b.depend(&rew, &remote);
            self.b.depend(&rew, &attach);
        }
        Ok(())
    }

    /// Several primaries: every control plane discovers every other cluster
    /// of the mesh, so each holds a remote secret for every cluster that is
    /// neither itself nor one of its own remotes (`C/attach@Q`).
    fn cross_attach(&mut self) -> Result<(), GraphError> {
        let mesh = self.mesh;
        for q in mesh.primaries() {
            for c in &mesh.clusters {
                if c.name == q.name || c.primary.as_deref() == Some(q.name.as_str()) {
                    continue;
                }
                let id = attach_id(&c.name, &q.name);
                self.b.add(Step {
                    id: id.clone(),
                    cluster: c.name.clone(),
                    target: self.target(q),
                    input: StepInput::Attach(attach_input(c, q, &self.target(c))),
                })?;
                self.b
                    .depend(&id, step_id(&q.name, StepKind::InstallControlPlane));
                let ready = match c.role {
                    Role::Primary => StepKind::InstallControlPlane,
                    Role::Remote => StepKind::InstallRemote,
                };
                self.b.depend(&id, step_id(&c.name, ready));
            }
        }
        Ok(())
    }
}

impl Compiler<'_> {
    /// `[tags]`: each tag on every cluster where injection happens
    /// (primaries and remotes), after the install of the revision it
    /// points at on that cluster.
    fn tags(&mut self) -> Result<(), GraphError> {
        let mesh = self.mesh;
        for (tag, rev) in &mesh.tags {
            let kept = mesh.mesh.keep_revisions.iter().find(|k| &k.name == rev);
            for c in &mesh.clusters {
                let install = match c.role {
                    Role::Primary => StepKind::InstallControlPlane,
                    Role::Remote => StepKind::InstallRemote,
                };
                let after = match kept {
                    Some(k) => named_step_id(&c.name, install, &k.name),
                    None => step_id(&c.name, install),
                };
                let id = named_step_id(&c.name, StepKind::RevisionTag, tag);
                let id = self.add_as(
                    c,
                    id,
                    StepInput::RevisionTag(revision_tag::Input {
                        tag: tag.clone(),
                        revision: rev.clone(),
                        istioctl: kept.map(|k| k.istioctl.clone()),
                    }),
                )?;
                self.b.depend(&id, after);
                // Every install without a revision re-points `default`
                // (Istio's installer): the tag is set after them.
                if tag == "default" {
                    if mesh.mesh.revision.as_deref().is_none_or(|r| r == "default") {
                        self.b.depend(&id, step_id(&c.name, install));
                    }
                    if mesh.mesh.keep_revisions.iter().any(|k| k.name == "default") {
                        self.b
                            .depend(&id, named_step_id(&c.name, install, "default"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// `C/attach@Q`: C's remote secret in primary Q (not C's own primary).
pub fn attach_id(cluster: &str, primary: &str) -> String {
    format!("{}@{primary}", step_id(cluster, StepKind::Attach))
}

/// The remote secret of cluster `c` (reached through `c_target`) in primary `p`.
fn attach_input(c: &Cluster, p: &Cluster, c_target: &Target) -> attach::Input {
    attach::Input {
        remote: c.name.clone(),
        remote_context: c.context.clone(),
        primary: p.name.clone(),
        api_server: c.api_server.clone(),
        remote_kubeconfig: c_target.kubeconfig.clone(),
        reader: attach::Reader::from_values(&c.values),
    }
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
                keep_revisions: Vec::new(),
                dataplane: Default::default(),
            },
            istioctl: Default::default(),
            state: Default::default(),
            trust: None,
            policy: Default::default(),
            credentials: Default::default(),
            tags: Default::default(),
            clusters,
            warnings: Vec::new(),
        }
    }

    fn on(mut c: Cluster, network: &str) -> Cluster {
        c.network = network.into();
        c
    }

    fn with_trust(mut m: MeshFile) -> MeshFile {
        let (cert, _) = providers::ca::new_root("test").unwrap();
        m.trust = Some(crate::config::TrustSection {
            root_cert: "/tmp/m/certs/root-cert.pem".into(),
            root_key: "/tmp/m/certs/root-key.pem".into(),
            intermediate_days: 365,
            root_cert_pem: cert,
            spans: (0..0, 0..0),
        });
        m
    }

    fn deps(g: &StepGraph, id: &str) -> Vec<String> {
        let mut d: Vec<String> = g.dependencies(id).into_iter().map(String::from).collect();
        d.sort();
        d
    }

    /// Primary-remote on two networks (Istio's second procedure).
    #[test]
    fn primary_remote_on_two_networks() {
        let g = compile(&mesh(vec![
            on(cluster("cluster1", Role::Primary, None), "network1"),
            on(
                cluster("cluster2", Role::Remote, Some("cluster1")),
                "network2",
            ),
        ]))
        .unwrap();
        for id in [
            "cluster1/prepare-namespace",
            "cluster1/expose-services",
            "cluster2/install-eastwest-gateway",
        ] {
            assert!(g.contains(id), "{id} missing");
        }
        assert!(!g.contains("cluster1/plug-ca"), "no [trust], no plug-ca");
        assert_eq!(
            deps(&g, "cluster1/install-control-plane"),
            ["cluster1/prepare-namespace"]
        );
        // After the remote secret: istiod verifies the gateway pod's token
        // through it.
        assert_eq!(
            deps(&g, "cluster2/install-eastwest-gateway"),
            ["cluster2/attach", "cluster2/install-remote"]
        );
        match &g.get("cluster2/install-eastwest-gateway").unwrap().input {
            StepInput::InstallEastwestGateway(i) => assert_eq!(i.network, "network2"),
            other => panic!("{other:?}"),
        }
        match &g.get("cluster2/prepare-namespace").unwrap().input {
            StepInput::PrepareNamespace(i) => {
                assert_eq!(i.network.as_deref(), Some("network2"));
                assert_eq!(i.primary.as_deref(), Some("cluster1"));
            }
            other => panic!("{other:?}"),
        }
        match &g.get("cluster2/install-remote").unwrap().input {
            StepInput::InstallRemote(i) => assert!(i.multi_network),
            other => panic!("{other:?}"),
        }
    }

    /// The executor's per-cluster limit sees `C/attach@P` in both C and P
    /// (it reads from one and writes to the other); other steps in their own.
    #[test]
    fn a_step_that_writes_to_another_cluster_is_grouped_with_both() {
        let g = compile(&with_trust(mesh(vec![
            cluster("cluster1", Role::Primary, None),
            cluster("cluster2", Role::Primary, None),
            cluster("cluster3", Role::Remote, Some("cluster1")),
        ])))
        .unwrap();
        let plan = crate::planner::plan("mesh1", &g, None, None, crate::planner::Mode::Converge);
        let tasks = crate::apply::tasks(&plan, &g);
        let groups = |id: &str| {
            tasks
                .iter()
                .find(|t| t.id == id)
                .unwrap_or_else(|| panic!("{id}"))
                .groups
                .clone()
        };
        assert_eq!(groups("cluster3/attach"), ["cluster3", "cluster1"]);
        assert_eq!(groups("cluster3/attach@cluster2"), ["cluster3", "cluster2"]);
        assert_eq!(groups("cluster1/attach@cluster2"), ["cluster1", "cluster2"]);
        assert_eq!(groups("cluster3/install-remote"), ["cluster3"]);
        assert_eq!(tasks.len(), g.len());
    }

    /// Multi-primary on one network: both trust one root, each discovers the other.
    #[test]
    fn multi_primary_has_plug_ca_and_cross_attach() {
        let g = compile(&with_trust(mesh(vec![
            cluster("cluster1", Role::Primary, None),
            cluster("cluster2", Role::Primary, None),
        ])))
        .unwrap();
        let mut ids: Vec<&str> = g.in_order().map(|s| s.id.as_str()).collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                "cluster1/attach@cluster2",
                "cluster1/install-control-plane",
                "cluster1/plug-ca",
                "cluster1/prepare-namespace",
                "cluster2/attach@cluster1",
                "cluster2/install-control-plane",
                "cluster2/plug-ca",
                "cluster2/prepare-namespace",
            ]
        );
        assert_eq!(
            deps(&g, "cluster1/install-control-plane"),
            ["cluster1/plug-ca"]
        );
        assert_eq!(deps(&g, "cluster1/plug-ca"), ["cluster1/prepare-namespace"]);
        assert_eq!(
            deps(&g, "cluster2/attach@cluster1"),
            [
                "cluster1/install-control-plane",
                "cluster2/install-control-plane"
            ]
        );
        // The Secret of cluster2 lives in cluster1.
        assert_eq!(
            g.get("cluster2/attach@cluster1").unwrap().target.context,
            "kind-cluster1"
        );
    }

    /// A mixed fleet: two primaries on two networks, each with a remote;
    /// every control plane holds a secret for every cluster not its own.
    #[test]
    fn a_mixed_fleet_attaches_every_cluster_to_every_other_control_plane() {
        let g = compile(&with_trust(mesh(vec![
            on(cluster("p1", Role::Primary, None), "n1"),
            on(cluster("r1", Role::Remote, Some("p1")), "n1"),
            on(cluster("p2", Role::Primary, None), "n2"),
            on(cluster("r2", Role::Remote, Some("p2")), "n2"),
        ])))
        .unwrap();
        let attaches: Vec<&str> = g
            .in_order()
            .filter(|s| s.kind() == StepKind::Attach)
            .map(|s| s.id.as_str())
            .collect();
        let mut sorted = attaches.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "p1/attach@p2",
                "p2/attach@p1",
                "r1/attach",
                "r1/attach@p2",
                "r2/attach",
                "r2/attach@p1"
            ]
        );
        assert_eq!(
            deps(&g, "r1/attach@p2"),
            ["p2/install-control-plane", "r1/install-remote"]
        );
        // Remotes on their primary's network have no gateway of their own.
        assert!(!g.contains("r1/install-eastwest-gateway"));
        assert!(g.contains("p1/expose-services") && g.contains("p2/expose-services"));
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
        // (docs/mesh-toml.md, topologies; one network, no remotes).
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
        // Each primary's 4 steps, each remote's 3, and in each of the 3
        // control planes a secret for the 12 clusters not its own.
        assert_eq!(g.len(), 3 * 4 + 15 * 3 + 3 * 12);
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
