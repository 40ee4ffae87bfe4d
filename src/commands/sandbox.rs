//! `mesh sandbox serve` and the hidden `mesh __sandbox-istioctl`: the
//! commands that run the sandbox of `src/sandbox.rs` by themselves rather
//! than as the world of another command.

use crate::cli::Cli;
use crate::mesh_file::load_mesh;
use anyhow::{Context, Result, bail};

/// `mesh __sandbox-istioctl ARGS…`: the simulated istioctl, with stdin.
pub fn istioctl(args: &[String]) -> u8 {
    crate::sandbox::die_with_parent();
    let code = kubesim::istioctl::main(args.to_vec(), std::io::stdin());
    u8::try_from(code).unwrap_or(1)
}

/// `mesh --sandbox DIR sandbox serve`: serves the mesh file's simulated
/// clusters until Ctrl-C, for kubectl (and other mesh commands) to use.
pub fn serve(cli: &Cli) -> Result<u8> {
    let Some(dir) = &cli.sandbox else {
        bail!(
            "`mesh sandbox serve` needs --sandbox DIR: the folder the simulated clusters are kept in"
        );
    };
    let mesh = load_mesh(&cli.file)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let contexts: Vec<&str> = mesh.clusters.iter().map(|c| c.context.as_str()).collect();
        let set = crate::sandbox::start(dir, &contexts).await?;
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
