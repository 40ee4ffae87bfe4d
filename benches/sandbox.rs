//! Apply at scale on simulated clusters: `cargo bench --bench sandbox`.
//!
//! One primary with 50 remotes (154 steps) on kubesim, with simulated
//! install times D (istioctl D, load balancer D; D = 2 s by default,
//! `MESH_BENCH_DELAY_MS` to change it), applied with mesh's default limits
//! (`MESH_BENCH_PARALLELISM=N` passes `--parallelism N` instead). The
//! critical path is the longest chain of simulated delays:
//! install-control-plane (D) → install-eastwest-gateway (D) →
//! eastwest-address (D) → install-remote (D) → attach = 4 D. Also
//! reported: API requests per step, and the time of a refresh of the 151
//! recorded steps (`mesh plan`).

use kubesim::{ClusterSet, LbMode, Options};
use std::process::Command;
use std::time::{Duration, Instant};

const REMOTES: usize = 50;

fn main() {
    let delay_ms: u64 = std::env::var("MESH_BENCH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::from(
        "[mesh]\nid = \"bench\"\n\n[[cluster]]\nname = \"p\"\ncontext = \"ctx-p\"\nnetwork = \"n1\"\nrole = \"primary\"\n",
    );
    let mut contexts = vec!["ctx-p".to_string()];
    for r in 0..REMOTES {
        toml.push_str(&format!("\n[[cluster]]\nname = \"r{r}\"\ncontext = \"ctx-r{r}\"\nnetwork = \"n1\"\nrole = \"remote\"\nprimary = \"p\"\n"));
        contexts.push(format!("ctx-r{r}"));
    }
    std::fs::write(dir.path().join("mesh.toml"), &toml).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let refs: Vec<&str> = contexts.iter().map(String::as_str).collect();
    let set = rt
        .block_on(ClusterSet::open(
            &dir.path().join("sandbox"),
            &refs,
            Options {
                lb_delay: Duration::from_millis(delay_ms),
                lb_mode: LbMode::Ip,
            },
        ))
        .unwrap();
    let mesh = |args: &[&str]| {
        let t0 = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .current_dir(dir.path())
            .env("KUBESIM_ISTIOCTL_DELAY_MS", delay_ms.to_string())
            .env("NO_COLOR", "1")
            .args(["--sandbox", "sandbox"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t0.elapsed()
    };
    let parallelism = std::env::var("MESH_BENCH_PARALLELISM").ok();
    let mut args = vec!["apply", "--auto-approve"];
    if let Some(p) = &parallelism {
        args.extend(["--parallelism", p.as_str()]);
    }
    let limits = match &parallelism {
        Some(p) => format!("--parallelism {p}"),
        None => "the default limits (--parallelism 64, --cluster-parallelism 4)".into(),
    };
    let apply = mesh(&args);
    let critical = Duration::from_millis(4 * delay_ms);
    let requests: usize = set.clusters().map(|c| c.requests().len()).sum();
    let steps = 4 + 3 * REMOTES;
    println!(
        "apply of {steps} steps at {limits}: {:.2} s; critical path {:.2} s; ratio {:.3} (target <= 1.1)",
        apply.as_secs_f64(),
        critical.as_secs_f64(),
        apply.as_secs_f64() / critical.as_secs_f64()
    );
    println!(
        "API requests during apply: {requests} ({:.1} per step, mesh and the simulated istioctl together)",
        requests as f64 / steps as f64
    );
    for c in set.clusters() {
        c.clear_requests();
    }
    let mut refreshes = Vec::new();
    for _ in 0..5 {
        refreshes.push(mesh(&["plan", "--detailed-exitcode"]));
    }
    refreshes.sort();
    let requests: usize = set.clusters().map(|c| c.requests().len()).sum();
    println!(
        "plan with refresh of {steps} recorded steps: median {:.0} ms (whole command); {:.1} API requests per step",
        refreshes[2].as_secs_f64() * 1000.0,
        requests as f64 / 5.0 / steps as f64
    );
    rt.block_on(set.shutdown());
}
