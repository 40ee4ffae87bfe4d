//! kube-rs, typed and dynamic, against simulated clusters over HTTPS.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, Config};
use kubesim::{ClusterSet, Faults, LbMode, Options};
use serde_json::json;
use std::time::Duration;

async fn client(set: &ClusterSet, context: &str) -> Client {
    let kc = kube::config::Kubeconfig::read_from(set.kubeconfig_path()).unwrap();
    let opts = kube::config::KubeConfigOptions {
        context: Some(context.into()),
        ..Default::default()
    };
    Client::try_from(Config::from_custom_kubeconfig(kc, &opts).await.unwrap()).unwrap()
}

async fn open(dir: &std::path::Path, names: &[&str]) -> ClusterSet {
    ClusterSet::open(
        dir,
        names,
        Options {
            lb_delay: Duration::from_millis(100),
            lb_mode: LbMode::Ip,
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn crud_conflicts_and_errors_as_status() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(dir.path(), &["c1"]).await;
    let c = client(&set, "c1").await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"k": "v"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    match cms.create(&PostParams::default(), &cm).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("{other:?}"),
    }
    // A stale resourceVersion conflicts.
    let mut stale = created.clone();
    stale.metadata.resource_version = Some("1".into());
    match cms.replace("a", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409),
        other => panic!("{other:?}"),
    }
    let mut fresh = cms.get("a").await.unwrap();
    fresh.data = Some([("k".to_string(), "w".to_string())].into());
    cms.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "w");
    // Label selectors and a name field selector.
    let labelled: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "b", "labels": {"app": "x"}}})).unwrap();
    cms.create(&PostParams::default(), &labelled).await.unwrap();
    assert_eq!(
        cms.list(&ListParams::default().labels("app=x"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        cms.list(&ListParams::default().fields("metadata.name=a"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    match cms.get("a").await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (404, "NotFound")),
        other => panic!("{other:?}"),
    }
    // Into a missing namespace: 404.
    let nowhere: Api<ConfigMap> = Api::namespaced(c.clone(), "nowhere");
    assert!(
        matches!(nowhere.create(&PostParams::default(), &cm).await, Err(kube::Error::Api(s)) if s.code == 404)
    );
    // Merge and strategic patches (JSON patch: the store's unit tests).
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"m": "1"}})),
    )
    .await
    .unwrap();
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Strategic(json!({"data": {"j": "2"}})),
    )
    .await
    .unwrap();
    let b = cms.get("b").await.unwrap().data.unwrap();
    assert_eq!((b["m"].as_str(), b["j"].as_str()), ("1", "2"));
    set.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_ownership() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(dir.path(), &["c1"]).await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&set, "c1").await, "default");
    let doc = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "data": data});
    cms.patch(
        "s",
        &PatchParams::apply("one"),
        &Patch::Apply(doc(json!({"a": "1", "b": "2"}))),
    )
    .await
    .unwrap();
    cms.patch(
        "s",
        &PatchParams::apply("two"),
        &Patch::Apply(doc(json!({"c": "3"}))),
    )
    .await
    .unwrap();
    // `one` stops applying b: b goes; c (owned by two) stays.
    let o = cms
        .patch(
            "s",
            &PatchParams::apply("one"),
            &Patch::Apply(doc(json!({"a": "1"}))),
        )
        .await
        .unwrap();
    let data = o.data.unwrap();
    assert!(
        data.contains_key("a") && data.contains_key("c") && !data.contains_key("b"),
        "{data:?}"
    );
    // `one` taking c with another value conflicts unless forced.
    assert!(matches!(
        cms.patch("s", &PatchParams::apply("one"), &Patch::Apply(doc(json!({"a": "1", "c": "9"})))).await,
        Err(kube::Error::Api(s)) if s.code == 409
    ));
    cms.patch(
        "s",
        &PatchParams::apply("one").force(),
        &Patch::Apply(doc(json!({"a": "1", "c": "9"}))),
    )
    .await
    .unwrap();
    let managers: Vec<String> = cms
        .get("s")
        .await
        .unwrap()
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"one".to_string()), "{managers:?}");
    set.shutdown().await;
}

