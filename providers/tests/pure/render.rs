//! Golden tests: every step renders the documents of Istio's guide and
//! samples (providers/testdata), compared as parsed documents.

use providers::kinds::{
    attach, eastwest_address, expose_istiod, install_control_plane, install_eastwest_gateway,
    install_remote, prepare_namespace,
};
use providers::{KNOWN_AFTER_APPLY, Known, Rendered, Target};
use serde_json::{Map, Value, json};

fn testdata(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Istio's guide leaves the control plane's and the remote's IstioOperator
/// unnamed; mesh names them (istioctl's prune would otherwise delete the
/// east-west gateway), and that is the one difference, placed where
/// `metadata` goes: after `kind`.
fn named(d: Value, name: &str) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in d.as_object().unwrap() {
        out.insert(k.clone(), v.clone());
        if k == "kind" {
            out.insert("metadata".into(), json!({ "name": name }));
        }
    }
    Value::Object(out)
}

fn named_all(ds: Vec<Value>, name: &str) -> Vec<Value> {
    ds.into_iter().map(|d| named(d, name)).collect()
}

#[test]
fn every_install_is_named_and_carries_the_pinned_istio_version() {
    let r = install_control_plane::render(&install_control_plane::Input {
        mesh_id: "mesh1".into(),
        cluster: "cluster1".into(),
        network: "network1".into(),
        revision: None,
        external_istiod: true,
        values: Map::new(),
        istio_version: Some("1.28".into()),
        istioctl: None,
        multi_root: false,
        xds_agent: false,
        ambient: None,
    });
    assert_eq!(
        r.documents[0]["metadata"],
        json!({"name": "control-plane", "annotations": {"mesh/istio-version": "1.28"}})
    );
    assert_eq!(
        eastwest("network1", None).documents[0]["metadata"]["name"],
        "eastwest"
    );
    assert_eq!(
        remote(Known::AfterApply, Map::new()).documents[0]["metadata"]["name"],
        "remote"
    );
}

fn with_namespace(mut d: Value) -> Value {
    d["metadata"]["namespace"] = json!("istio-system");
    d
}

fn cp(external: bool, revision: Option<&str>, values: Map<String, Value>) -> Rendered {
    install_control_plane::render(&install_control_plane::Input {
        mesh_id: "mesh1".into(),
        cluster: "cluster1".into(),
        network: "network1".into(),
        revision: revision.map(Into::into),
        external_istiod: external,
        values,
        istio_version: None,
        istioctl: None,
        multi_root: false,
        xds_agent: false,
        ambient: None,
    })
}

fn remote(address: Known<Value>, values: Map<String, Value>) -> Rendered {
    let input = install_remote::Input {
        cluster: "cluster2".into(),
        network: "network1".into(),
        primary: "cluster1".into(),
        revision: None,
        values,
        istio_version: None,
        multi_network: false,
        istioctl: None,
    };
    let lookup = move |step: &str, key: &str| {
        assert_eq!((step, key), ("cluster1/eastwest-address", "address"));
        address.clone()
    };
    install_remote::render(&input, &lookup)
}

fn eastwest(network: &str, revision: Option<&str>) -> Rendered {
    install_eastwest_gateway::render(&install_eastwest_gateway::Input {
        network: network.into(),
        revision: revision.map(Into::into),
        values: Map::new(),
        istio_version: None,
    })
}

#[test]
fn primary_is_the_seed_document_plus_external_istiod() {
    let mut expected = named(docs(&testdata("cluster1.yaml")).remove(0), "control-plane");
    let plain = cp(false, None, Map::new());
    assert_eq!(plain.documents, vec![expected.clone()]);
    expected["spec"]["values"]["pilot"] = json!({"env": {"EXTERNAL_ISTIOD": true}});
    let r = cp(true, None, Map::new());
    assert_eq!(r.documents, vec![expected]);
    assert!(!r.unknown);
    let rev = cp(true, Some("canary"), Map::new());
    assert_eq!(rev.documents[0]["spec"]["revision"], "canary");
}

