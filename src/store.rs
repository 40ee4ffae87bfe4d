//! Where the state is kept, from the flags, `--sandbox` and the mesh file's
//! `[state]` table. Shared by every command that reads or writes the state.

use crate::cli::Cli;
use anyhow::Result;
use engine::config::{self, MeshFile};
use std::path::{Path, PathBuf};

/// `--state` (or `$MESH_STATE`); else, with `--sandbox DIR`,
/// `DIR/mesh.state.json` (a sandbox never touches the real state); else the
/// mesh file's `[state] path` (relative to the file), else
/// `mesh.state.json` beside the mesh file.
fn state_path(cli: &Cli, mesh: Option<&MeshFile>) -> Result<PathBuf> {
    let path = chosen_state_path(cli, mesh)?;
    if cli.sandbox.is_none()
        && let Some(dir) = path.parent()
        && kubesim::ClusterSet::is_sandbox(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        anyhow::bail!(
            "the state {} belongs to the sandbox in {}: its steps were applied to simulated clusters. \
             Pass `--sandbox {}` to use it, or another state for real clusters",
            path.display(),
            shown_dir(dir),
            shown_dir(dir)
        );
    }
    Ok(path)
}
fn chosen_state_path(cli: &Cli, mesh: Option<&MeshFile>) -> Result<PathBuf> {
    if let Some(p) = &cli.state {
        return Ok(p.clone());
    }
    if let Some(dir) = &cli.sandbox {
        return Ok(dir.join("mesh.state.json"));
    }
    let dir = cli.file.parent().map(Path::to_path_buf).unwrap_or_default();
    let configured = match mesh {
        Some(m) => m.state.path.clone(),
        // Commands that do not need the mesh file still honour `[state] path`
        // when the file is there and valid.
        None => config::load(&cli.file).ok().and_then(|m| m.state.path),
    };
    Ok(dir.join(configured.as_deref().unwrap_or("mesh.state.json")))
}

/// Where the state is kept: the Kubernetes backend when the mesh file says
/// `[state] backend = "kubernetes"` (and no `--state` names a file), else
/// the local file of [`state_path`].
pub fn backend(cli: &Cli, mesh: Option<&MeshFile>) -> Result<Box<dyn state::Backend>> {
    let loaded;
    let mesh = match mesh {
        Some(m) => Some(m),
        None => {
            loaded = config::load(&cli.file).ok();
            loaded.as_ref()
        }
    };
    if cli.state.is_none()
        && let Some(k) = mesh.and_then(|m| m.state.kubernetes.as_ref())
    {
        let base = cli.file.parent().map(Path::to_path_buf).unwrap_or_default();
        let kubeconfig = k
            .kubeconfig
            .as_deref()
            .map(|p| base.join(p))
            .or_else(|| cli.kubeconfig.clone())
            .or_else(|| cli.sandbox.as_ref().map(|d| d.join("kubeconfig")));
        return Ok(Box::new(providers::state_store::KubernetesBackend::new(
            providers::state_store::Location {
                context: k.context.clone(),
                kubeconfig,
                namespace: k.namespace.clone(),
                name: k.name.clone(),
            },
        )));
    }
    Ok(Box::new(state::LocalBackend::new(state_path(cli, mesh)?)))
}

/// A state's folder for a message: `.` for the current one (a bare file
/// name's parent is empty).
fn shown_dir(dir: &Path) -> String {
    if dir.as_os_str().is_empty() {
        ".".into()
    } else {
        dir.display().to_string()
    }
}
