//! The world a command acts on: real clusters through kubeconfig contexts
//! and istioctl, or, with `--sandbox DIR`, simulated ones kept in DIR.

use crate::cli::{Cli, Command};
use crate::progress::View;
use anyhow::Result;
use engine::config::MeshFile;
use engine::topology::StepGraph;
use providers::StepKind;
use providers::cluster::Clusters;
use providers::env::{Env, Fleet};
use providers::istioctl::Istioctl;
use std::path::PathBuf;
use std::sync::Arc;

pub struct World {
    pub env: Arc<Env>,
    kubeconfig: Option<PathBuf>,
    sandbox: Option<crate::sandbox::Sandbox>,
}

impl World {
    pub async fn open(cli: &Cli, mesh: &MeshFile, view: Arc<View>) -> Result<World> {
        let (kubeconfig, mut istioctl, sandbox) = match &cli.sandbox {
            Some(dir) => {
                let sb = crate::sandbox::Sandbox::open(dir, mesh).await?;
                let mut istioctl = sb.istioctl()?;
                // The simulator stands in for `[istioctl] path` too: it says
                // the version that path names (`…/istio-1.29.0/bin/istioctl`).
                if let Some(path) = &mesh.istioctl.path {
                    istioctl = istioctl.with_program(path);
                }
                (Some(sb.kubeconfig()), istioctl, Some(sb))
            }
            None => {
                let program = crate::programs::istioctl(mesh);
                (cli.kubeconfig.clone(), Istioctl::new(program), None)
            }
        };
        istioctl.readiness_timeout = mesh.istioctl.readiness_timeout;
        istioctl.timeout = mesh.istioctl.timeout;
        let mut env = Env::new(
            Clusters::new(kubeconfig.clone()),
            istioctl,
            kubeconfig.clone(),
        );
        env.progress = Arc::new(move |step, what| view.say(step, what));
        env.rotate_after = mesh.credentials.rotate_after;
        env.sync_timeout = mesh.credentials.sync_timeout;
        Ok(World {
            env: Arc::new(env),
            kubeconfig,
            sandbox,
        })
    }

    /// Whether this world runs programs (istioctl) rather than the
    /// sandbox's simulator.
    pub fn runs_programs(&self) -> bool {
        self.sandbox.is_none()
    }

    /// Tells the steps the mesh file's clusters and which control planes
    /// hold whose remote secret ([`Fleet`]): an `attach` revokes the token
    /// the links shared only once no other holder uses it, and destroys a
    /// link's token through its cluster's own kubeconfig.
    pub fn with_fleet(mut self, graph: &StepGraph) -> World {
        let mut fleet = Fleet::default();
        for step in graph.in_order() {
            fleet
                .targets
                .entry(step.target.cluster.clone())
                .or_insert_with(|| step.target.clone());
            if step.kind() == StepKind::Attach {
                fleet
                    .holders
                    .entry(step.cluster.clone())
                    .or_default()
                    .push(step.target.clone());
            }
        }
        match Arc::get_mut(&mut self.env) {
            Some(env) => env.fleet = fleet,
            None => unreachable!("the world's Env is not shared before the command runs"),
        }
        self
    }

    /// The kubeconfig for clusters without their own `kubeconfig` key.
    pub fn default_kubeconfig(&self) -> Option<PathBuf> {
        self.kubeconfig.clone()
    }

    /// Whether clusters reach each other's API servers on loopback: only in
    /// the sandbox, whose simulated clusters all live there.
    pub fn loopback_reachable(&self) -> bool {
        self.sandbox.is_some()
    }

    /// Makes what the clusters did so far durable before the state records
    /// it. Real clusters are durable already; the sandbox saves its clusters.
    pub fn before_record(&self) -> Result<(), String> {
        match &self.sandbox {
            Some(sb) => sb.flush().map_err(|e| format!("{e:#}")),
            None => Ok(()),
        }
    }

    /// Runs `body` in this world, then closes it, whatever `body` returned:
    /// the one place a command's world is closed.
    pub async fn run<T>(self, body: impl AsyncFnOnce(&World) -> Result<T>) -> Result<T> {
        let result = body(&self).await;
        self.close().await;
        result
    }

    /// Stops the sandbox's simulated clusters (saving them) if this command
    /// started them.
    async fn close(self) {
        if let Some(sb) = self.sandbox {
            sb.close().await;
        }
    }
}

/// With `--sandbox DIR`, serves its clusters for the whole command when the
/// command reads them or keeps the state in one (`[state] backend =
/// "kubernetes"`): the backend connects before any world is opened, and
/// lets go of its lock after the world is closed. Keep the guard until the
/// command has returned.
pub fn host_sandbox(cli: &Cli) -> Result<Option<crate::sandbox::Host>> {
    let Some(dir) = &cli.sandbox else {
        return Ok(None);
    };
    let reads_clusters = match &cli.command {
        Command::Plan(args) => !args.no_refresh,
        Command::Apply(_) | Command::Destroy(_) | Command::Import { .. } => true,
        Command::Show(_)
        | Command::State(_)
        | Command::Output { .. }
        | Command::ForceUnlock { .. } => false,
        _ => return Ok(None),
    };
    // A mesh file that does not load is the command's to report.
    let Ok(mesh) = engine::config::load(&cli.file) else {
        return Ok(None);
    };
    let state_in_cluster = cli.state.is_none() && mesh.state.kubernetes.is_some();
    if !reads_clusters && !state_in_cluster {
        return Ok(None);
    }
    crate::sandbox::Host::start(dir, &mesh)
}
