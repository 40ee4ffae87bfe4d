//! Benchmark: validate + compile + plan + render (text and JSON) for meshes
//! of growing size. Run with `cargo bench --bench plan`.
//!
//! Each case runs in a child process of this binary, so its peak memory
//! (VmHWM from /proc/self/status) is its own. Times are the median of
//! several runs within the child.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// (primaries, remotes per primary, networks). Several primaries get a
/// `[trust]` (multi-primary needs one); with several networks, primary p is
/// on network p % N and its remote r on network (p + r) % N: the mixed fleet
/// of docs/benchmarks.md (10 primaries × 100 remotes over 5 networks).
const CASES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 100, 1),
    (1, 1000, 1),
    (10, 100, 1),
    (10, 100, 5),
];
const RUNS: usize = 7;

fn mesh_toml(primaries: usize, remotes: usize, networks: usize) -> String {
    let mut s = String::from("[mesh]\nid = \"bench\"\n");
    if primaries > 1 {
        // Parsed, not loaded: the files are not read (the plan shows the
        // root's fingerprint, here of nothing).
        s.push_str(
            "\n[trust]\nroot_cert = \"certs/root-cert.pem\"\nroot_key = \"certs/root-key.pem\"\n",
        );
    }
    for p in 0..primaries {
        let net = p % networks;
        s.push_str(&format!(
            "\n[[cluster]]\nname = \"p{p}\"\ncontext = \"ctx-p{p}\"\nnetwork = \"network{net}\"\nrole = \"primary\"\n"
        ));
        for r in 0..remotes {
            let net = (p + r) % networks;
            s.push_str(&format!(
                "\n[[cluster]]\nname = \"p{p}-r{r}\"\ncontext = \"ctx-p{p}-r{r}\"\nnetwork = \"network{net}\"\nrole = \"remote\"\nprimary = \"p{p}\"\n"
            ));
        }
    }
    s
}

/// One full pass; returns the steps and the bytes rendered (so the work
/// cannot be skipped).
fn pass(source: &str) -> (usize, usize) {
    let mesh = engine::config::parse(source, Path::new("bench.toml")).expect("valid");
    let graph = engine::topology::compile(&mesh).expect("compiles");
    let plan = engine::planner::plan(
        &mesh.mesh.id,
        &graph,
        None,
        None,
        engine::planner::Mode::Converge,
    );
    let text = plans::render::text(&plan, &plans::render::TextOptions { color: false });
    let json = plans::render::json(&plan);
    (graph.len(), text.len() + json.len())
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn child(primaries: usize, remotes: usize, networks: usize) {
    let source = mesh_toml(primaries, remotes, networks);
    let mut times: Vec<Duration> = Vec::new();
    let (mut steps, mut bytes) = (0, 0);
    for _ in 0..RUNS {
        let t0 = Instant::now();
        (steps, bytes) = pass(&source);
        times.push(t0.elapsed());
    }
    times.sort();
    let median = times[RUNS / 2];
    println!(
        "{primaries}\t{remotes}\t{networks}\t{steps}\t{:.2}\t{}\t{bytes}",
        median.as_secs_f64() * 1000.0,
        peak_rss_kib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        child(
            args[i + 1].parse().unwrap(),
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
        );
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!(
        "| primaries | remotes each | networks | steps | median time (ms) | peak memory (MiB) | output bytes |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &(p, r, n) in CASES {
        let out = Command::new(&exe)
            .args(["--case", &p.to_string(), &r.to_string(), &n.to_string()])
            .output()
            .expect("run a case");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.trim().split('\t').collect();
        if f.len() != 7 {
            eprintln!(
                "case {p}x{r} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::process::exit(1);
        }
        let mib = f[5].parse::<f64>().unwrap_or(0.0) / 1024.0;
        println!(
            "| {} | {} | {} | {} | {} | {:.1} | {} |",
            f[0], f[1], f[2], f[3], f[4], mib, f[6]
        );
    }
}