#[tokio::test]
async fn crds_namespaces_controllers_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(dir.path(), &["c1"]).await;
    let c = client(&set, "c1").await;
    // A CRD makes its resources served.
    let crds: Api<kube::api::DynamicObject> = Api::all_with(
        c.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
            ),
            "customresourcedefinitions",
        ),
    );
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gateways.networking.istio.io"},
        "spec": {"group": "networking.istio.io", "scope": "Namespaced", "names": {"kind": "Gateway", "plural": "gateways"},
            "versions": [{"name": "v1", "served": true, "storage": true}]}});
    crds.patch(
        "gateways.networking.istio.io",
        &PatchParams::apply("t"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let gw_ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("networking.istio.io", "v1", "Gateway"),
        "gateways",
    );
    let gws: Api<kube::api::DynamicObject> = Api::namespaced_with(c.clone(), "default", &gw_ar);
    gws.patch("g", &PatchParams::apply("t"), &Patch::Apply(json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "g"}, "spec": {"x": 1}}))).await.unwrap();
    assert_eq!(gws.get("g").await.unwrap().data["spec"]["x"], 1);
    let discovery = kube::Discovery::new(c.clone()).run().await.unwrap();
    assert!(
        discovery
            .groups()
            .any(|g| g.name() == "networking.istio.io")
    );

    // Namespace cascade.
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap(),
    )
    .await
    .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "n");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap(),
    )
    .await
    .unwrap();
    // Token controller.
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "n");
    secrets.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "tok", "annotations": {"kubernetes.io/service-account.name": "reader"}}, "type": "kubernetes.io/service-account-token"})).unwrap()).await.unwrap();
    let filled = tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(secrets.clone(), "tok", |s: Option<&Secret>| {
            s.and_then(|s| s.data.as_ref())
                .is_some_and(|d| d.contains_key("token") && d.contains_key("ca.crt"))
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let token = String::from_utf8(filled.data.unwrap()["token"].0.clone()).unwrap();
    // The token authenticates.
    let kc = kube::config::Kubeconfig::read_from(set.kubeconfig_path()).unwrap();
    let mut cfg = Config::from_custom_kubeconfig(
        kc,
        &kube::config::KubeConfigOptions {
            context: Some("c1".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    cfg.auth_info.token = Some(token.into());
    let as_reader: Api<Namespace> = Api::all(Client::try_from(cfg.clone()).unwrap());
    as_reader.get("n").await.unwrap();
    cfg.auth_info.token = Some("wrong".to_string().into());
    let wrong: Api<Namespace> = Api::all(Client::try_from(cfg).unwrap());
    assert!(matches!(wrong.get("n").await, Err(kube::Error::Api(s)) if s.code == 401));

    // LB controller.
    let svcs: Api<Service> = Api::namespaced(c.clone(), "n");
    svcs.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})).unwrap()).await.unwrap();
    let svc = tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(svcs.clone(), "lb", |s: Option<&Service>| {
            s.and_then(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref())
                .is_some_and(|i| !i.is_empty())
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    assert!(
        svc.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0]
            .ip
            .is_some()
    );
    set.cluster("c1").unwrap().set_lb_mode(LbMode::Hostname);
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "elb"}, "spec": {"type": "LoadBalancer"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let elb = tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(svcs.clone(), "elb", |s: Option<&Service>| {
            s.and_then(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref())
                .is_some_and(|i| !i.is_empty())
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let ing = &elb.status.unwrap().load_balancer.unwrap().ingress.unwrap()[0];
    assert!(ing.ip.is_none() && ing.hostname.as_deref().unwrap().ends_with("amazonaws.com"));

    nss.delete("n", &DeleteParams::default()).await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        await_condition(nss.clone(), "n", |n: Option<&Namespace>| n.is_none()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(matches!(sas.get("reader").await, Err(kube::Error::Api(s)) if s.code == 404));
    set.shutdown().await;
}

#[tokio::test]
async fn faults_accounting_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(dir.path(), &["c1", "c2"]).await;
    let c1 = set.cluster("c1").unwrap();
    let port = c1.port;
    c1.set_faults(Faults {
        error_rate: 1.0,
        ..Default::default()
    });
    let cms: Api<ConfigMap> = Api::namespaced(client(&set, "c1").await, "default");
    match cms.get("x").await {
        Err(kube::Error::Api(s)) => assert!(s.code == 500 || s.code == 429, "{s:?}"),
        other => panic!("{other:?}"),
    }
    c1.set_faults(Faults::default());
    c1.clear_requests();
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "kept"}})).unwrap(),
    )
    .await
    .unwrap();
    let reqs = c1.requests();
    assert_eq!(
        reqs.last().map(|r| (r.verb.as_str(), r.status)),
        Some(("create", 201))
    );
    assert_eq!(
        set.cluster("c2")
            .unwrap()
            .requests()
            .iter()
            .filter(|r| r.verb == "create")
            .count(),
        0
    );
    // A second server on the folder is refused while this one runs.
    let again = ClusterSet::open(dir.path(), &["c1"], Options::default()).await;
    assert!(again.is_err());
    assert_eq!(
        ClusterSet::running_in(dir.path()).unwrap().contexts,
        ["c1", "c2"]
    );
    set.shutdown().await;
    assert!(ClusterSet::running_in(dir.path()).is_none());
    // Restarted from the folder: same port, same objects.
    let set = open(dir.path(), &["c1"]).await;
    assert_eq!(set.cluster("c1").unwrap().port, port);
    assert!(set.cluster("c2").is_some(), "saved clusters come back too");
    let cms: Api<ConfigMap> = Api::namespaced(client(&set, "c1").await, "default");
    cms.get("kept").await.unwrap();
    set.shutdown().await;
}