#[test]
fn remote_is_the_seed_document_with_the_address_once_known() {
    let seed = testdata("cluster2.yaml");
    let unknown = remote(Known::AfterApply, Map::new());
    assert!(unknown.unknown);
    assert_eq!(
        unknown.documents,
        named_all(
            docs(&seed.replace("${DISCOVERY_ADDRESS}", &format!("\"{KNOWN_AFTER_APPLY}\""))),
            "remote"
        )
    );
    let known = remote(Known::Known(json!("172.18.0.200")), Map::new());
    assert!(!known.unknown);
    assert_eq!(
        known.documents,
        named_all(
            docs(&seed.replace("${DISCOVERY_ADDRESS}", "172.18.0.200")),
            "remote"
        )
    );
}

#[test]
fn eastwest_gateway_is_the_generated_document() {
    let reference = testdata("eastwest-gateway-network1.yaml");
    assert_eq!(eastwest("network1", None).documents, docs(&reference));
    let rev = eastwest("network1", Some("canary"));
    assert_eq!(
        rev.documents,
        docs(&reference.replace("revision: \"\"", "revision: \"canary\""))
    );
    let n2 = eastwest("network2", None);
    assert_eq!(
        n2.documents,
        docs(&reference.replace("network1", "network2"))
    );
}

#[test]
fn expose_istiod_is_the_sample_in_istio_system() {
    let expected: Vec<Value> = docs(&testdata("expose-istiod.yaml"))
        .into_iter()
        .map(with_namespace)
        .collect();
    let r = expose_istiod::render(&expose_istiod::Input {
        revision: None,
        kept: vec![],
    });
    assert_eq!(r.documents, expected);
    let expected: Vec<Value> =
        docs(&testdata("expose-istiod-rev.yaml.tmpl").replace("{{.Revision}}", "canary"))
            .into_iter()
            .map(with_namespace)
            .collect();
    let r = expose_istiod::render(&expose_istiod::Input {
        kept: vec![],
        revision: Some("canary".into()),
    });
    assert_eq!(r.documents, expected);
    assert_eq!(r.documents[1]["metadata"]["name"], "istiod-vs-canary");
}

#[test]
fn prepare_namespace_annotates_istio_system() {
    let r = prepare_namespace::render(&prepare_namespace::Input {
        primary: Some("cluster1".into()),
        network: None,
    });
    assert_eq!(
        r.documents,
        vec![
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": "istio-system",
            "annotations": {"topology.istio.io/controlPlaneClusters": "cluster1"}}})
        ]
    );
    // A primary of a multi-network mesh: the network label, no annotation.
    let r = prepare_namespace::render(&prepare_namespace::Input {
        primary: None,
        network: Some("network2".into()),
    });
    assert_eq!(
        r.documents[0]["metadata"],
        json!({"name": "istio-system", "labels": {"topology.istio.io/network": "network2"}})
    );
}

#[test]
fn attach_renders_the_secret_without_any_credential() {
    let input = attach::Input {
        remote: "cluster2".into(),
        remote_context: "kind-cluster2".into(),
        primary: "cluster1".into(),
        api_server: Some("https://172.18.0.3:6443".into()),
        remote_kubeconfig: None,
        reader: attach::Reader::default(),
    };
    let r = attach::render(&input);
    let d = &r.documents[0];
    assert_eq!(d["kind"], "Secret");
    assert_eq!(d["metadata"]["name"], "istio-remote-secret-cluster2");
    assert_eq!(d["metadata"]["namespace"], "istio-system");
    assert_eq!(d["metadata"]["labels"]["istio/multiCluster"], "true");
    assert_eq!(
        d["metadata"]["annotations"]["networking.istio.io/cluster"],
        "cluster2"
    );
    let data = d["stringData"]["cluster2"].as_str().unwrap();
    assert!(
        data.starts_with("(sensitive") && data.contains("https://172.18.0.3:6443"),
        "{data}"
    );
    let yaml = r.to_yaml();
    assert!(
        !yaml.contains("token:") && !yaml.contains("certificate-authority-data"),
        "{yaml}"
    );
    let default_server = attach::render(&attach::Input {
        api_server: None,
        ..input
    });
    assert!(
        default_server
            .to_yaml()
            .contains("the server of context kind-cluster2")
    );
}

