//! `--sandbox DIR`: simulated clusters (kubesim) kept in DIR, one per
//! `[[cluster]]`, reachable under the cluster's context through
//! `DIR/kubeconfig`, and the simulated istioctl, which mesh runs as itself
//! (`mesh __sandbox-istioctl …`) so no second binary has to be found.
//!
//! When `kubesim serve --dir DIR` already runs on DIR, mesh uses those
//! servers (so a user can watch with kubectl meanwhile); otherwise it starts
//! the clusters for the length of the command and saves them on the way out.

use anyhow::{Context, Result, bail};
use engine::config::MeshFile;
use providers::istioctl::Istioctl;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the simulated load balancer takes to give an address: like
/// MetalLB on kind, noticeable but short.
const LB_DELAY: Duration = Duration::from_millis(1000);
/// How long a simulated `istioctl install` takes, unless
/// `KUBESIM_ISTIOCTL_DELAY_MS` says otherwise.
const ISTIOCTL_DELAY_MS: &str = "300";

pub struct Sandbox {
    kubeconfig: PathBuf,
    /// The clusters this command started; None when `kubesim serve` runs them.
    started: Option<kubesim::ClusterSet>,
}

impl Sandbox {
    pub async fn open(dir: &Path, mesh: &MeshFile) -> Result<Sandbox> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the sandbox folder {}", dir.display()))?;
        let contexts: Vec<String> = mesh.clusters.iter().map(|c| c.context.clone()).collect();
        if let Some(running) = kubesim::ClusterSet::running_in(dir) {
            let missing: Vec<&String> = contexts
                .iter()
                .filter(|c| !running.contexts.contains(c))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "`kubesim serve` (pid {}) runs the sandbox in {} without the cluster(s) {}: \
                     stop it, or restart it with --clusters {}",
                    running.pid,
                    dir.display(),
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    contexts.join(",")
                );
            }
            return Ok(Sandbox {
                kubeconfig: dir.join("kubeconfig"),
                started: None,
            });
        }
        let options = kubesim::Options {
            lb_delay: LB_DELAY,
            ..Default::default()
        };
        let names: Vec<&str> = contexts.iter().map(String::as_str).collect();
        let set = kubesim::ClusterSet::open(dir, &names, options)
            .await
            .with_context(|| format!("starting the sandbox clusters in {}", dir.display()))?;
        Ok(Sandbox {
            kubeconfig: set.kubeconfig_path(),
            started: Some(set),
        })
    }

    /// Saves the simulated clusters this command runs, now: called before
    /// every state write, so a killed mesh never leaves a state that records
    /// more than the clusters kept (they would disagree after a restart).
    pub fn flush(&self) -> Result<()> {
        match &self.started {
            Some(set) => set.flush().context("saving the sandbox clusters"),
            None => Ok(()),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// The simulated istioctl: this very binary, through a hidden command.
    pub fn istioctl(&self) -> Result<Istioctl> {
        let exe = std::env::current_exe()
            .context("finding the mesh binary for the simulated istioctl")?;
        let mut i = Istioctl::new(exe);
        i.prefix = vec!["__sandbox-istioctl".into()];
        // The simulated istioctl dies with this mesh, as its clusters do
        // (see `die_with_parent`); a real istioctl is left to finish.
        i.env.push((
            "MESH_SANDBOX_PARENT".into(),
            std::process::id().to_string().into(),
        ));
        if std::env::var_os("KUBESIM_ISTIOCTL_DELAY_MS").is_none() {
            i.env
                .push(("KUBESIM_ISTIOCTL_DELAY_MS".into(), ISTIOCTL_DELAY_MS.into()));
        }
        Ok(i)
    }

    /// Saves and stops the clusters this command started.
    pub async fn close(self) {
        if let Some(set) = self.started {
            set.shutdown().await;
        }
    }
}

/// `mesh __sandbox-istioctl ARGS…`: the simulated istioctl, with stdin.
pub fn istioctl(args: &[String]) -> u8 {
    die_with_parent();
    let code = kubesim::istioctl::main(args.to_vec(), std::io::stdin());
    u8::try_from(code).unwrap_or(1)
}

/// Ends this simulated istioctl when the mesh that started it dies, however
/// it dies (Linux's parent-death signal). Asked for here rather than
/// between fork and exec in mesh, so that mesh starts it with posix_spawn:
/// forking a thousand-cluster apply costs milliseconds of page-table
/// copying per run.
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    if let Some(parent) = std::env::var("MESH_SANDBOX_PARENT")
        .ok()
        .and_then(|p| p.parse::<libc::pid_t>().ok())
    {
        // SAFETY: plain system calls; the name is a NUL-terminated static.
        unsafe {
            // Named so that `ps` and profilers tell it from mesh itself.
            libc::prctl(libc::PR_SET_NAME, c"istioctl-sim".as_ptr());
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before the signal was asked for.
            if libc::getppid() != parent {
                std::process::exit(1);
            }
        }
    }
}

/// `mesh --sandbox DIR sandbox serve`: serves the mesh file's simulated
/// clusters until Ctrl-C, for kubectl (and other mesh commands) to use.
pub fn serve(cli: &crate::cli::Cli) -> Result<u8> {
    let Some(dir) = &cli.sandbox else {
        bail!(
            "`mesh sandbox serve` needs --sandbox DIR: the folder the simulated clusters are kept in"
        );
    };
    let mesh = crate::commands::load_mesh(&cli.file)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let contexts: Vec<&str> = mesh.clusters.iter().map(|c| c.context.as_str()).collect();
        let set = kubesim::ClusterSet::open(
            dir,
            &contexts,
            kubesim::Options {
                lb_delay: LB_DELAY,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("starting the sandbox clusters in {}", dir.display()))?;
        for c in set.clusters() {
            crate::outln!("simulated cluster {} at {}", c.name, c.server());
        }
        crate::outln!(
            "Serving until Ctrl-C. Look with: KUBECONFIG={} kubectl --context {} get all -A",
            set.kubeconfig_path().display(),
            contexts.first().copied().unwrap_or("CONTEXT")
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing a SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        set.shutdown().await;
        crate::outln!("Saved the simulated clusters in {}.", dir.display());
        Ok(0)
    })
}
