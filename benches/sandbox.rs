//! Apply at scale on simulated clusters: `cargo bench --bench sandbox`.
//!
//! One primary with 50 remotes (154 steps) on kubesim, with simulated
//! install times D (istioctl D, load balancer D; D = 2 s by default,
//! `MESH_BENCH_DELAY_MS` to change it), applied with mesh's default limits
//! (`MESH_BENCH_PARALLELISM=N` passes `--parallelism N` instead). The
//! critical path is the longest chain of simulated delays:
//! install-control-plane (D) → install-eastwest-gateway (D; the load
//! balancer's address comes D after the gateway's Service is made, so
//! eastwest-address adds nothing) → install-remote (D) → attach = 3 D
//! (4 D in a mixed fleet: a remote on another network then installs its
//! own gateway). Also
//! reported: API requests per step, the time of a refresh of the 151
//! recorded steps (`mesh plan`), and of a `mesh check` of the 51 clusters.

use kubesim::{ClusterSet, LbMode, Options};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REMOTES: usize = 50;

/// The mesh: 1 primary with 50 remotes, or with `MESH_BENCH_FLEET=PxRxN`
/// P primaries with R remotes each over N networks (primary p on network
/// p % N, its remote r on (p + r) % N), with the test root of trust.
fn fleet(dir: &std::path::Path) -> (String, Vec<String>, usize) {
    let spec = std::env::var("MESH_BENCH_FLEET").unwrap_or_else(|_| format!("1x{REMOTES}x1"));
    let n: Vec<usize> = spec.split('x').map(|v| v.parse().expect("PxRxN")).collect();
    let (primaries, remotes, networks) = (n[0], n[1], n[2]);
    let mut toml = String::from("[mesh]\nid = \"bench\"\n");
    if primaries > 1 {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trust");
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        for f in ["root-cert.pem", "root-key.pem"] {
            std::fs::copy(root.join(f), dir.join("certs").join(f)).unwrap();
            std::fs::set_permissions(
                dir.join("certs").join(f),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap();
        }
        toml.push_str(
            "\n[trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n",
        );
    }
    let mut contexts = Vec::new();
    let mut other_network = false;
    for p in 0..primaries {
        let pn = p % networks;
        toml.push_str(&format!("\n[[cluster]]\nname = \"p{p}\"\ncontext = \"ctx-p{p}\"\nnetwork = \"n{pn}\"\nrole = \"primary\"\n"));
        contexts.push(format!("ctx-p{p}"));
        for r in 0..remotes {
            let rn = (p + r) % networks;
            other_network |= rn != pn;
            toml.push_str(&format!("\n[[cluster]]\nname = \"p{p}r{r}\"\ncontext = \"ctx-p{p}r{r}\"\nnetwork = \"n{rn}\"\nrole = \"remote\"\nprimary = \"p{p}\"\n"));
            contexts.push(format!("ctx-p{p}r{r}"));
        }
    }
    // The longest chain of simulated delays: control plane, east-west
    // gateway (its address comes D after its Service is made, early in the
    // gateway's install, so about when the install ends), the remote
    // profile, and (a remote on another network) the remote's own gateway.
    (toml, contexts, if other_network { 4 } else { 3 })
}

fn main() {
    let delay_ms: u64 = std::env::var("MESH_BENCH_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let (toml, contexts, chain) = fleet(dir.path());
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
    // `MESH_BENCH_TIMELINE=FILE`: the apply's progress lines, each with the
    // seconds since the start, to see where a run waits.
    let timeline = std::env::var_os("MESH_BENCH_TIMELINE");
    let mesh = |args: &[&str]| {
        let t0 = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .current_dir(dir.path())
            .env("KUBESIM_ISTIOCTL_DELAY_MS", delay_ms.to_string())
            .env("NO_COLOR", "1")
            .args(["--sandbox", "sandbox"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The plan goes to stdout, progress ("…: created (5.0s)") to stderr.
        let stdout = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
        let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
            .lines()
            .map(|line| format!("{:8.3} {}", t0.elapsed().as_secs_f64(), line.unwrap()))
            .collect();
        let status = child.wait().unwrap();
        let elapsed = t0.elapsed();
        stdout.join().unwrap();
        assert!(status.success(), "{}", lines.join("\n"));
        if let Some(path) = &timeline
            && args[0] == "apply"
        {
            std::fs::write(path, lines.join("\n")).unwrap();
        }
        elapsed
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
    let critical = Duration::from_millis(chain as u64 * delay_ms);
    let requests: usize = set.clusters().map(|c| c.requests().len()).sum();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("sandbox/mesh.state.json")).unwrap(),
    )
    .unwrap();
    let steps = state["steps"].as_object().map_or(0, |s| s.len());
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
    // `mesh check` of the whole mesh (docs/check.md): it must pass (exit 0).
    for c in set.clusters() {
        c.clear_requests();
    }
    let mut checks = Vec::new();
    for _ in 0..5 {
        checks.push(mesh(&["check"]));
    }
    checks.sort();
    let requests: usize = set.clusters().map(|c| c.requests().len()).sum();
    println!(
        "check of {} clusters: median {:.0} ms (whole command), slowest {:.0} ms; {:.0} API requests per check",
        set.clusters().count(),
        checks[2].as_secs_f64() * 1000.0,
        checks[4].as_secs_f64() * 1000.0,
        requests as f64 / 5.0
    );
    rt.block_on(set.shutdown());
}
