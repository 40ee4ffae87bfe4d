//! One function per command. Each loads what it needs (mesh file, state),
//! calls the engine, and prints; the exit code is returned, errors bubble up.

mod apply;
mod init;
mod inspect;
mod plan;

use crate::cli::{CaCommand, Cli, Command, Format, SandboxCommand};
use crate::output::Output;
use anyhow::{Context, Result};
use engine::config::{self, MeshFile};
use engine::topology::{self, StepGraph};
use std::path::{Path, PathBuf};

pub fn run(cli: &Cli, out: &Output) -> Result<u8> {
    // The sandbox folder may also hold the state (`--state DIR/…`), which is
    // locked before the sandbox starts: make sure the folder is there.
    if let Some(dir) = &cli.sandbox
        && !matches!(cli.command, Command::SandboxIstioctl { .. })
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the sandbox folder {}", dir.display()))?;
    }
    match &cli.command {
        Command::Validate => {
            let mesh = load_mesh(&cli.file)?;
            let graph = topology::compile(&mesh)?;
            // On stderr: stdout stays empty ("print nothing but errors"),
            // so scripts and pipes are unaffected.
            crate::errln!(
                "{} is valid: mesh `{}`, {} clusters, {} steps.",
                cli.file.display(),
                mesh.mesh.id,
                mesh.clusters.len(),
                graph.len()
            );
            Ok(0)
        }
        Command::Output { name, json } => inspect::output(cli, name.as_deref(), *json),
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a closed stdout.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "mesh", &mut script);
            crate::out!("{}", String::from_utf8_lossy(&script));
            Ok(0)
        }
        Command::Init { contexts, force } => init::init(cli, contexts, *force),
        Command::Sandbox(SandboxCommand::Serve) => crate::sandbox::serve(cli),
        Command::Ca(CaCommand::Init { dir }) => init::ca_init(cli, dir.as_deref()),
        Command::Graph => {
            let (mesh, graph) = load_graph(&cli.file)?;
            // One box per cluster, labelled with its role and network, so a
            // reviewer sees where each step runs.
            let dot = graph.to_dot_grouped(|step| {
                let c = mesh.cluster(&step.cluster)?;
                let role = match &c.primary {
                    None => "primary".to_string(),
                    Some(p) => format!("remote of {p}"),
                };
                Some((
                    c.name.clone(),
                    format!("{} ({role}, network {})", c.name, c.network),
                ))
            });
            crate::out!("{dot}");
            Ok(0)
        }
        Command::Plan(args) => plan::plan(cli, args, out),
        Command::Diff(args) => plan::diff(cli, args, out),
        Command::Apply(args) => apply::apply(cli, args, out),
        Command::Import { force, lock } => apply::import(cli, *force, lock.lock_timeout),
        Command::Destroy(args) => apply::destroy(cli, args, out),
        Command::Show(args) => inspect::show(cli, args, out),
        Command::State(cmd) => inspect::state(cli, cmd),
        Command::ForceUnlock { lock_id } => {
            let backend = backend(cli, None)?;
            backend.force_unlock(lock_id)?;
            crate::errln!("Lock {lock_id} on {} cleared.", backend.location());
            Ok(0)
        }
        Command::SandboxIstioctl { args } => Ok(crate::sandbox::istioctl(args)),
    }
}

/// Reads and validates the mesh file; diagnostics are returned as the error.
pub fn load_mesh(path: &Path) -> Result<MeshFile> {
    let mesh = config::load(path)?;
    for w in &mesh.warnings {
        crate::errln!("warning: {w}");
    }
    Ok(mesh)
}

pub fn load_graph(path: &Path) -> Result<(MeshFile, StepGraph)> {
    let mesh = load_mesh(path)?;
    let graph = topology::compile(&mesh)
        .with_context(|| format!("compiling the steps of {}", path.display()))?;
    Ok((mesh, graph))
}

/// `--state` (or `$MESH_STATE`); else, with `--sandbox DIR`,
/// `DIR/mesh.state.json` (a sandbox never touches the real state); else the
/// mesh file's `[state] path` (relative to the file), else
/// `mesh.state.json` beside the mesh file.
pub fn state_path(cli: &Cli, mesh: Option<&MeshFile>) -> Result<PathBuf> {
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
            dir.display(),
            dir.display()
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

/// The sha256 of the mesh file's bytes, for the saved plan's stale check.
pub fn mesh_file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(providers::sha256_hex(&bytes))
}

pub fn render_plan(plan: &plans::Plan, format: Format, out: &Output) -> String {
    match format {
        Format::Text => plans::render::text(
            plan,
            &plans::render::TextOptions {
                color: out.color_stdout,
            },
        ),
        Format::Markdown => plans::render::markdown(plan),
        Format::Json => plans::render::json(plan),
    }
}
