//! `kubesim serve --dir DIR --clusters a,b[,…]`: serve simulated clusters
//! until interrupted, saving them to DIR. `kubesim istioctl …`: the
//! simulated istioctl.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "kubesim",
    version,
    about = "A Kubernetes API simulator for mesh's tests and sandbox. It is not Kubernetes: \
             see tests/kubesim/README.md for what it models and what it does not."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve simulated clusters over HTTPS on 127.0.0.1 until interrupted.
    ///
    /// Each cluster gets its own port, CA and admin token; DIR/kubeconfig
    /// has one context per cluster (named as the cluster). Clusters already
    /// saved in DIR come back with their objects and addresses. mesh
    /// --sandbox DIR uses these servers while they run, so kubectl can watch
    /// an apply. Stop with Ctrl-C or SIGTERM: everything is saved to DIR.
    #[command(
        after_help = "Example:\n  kubesim serve --dir sandbox --clusters kind-cluster1,kind-cluster2\n  \
        KUBECONFIG=sandbox/kubeconfig kubectl --context kind-cluster1 get svc -A"
    )]
    Serve {
        /// The folder the clusters are saved in (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Cluster (context) names to create if DIR does not have them yet.
        #[arg(long, value_name = "A,B,…", value_delimiter = ',')]
        clusters: Vec<String>,
        /// How long the simulated load balancer takes to give a Service of
        /// type LoadBalancer its address.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        lb_delay_ms: u64,
    },
    /// The simulated istioctl (install, uninstall, version), as mesh runs it.
    #[command(trailing_var_arg = true)]
    Istioctl {
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let (dir, clusters, lb_delay_ms) = match cli.command {
        Command::Istioctl { args } => {
            std::process::exit(kubesim::istioctl::main(args, std::io::stdin()))
        }
        Command::Serve {
            dir,
            clusters,
            lb_delay_ms,
        } => (dir, clusters, lb_delay_ms),
    };
    let options = kubesim::Options {
        lb_delay: std::time::Duration::from_millis(lb_delay_ms),
        ..Default::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let code = runtime.block_on(async {
        // `--clusters ""` names none (a restart serves the saved ones).
        let names: Vec<&str> = clusters
            .iter()
            .map(String::as_str)
            .filter(|c| !c.is_empty())
            .collect();
        let set = match kubesim::ClusterSet::open(&dir, &names, options).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kubesim: {e:#}");
                return 1;
            }
        };
        for c in set.clusters() {
            println!("cluster {} at {}", c.name, c.server());
        }
        println!("kubeconfig: {}", set.kubeconfig_path().display());
        println!("serving simulated clusters until interrupted (Ctrl-C)");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        set.shutdown().await;
        0
    });
    std::process::exit(code);
}
