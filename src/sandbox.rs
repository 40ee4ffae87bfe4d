//! `--sandbox DIR`: simulated clusters (kubesim) kept in DIR, one per
//! `[[cluster]]`, reachable under the cluster's context through
//! `DIR/kubeconfig`, and the simulated istioctl, which mesh runs as itself
//! (`mesh __sandbox-istioctl …`) so no second binary has to be found.
//!
//! When `kubesim serve --dir DIR` already runs on DIR, mesh uses those
//! servers (so a user can watch with kubectl meanwhile); otherwise it starts
//! the clusters for the length of the command ([`Host`], before the state
//! backend may connect to one) and saves them on the way out.
//!
//! The commands that run the sandbox by themselves (`sandbox serve`,
//! `__sandbox-istioctl`) are in `commands/sandbox.rs`; this module is what
//! they and `world.rs` share, and it depends on neither.

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

/// Starts the simulated clusters `contexts`, kept in `dir`: for one command
/// with `--sandbox DIR`, or for as long as `mesh sandbox serve` runs.
pub async fn start(dir: &Path, contexts: &[&str]) -> Result<kubesim::ClusterSet> {
    let options = kubesim::Options {
        lb_delay: LB_DELAY,
        ..Default::default()
    };
    kubesim::ClusterSet::open(dir, contexts, options)
        .await
        .with_context(|| format!("starting the sandbox clusters in {}", dir.display()))
}

pub struct Sandbox {
    kubeconfig: PathBuf,
    /// The clusters this command started; None when `kubesim serve` runs them.
    started: Option<kubesim::ClusterSet>,
    /// Saves the clusters a [`Host`] of this process serves.
    hosted: Option<kubesim::set::Flusher>,
}

/// The sandbox clusters a [`Host`] serves in this process, for
/// [`Sandbox::open`] to use rather than start them again.
struct Hosted {
    dir: PathBuf,
    kubeconfig: PathBuf,
    contexts: Vec<String>,
    flusher: kubesim::set::Flusher,
}

static HOSTED: std::sync::Mutex<Option<Hosted>> = std::sync::Mutex::new(None);

fn hosted() -> std::sync::MutexGuard<'static, Option<Hosted>> {
    HOSTED.lock().unwrap_or_else(|p| p.into_inner())
}

/// The simulated clusters of `--sandbox DIR`, served for the whole of one
/// command on a runtime of their own: started before anything connects to
/// them (the Kubernetes state backend locks its Lease in one before the
/// command's world exists), stopped and saved only when the guard is
/// dropped, after the state's lock is let go.
pub struct Host {
    set: Option<kubesim::ClusterSet>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Host {
    /// Starts the clusters of `mesh` in `dir`; None when another process
    /// (`kubesim serve`, `mesh sandbox serve`) serves them already.
    pub fn start(dir: &Path, mesh: &MeshFile) -> Result<Option<Host>> {
        if kubesim::ClusterSet::running_in(dir).is_some() {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("sandbox")
            .build()
            .context("starting the sandbox's runtime")?;
        let contexts: Vec<String> = mesh.clusters.iter().map(|c| c.context.clone()).collect();
        let names: Vec<&str> = contexts.iter().map(String::as_str).collect();
        let set = runtime.block_on(start(dir, &names))?;
        *hosted() = Some(Hosted {
            dir: dir.to_path_buf(),
            kubeconfig: set.kubeconfig_path(),
            contexts,
            flusher: set.flusher(),
        });
        Ok(Some(Host {
            set: Some(set),
            runtime: Some(runtime),
        }))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        hosted().take();
        if let (Some(set), Some(runtime)) = (self.set.take(), self.runtime.take()) {
            runtime.block_on(set.shutdown());
        }
    }
}

impl Sandbox {
    pub async fn open(dir: &Path, mesh: &MeshFile) -> Result<Sandbox> {
        // 0700: the folder holds the clusters' CA keys and admin tokens.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .with_context(|| format!("creating the sandbox folder {}", dir.display()))?;
        let contexts: Vec<String> = mesh.clusters.iter().map(|c| c.context.clone()).collect();
        if let Some(h) = hosted().as_ref()
            && h.dir == dir
            && contexts.iter().all(|c| h.contexts.contains(c))
        {
            return Ok(Sandbox {
                kubeconfig: h.kubeconfig.clone(),
                started: None,
                hosted: Some(h.flusher.clone()),
            });
        }
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
                hosted: None,
            });
        }
        let names: Vec<&str> = contexts.iter().map(String::as_str).collect();
        let set = start(dir, &names).await?;
        Ok(Sandbox {
            kubeconfig: set.kubeconfig_path(),
            started: Some(set),
            hosted: None,
        })
    }

    /// Saves the simulated clusters this command runs, now: called before
    /// every state write, so a killed mesh never leaves a state that records
    /// more than the clusters kept (they would disagree after a restart).
    pub fn flush(&self) -> Result<()> {
        match (&self.started, &self.hosted) {
            (Some(set), _) => set.flush().context("saving the sandbox clusters"),
            (None, Some(flusher)) => flusher.flush().context("saving the sandbox clusters"),
            (None, None) => Ok(()),
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

/// Ends this simulated istioctl when the mesh that started it dies, however
/// it dies (Linux's parent-death signal). Asked for here rather than
/// between fork and exec in mesh, so that mesh starts it with posix_spawn:
/// forking a thousand-cluster apply costs milliseconds of page-table
/// copying per run.
pub fn die_with_parent() {
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
