//! One function per command. Each loads what it needs (mesh file, state),
//! calls the engine, and prints; the exit code is returned, errors bubble up.
//!
//! This file dispatches, and runs the commands short enough to fit in the
//! match. What the commands share (the mesh file, the state's backend, plan
//! rendering) lives in modules below them, so no command module imports
//! this one and imports point one way.

mod apply;
mod check;
mod init;
mod inspect;
mod plan;
mod sandbox;

use crate::cli::{CaCommand, Cli, Command, SandboxCommand};
use crate::mesh_file::{load_graph, load_mesh};
use crate::output::Output;
use crate::store::backend;
use anyhow::{Context, Result};
use engine::topology;

pub fn run(cli: &Cli, out: &Output) -> Result<u8> {
    // The sandbox folder may also hold the state (`--state DIR/…`), which is
    // locked before the sandbox starts: make sure the folder is there.
    if let Some(dir) = &cli.sandbox
        && !matches!(
            cli.command,
            Command::SandboxIstioctl { .. } | Command::Init { .. }
        )
    {
        // 0700: the folder holds the clusters' CA keys and admin tokens.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .with_context(|| format!("creating the sandbox folder {}", dir.display()))?;
    }
    let _sandbox = crate::world::host_sandbox(cli)?;
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
        Command::Init {
            contexts,
            force,
            offline,
        } => init::init(cli, contexts, *force, *offline),
        Command::Sandbox(SandboxCommand::Serve) => sandbox::serve(cli),
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
        Command::Check(args) => check::check(cli, args),
        Command::Diff(args) => plan::diff(cli, args, out),
        Command::Apply(args) => apply::apply(cli, args, out),
        Command::Import { force, lock } => apply::import(cli, *force, lock.lock_timeout),
        Command::Destroy(args) => apply::destroy(cli, args, out),
        Command::Show(args) => inspect::show(cli, args, out),
        Command::State(cmd) => inspect::state(cli, cmd),
        Command::ForceUnlock { lock_id, force } => {
            let backend = backend(cli, None)?;
            if !force && !confirm_force_unlock(lock_id, &backend.location())? {
                crate::errln!("Force-unlock cancelled: the lock is as it was.");
                return Ok(1);
            }
            crate::errln!(
                "Checking that the holder of lock {} on {} is gone (a live holder keeps its lock; \
                 a Lease is watched for a renewal, up to its renewal interval)…",
                providers::rendered::shown(lock_id),
                backend.location()
            );
            backend.force_unlock(lock_id)?;
            crate::errln!("Lock {lock_id} on {} cleared.", backend.location());
            Ok(0)
        }
        Command::SandboxIstioctl { args } => Ok(sandbox::istioctl(args)),
    }
}

/// Asks for `yes` before a force-unlock, as Terraform does; without a
/// terminal, `--force` is required.
fn confirm_force_unlock(lock_id: &str, location: &str) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "force-unlock needs confirmation, but there is no terminal to ask on: pass --force \
             (only when the lock's holder is gone: if it still runs, two commands may change the \
             clusters at once)"
        );
    }
    crate::err!(
        "Do you really want to force-unlock lock {} on {location}? If its holder still runs, two \
         commands may change the clusters at once. Only 'yes' will be accepted: ",
        providers::rendered::shown(lock_id)
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}