#[tokio::test]
async fn latency_and_refused_connections() {
    let dir = tempfile::tempdir().unwrap();
    let set = open(dir.path(), &["c1"]).await;
    let c1 = set.cluster("c1").unwrap();
    let nss: Api<Namespace> = Api::all(client(&set, "c1").await);
    c1.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Default::default()
    });
    let t0 = std::time::Instant::now();
    nss.get("default").await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    c1.set_faults(Faults {
        refuse_connections: true,
        ..Default::default()
    });
    // A new client opens a new connection, which is closed at once.
    let fresh: Api<Namespace> = Api::all(client(&set, "c1").await);
    assert!(matches!(
        fresh.get("default").await,
        Err(kube::Error::HyperError(_) | kube::Error::Service(_))
    ));
    c1.set_faults(Faults::default());
    fresh.get("default").await.unwrap();
    set.shutdown().await;
}

/// SelfSubjectAccessReviews: kubesim has no RBAC, so every token may do
/// everything; a denial in the faults is answered `allowed: false` and
/// refuses the request itself (403), as RBAC would.
#[tokio::test]
async fn access_reviews_and_denied_permissions() {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let dir = tempfile::tempdir().unwrap();
    let set = open(dir.path(), &["c1"]).await;
    let c = client(&set, "c1").await;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(c.clone());
    let ask = |verb: &str, resource: &str| {
        serde_json::from_value::<SelfSubjectAccessReview>(json!({
            "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": "default"}}
        }))
        .unwrap()
    };
    let allowed = |r: SelfSubjectAccessReview| r.status.unwrap().allowed;
    let pp = PostParams::default();
    assert!(allowed(
        reviews
            .create(&pp, &ask("create", "configmaps"))
            .await
            .unwrap()
    ));
    set.cluster("c1").unwrap().set_faults(Faults {
        denied: vec![("create".into(), "configmaps".into())],
        ..Default::default()
    });
    assert!(!allowed(
        reviews
            .create(&pp, &ask("create", "configmaps"))
            .await
            .unwrap()
    ));
    // A question about every verb meets the denial; another verb does not.
    assert!(!allowed(reviews.create(&pp, &ask("*", "*")).await.unwrap()));
    assert!(allowed(
        reviews
            .create(&pp, &ask("get", "configmaps"))
            .await
            .unwrap()
    ));
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
    match cms.create(&pp, &cm).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden")),
        other => panic!("{other:?}"),
    }
    assert!(cms.list(&ListParams::default()).await.is_ok());
    set.shutdown().await;
}

/// As kube-apiserver's legacy service-account token authenticator:
/// deleting a token Secret revokes its token (401, and a TokenReview
/// refuses it), and only its token: another Secret's token of the same
/// ServiceAccount still works.
#[tokio::test]
async fn deleting_a_token_secret_revokes_exactly_its_token() {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    let dir = tempfile::tempdir().unwrap();
    let set = open(dir.path(), &["c1"]).await;
    let c = client(&set, "c1").await;
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "reader"}})).unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    let mut tokens = Vec::new();
    for name in ["link-a", "link-b"] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name,
                    "annotations": {"kubernetes.io/service-account.name": "reader"}},
                    "type": "kubernetes.io/service-account-token"}))
                .unwrap(),
            )
            .await
            .unwrap();
        let filled = tokio::time::timeout(
            Duration::from_secs(10),
            await_condition(secrets.clone(), name, |s: Option<&Secret>| {
                s.and_then(|s| s.data.as_ref())
                    .is_some_and(|d| d.contains_key("token"))
            }),
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap();
        tokens.push(String::from_utf8(filled.data.unwrap()["token"].0.clone()).unwrap());
    }
    let as_token = |token: &str| {
        let path = set.kubeconfig_path();
        let token = token.to_string();
        async move {
            let kc = kube::config::Kubeconfig::read_from(path).unwrap();
            let mut cfg = Config::from_custom_kubeconfig(
                kc,
                &kube::config::KubeConfigOptions {
                    context: Some("c1".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            cfg.auth_info.token = Some(token.into());
            Api::<Namespace>::all(Client::try_from(cfg).unwrap())
                .get("default")
                .await
        }
    };
    let reviewed = |token: &str| {
        let api: Api<TokenReview> = Api::all(c.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        async move {
            api.create(&PostParams::default(), &review)
                .await
                .unwrap()
                .status
                .and_then(|s| s.authenticated)
                == Some(true)
        }
    };
    for t in &tokens {
        as_token(t).await.unwrap();
        assert!(reviewed(t).await);
    }
    secrets
        .delete("link-a", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        !reviewed(&tokens[0]).await,
        "a deleted Secret's token still reviews"
    );
    // The authenticator learns of the deletion from the store's events:
    // wait for it, bounded.
    let refused = async {
        loop {
            match as_token(&tokens[0]).await {
                Err(kube::Error::Api(s)) if s.code == 401 => break,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("the revoked token is still accepted");
    as_token(&tokens[1]).await.unwrap();
    assert!(reviewed(&tokens[1]).await);
    set.shutdown().await;
}
