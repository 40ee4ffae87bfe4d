//! `kubesim serve --dir DIR --clusters a,b[,…]`: serve simulated clusters
//! until interrupted, saving them to DIR. `kubesim istioctl …`: the
//! simulated istioctl.

use std::path::PathBuf;

fn usage() -> ! {
    eprintln!(
        "usage:\n  kubesim serve --dir DIR [--clusters a,b,…] [--lb-delay-ms N]\n  kubesim istioctl ARGS…\n\n\
         kubesim is a Kubernetes API simulator for mesh's tests and sandbox; it is not Kubernetes."
    );
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("istioctl") => std::process::exit(kubesim::istioctl::main(
            args[1..].to_vec(),
            std::io::stdin(),
        )),
        Some("serve") => {}
        _ => usage(),
    }
    let mut dir: Option<PathBuf> = None;
    let mut clusters: Vec<String> = Vec::new();
    let mut options = kubesim::Options::default();
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = it.next().map(PathBuf::from),
            "--clusters" => {
                clusters = it
                    .next()
                    .map(|c| {
                        c.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default()
            }
            "--lb-delay-ms" => {
                options.lb_delay = std::time::Duration::from_millis(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage()),
                )
            }
            _ => usage(),
        }
    }
    let Some(dir) = dir else { usage() };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let code = runtime.block_on(async {
        let names: Vec<&str> = clusters.iter().map(String::as_str).collect();
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