#[test]
fn eastwest_address_describes_its_wait() {
    let r = eastwest_address::render(&eastwest_address::Input { timeout_secs: 300 });
    assert_eq!(
        r.documents[0]["wait"]["service"],
        "istio-system/istio-eastwestgateway"
    );
    assert_eq!(r.documents[0]["wait"]["timeout"], "300s");
}

#[test]
fn values_merge_into_every_istio_operator() {
    let values =
        json!({"global": {"logging": {"level": "default:debug"}}, "pilot": {"env": {"X": "1"}}})
            .as_object()
            .cloned()
            .unwrap();
    let r = cp(true, None, values.clone());
    let v = &r.documents[0]["spec"]["values"];
    assert_eq!(v["global"]["meshID"], "mesh1", "mesh keys kept");
    assert_eq!(v["global"]["logging"]["level"], "default:debug");
    assert_eq!(
        v["pilot"]["env"],
        json!({"EXTERNAL_ISTIOD": true, "X": "1"})
    );
    let r = remote(Known::Known(json!("1.2.3.4")), values.clone());
    assert_eq!(
        r.documents[0]["spec"]["values"]["global"]["remotePilotAddress"],
        "1.2.3.4"
    );
    assert_eq!(
        r.documents[0]["spec"]["values"]["global"]["logging"]["level"],
        "default:debug"
    );
    let ew = install_eastwest_gateway::render(&install_eastwest_gateway::Input {
        network: "network1".into(),
        revision: None,
        values,
        istio_version: None,
    });
    assert_eq!(
        ew.documents[0]["spec"]["values"]["global"]["network"],
        "network1"
    );
    assert_eq!(ew.documents[0]["spec"]["values"]["pilot"]["env"]["X"], "1");
}

#[test]
fn rendering_is_deterministic_and_round_trips_through_yaml() {
    let target = |ctx: &str| Target {
        cluster: "cluster1".into(),
        context: ctx.into(),
        kubeconfig: None,
    };
    let all = [
        cp(true, Some("canary"), Map::new()),
        eastwest("network1", None),
        expose_istiod::render(&expose_istiod::Input {
            revision: None,
            kept: vec![],
        }),
        remote(Known::AfterApply, Map::new()),
        remote(Known::Known(json!("172.18.0.200")), Map::new()),
    ];
    for r in &all {
        let again = r.clone();
        assert_eq!(r.to_yaml(), again.to_yaml());
        assert_eq!(r.fingerprint(&target("a")), again.fingerprint(&target("a")));
        assert_ne!(r.fingerprint(&target("a")), r.fingerprint(&target("b")));
        // Strings such as "", "*", "true" and "(known after apply)" keep their types.
        assert_eq!(docs(&r.to_yaml()), r.documents, "{}", r.to_yaml());
    }
}

#[test]
fn the_reader_is_istios_unless_the_remote_values_name_another() {
    let values: Map<String, Value> =
        serde_json::from_value(json!({"global": {"readerServiceAccount": {"name": "my-reader"}}}))
            .unwrap();
    let r = attach::Reader::from_values(&values);
    assert_eq!(
        (r.namespace.as_str(), r.name.as_str()),
        ("istio-system", "my-reader")
    );
    assert!(!r.is_default());
    assert!(attach::Reader::from_values(&Map::new()).is_default());
    assert_eq!(
        attach::Reader::default().name,
        "istio-reader-service-account"
    );
}
