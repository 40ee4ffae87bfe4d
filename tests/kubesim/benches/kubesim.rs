//! kubesim's numbers: `cargo bench -p kubesim`.
//! - 51 clusters started (certificates made, servers listening);
//! - a GET round trip over HTTPS with kube-rs, median of 1000;
//! - 10,000 objects in one cluster, listed by label selector over HTTPS.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kubesim::{ClusterSet, Options};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn client(set: &ClusterSet, context: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(set.kubeconfig_path()).unwrap();
    let opts = kube::config::KubeConfigOptions {
        context: Some(context.into()),
        ..Default::default()
    };
    kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .unwrap(),
    )
    .unwrap()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..51).map(|i| format!("c{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let t0 = Instant::now();
        let set = ClusterSet::open(dir.path(), &refs, Options::default()).await.unwrap();
        let start = t0.elapsed();
        println!("51 clusters started: {:.0} ms (target < 2000 ms)", start.as_secs_f64() * 1000.0);

        let c = client(&set, "c0").await;
        let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
        cms.create(&PostParams::default(), &serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap()).await.unwrap();
        for _ in 0..50 {
            cms.get("x").await.unwrap();
        }
        let mut rtts = Vec::new();
        for _ in 0..1000 {
            let t = Instant::now();
            cms.get("x").await.unwrap();
            rtts.push(t.elapsed());
        }
        println!("GET round trip over HTTPS: median {:.3} ms (target < 1 ms)", median(rtts).as_secs_f64() * 1000.0);

        // 10,000 objects, one in ten labelled tier=db, put in through the store.
        {
            let cluster = set.cluster("c1").unwrap();
            let mut store = cluster.store();
            let rt = store.find_type("", "v1", "configmaps").unwrap();
            for i in 0..10_000 {
                let tier = if i % 10 == 0 { "db" } else { "web" };
                let o = serde_json::json!({"metadata": {"name": format!("cm-{i}"), "labels": {"tier": tier}}, "data": {"k": "v"}});
                store.create(&rt, "default", o, "bench").unwrap();
            }
        }
        let cms1: Api<ConfigMap> = Api::namespaced(client(&set, "c1").await, "default");
        let mut lists = Vec::new();
        let mut n = 0;
        for _ in 0..7 {
            let t = Instant::now();
            n = cms1.list(&ListParams::default().labels("tier=db")).await.unwrap().items.len();
            lists.push(t.elapsed());
        }
        println!("list by label selector in 10,000 objects ({n} match): median {:.1} ms (target < 50 ms)", median(lists).as_secs_f64() * 1000.0);
        set.shutdown().await;
    });
}
