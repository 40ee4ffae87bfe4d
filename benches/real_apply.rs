//! The seed apply on real clusters: `cargo bench --bench real_apply`.
//!
//! Two real control planes (tests/realk8s: kube-apiserver, etcd, kwok…)
//! and the real istioctl, built by `bash tests/realk8s/build.sh`. Prints
//! each step's wall time as mesh reports it, the whole apply's, and the
//! sum of istioctl's own run times (measured by a wrapper around it), so
//! mesh's own overhead is the difference. Runs in a private network
//! namespace, as the real test tier does.

#[path = "../tests/realk8s/harness.rs"]
mod harness;

use std::process::Command;
use std::time::Instant;

fn main() {
    harness::run_in_private_network();
    let rounds: usize = std::env::var("MESH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 1..=rounds {
        let dir = tempfile::tempdir().unwrap();
        let set = harness::RealClusters::start(dir.path(), &["cluster1", "cluster2"]);
        // istioctl behind a wrapper that logs how long each run took.
        let log = dir.path().join("istioctl-times");
        let wrapper = dir.path().join("istioctl");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/bash\nstart=$(date +%s%N)\n{} \"$@\"\nrc=$?\necho \"$(( ($(date +%s%N) - start) / 1000000 )) $1\" >> {}\nexit $rc\n",
                set.tool("istioctl").display(),
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let toml = format!(
            "[mesh]\nid = \"mesh1\"\n\n[istioctl]\npath = \"{}\"\n\n\
             [[cluster]]\nname = \"cluster1\"\ncontext = \"real-cluster1\"\nnetwork = \"network1\"\nrole = \"primary\"\n\
             [cluster.values.gateways.istio-ingressgateway]\ninjectionTemplate = \"\"\n\
             [cluster.eastwest_values.gateways.istio-ingressgateway]\ninjectionTemplate = \"\"\n\n\
             [[cluster]]\nname = \"cluster2\"\ncontext = \"real-cluster2\"\nnetwork = \"network1\"\nrole = \"remote\"\nprimary = \"cluster1\"\n",
            wrapper.display()
        );
        std::fs::write(dir.path().join("mesh.toml"), toml).unwrap();
        let t0 = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_mesh"))
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .arg("--kubeconfig")
            .arg(&set.kubeconfig)
            .args(["apply", "--auto-approve"])
            .output()
            .unwrap();
        let total = t0.elapsed();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        let istioctl: Vec<(u64, String)> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let (ms, cmd) = l.split_once(' ')?;
                Some((ms.parse().ok()?, cmd.to_string()))
            })
            .collect();
        let istioctl_ms: u64 = istioctl.iter().map(|(ms, _)| ms).sum();
        println!("round {round}:");
        for l in text.lines().filter(|l| l.contains(": created (")) {
            println!("  {l}");
        }
        println!(
            "  whole apply: {:.1} s; istioctl ran {} times for {:.1} s in all ({}); \
             the rest ({:.1} s) is mesh's own work, the API calls of its native steps and waits",
            total.as_secs_f64(),
            istioctl.len(),
            istioctl_ms as f64 / 1000.0,
            istioctl
                .iter()
                .map(|(ms, c)| format!("{c} {:.1} s", *ms as f64 / 1000.0))
                .collect::<Vec<_>>()
                .join(", "),
            total.as_secs_f64() - istioctl_ms as f64 / 1000.0
        );
    }
}
