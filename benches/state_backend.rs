//! The Kubernetes state backend against kubesim: `cargo bench --bench
//! state_backend`. A 1 + 200 cluster mesh's full state (604 steps, as a
//! complete apply records it) written and read through the backend (gzip,
//! the backup Secret, resourceVersion checks), median of 15 each; and the
//! state's size as JSON and gzipped.

use engine::planner;
use providers::state_store::{KubernetesBackend, Location};
use serde_json::json;
use state::{Backend, State, Status};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn main() {
    let mut toml = String::from(
        "[mesh]\nid = \"bench\"\n\n[[cluster]]\nname = \"p\"\ncontext = \"ctx-p\"\nnetwork = \"n1\"\nrole = \"primary\"\n",
    );
    for r in 0..200 {
        toml.push_str(&format!(
            "\n[[cluster]]\nname = \"r{r}\"\ncontext = \"ctx-r{r}\"\nnetwork = \"n1\"\nrole = \"remote\"\nprimary = \"p\"\n"
        ));
    }
    let mesh = engine::config::parse(&toml, Path::new("mesh.toml")).unwrap();
    let graph = engine::topology::compile(&mesh).unwrap();
    let mut st = State::new("bench");
    for step in graph.in_order() {
        let known = st.clone();
        let lookup =
            move |id: &str, key: &str| match known.steps.get(id).and_then(|r| r.outputs.get(key)) {
                Some(v) => providers::Known::Known(v.clone()),
                None => providers::Known::AfterApply,
            };
        let input = planner::render_step(step, &lookup);
        let mut outputs = BTreeMap::new();
        if step.id.ends_with("/eastwest-address") {
            outputs.insert("address".to_string(), json!("172.18.100.200"));
        }
        if step.id.ends_with("/attach") {
            outputs.insert("kubeconfig_sha256".to_string(), json!("0".repeat(64)));
        }
        let rec = planner::record(
            step,
            &graph,
            &input,
            outputs,
            Status::Applied,
            state::now_rfc3339(),
        );
        st.steps.insert(step.id.clone(), rec);
    }
    let json = serde_json::to_vec_pretty(&st).unwrap();
    let gz = {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&json).unwrap();
        e.finish().unwrap()
    };

    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let set = rt
        .block_on(kubesim::ClusterSet::open(
            dir.path(),
            &["ctx-p"],
            kubesim::Options::default(),
        ))
        .unwrap();
    let backend = KubernetesBackend::new(Location {
        context: "ctx-p".into(),
        kubeconfig: Some(set.kubeconfig_path()),
        namespace: "default".into(),
        name: "bench".into(),
    });
    let mut lock = backend.lock("bench", Duration::ZERO).unwrap();
    lock.read().unwrap();
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for _ in 0..15 {
        let t0 = Instant::now();
        lock.write(&mut st).unwrap();
        writes.push(t0.elapsed());
        let t0 = Instant::now();
        let back = lock.read().unwrap().unwrap();
        reads.push(t0.elapsed());
        assert_eq!(back.steps.len(), st.steps.len());
    }
    drop(lock);
    writes.sort();
    reads.sort();
    println!(
        "1 + 200 clusters, {} steps: state {} KiB as JSON, {} KiB gzipped in the Secret",
        st.steps.len(),
        json.len() / 1024,
        gz.len() / 1024
    );
    println!(
        "write (backup, checks, gzip, replace): median {:.1} ms; read (get, gunzip, parse): median {:.1} ms (target < 100 ms each)",
        writes[7].as_secs_f64() * 1000.0,
        reads[7].as_secs_f64() * 1000.0
    );
    rt.block_on(set.shutdown());
}
