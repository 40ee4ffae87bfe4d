//! The simulated istioctl: `install`, `uninstall` and `version`, run as a
//! real istioctl would be (argv, the IstioOperator on stdin or in a file),
//! creating through the API of the target cluster the objects istioctl
//! creates for that document. A simulator: it installs no workload, and
//! models only the objects mesh and its tests look at (see the README).
//!
//! Environment: `KUBESIM_ISTIOCTL_LOG` (append one JSON line per
//! invocation: argv, stdin, exit code, start and end times, parent pid), `KUBESIM_ISTIOCTL_DELAY_MS`
//! (simulated install time), `KUBESIM_ISTIOCTL_FAIL_CONTEXT` (fail any
//! install on that context), `KUBESIM_ISTIOCTL_VERSION` (default 1.28.0).

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::Path;

const NS: &str = "istio-system";
const OWNER_LABEL: &str = "install.operator.istio.io/owning-resource";
const REV_LABEL: &str = "istio.io/rev";
const COMPONENT_LABEL: &str = "operator.istio.io/component";
const MANAGER: &str = "istioctl";
/// The ingress gateway of Istio's default profile.
const DEFAULT_INGRESS: &str = "istio-ingressgateway";

#[derive(Debug, Default, PartialEq)]
struct Args {
    command: String,
    yes: bool,
    file: Option<String>,
    context: Option<String>,
    kubeconfig: Option<String>,
    purge: bool,
    revision: Option<String>,
    remote: Option<String>,
    readiness_timeout: Option<String>,
    output: Option<String>,
    overwrite: bool,
    /// Words after the command (`tag set default`).
    words: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = args.iter().peekable();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("flag needs an argument: {name}"))
        };
        match flag.as_str() {
            "-y" | "--skip-confirmation" => a.yes = true,
            "-f" | "--filename" => a.file = Some(value("-f")?),
            "--context" => a.context = Some(value("--context")?),
            "-c" | "--kubeconfig" => a.kubeconfig = Some(value("--kubeconfig")?),
            "--purge" => a.purge = true,
            "-r" | "--revision" => a.revision = Some(value("--revision")?),
            "--remote" => a.remote = Some(inline.clone().unwrap_or_else(|| "true".into())),
            "--readiness-timeout" => {
                let v = value("--readiness-timeout")?;
                if !v.ends_with(['s', 'm', 'h']) {
                    return Err(format!(
                        "invalid argument \"{v}\" for \"--readiness-timeout\" flag: time: missing unit in duration"
                    ));
                }
                a.readiness_timeout = Some(v);
            }
            "-o" | "--output" => a.output = Some(value("--output")?),
            "--overwrite" => a.overwrite = true,
            f if f.starts_with('-') => return Err(format!("unknown flag: {f}")),
            cmd if a.command.is_empty() => a.command = cmd.to_string(),
            word if a.command == "tag" || a.command == "x" => a.words.push(word.to_string()),
            extra => {
                return Err(format!(
                    "unknown command \"{extra}\" for \"istioctl {}\"",
                    a.command
                ));
            }
        }
    }
    Ok(a)
}

/// Runs the simulated istioctl; returns its exit code.
pub fn main(args: Vec<String>, mut stdin: impl Read) -> i32 {
    let started = unix_ms();
    let mut input = String::new();
    let parsed = parse_args(&args);
    if let Ok(a) = &parsed
        && a.file.as_deref() == Some("-")
    {
        let _ = stdin.read_to_string(&mut input);
    }
    let code = match parsed {
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
        Ok(a) => match run(&a, &input) {
            Ok(out) => {
                print!("{out}");
                0
            }
            Err(e) => {
                eprintln!("Error: {e}");
                1
            }
        },
    };
    if let Ok(path) = std::env::var("KUBESIM_ISTIOCTL_LOG")
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        // When it ran and for which process, so tests can tell whether two
        // mesh processes ever ran one step at once.
        let parent = std::os::unix::process::parent_id();
        let line = json!({"argv": args, "stdin": input, "exit": code,
            "started_ms": started, "ended_ms": unix_ms(), "parent": parent});
        // One write of the whole line: istioctls running at once (two
        // clusters' steps) append whole lines, never pieces of each other's.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
    code
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn run(a: &Args, stdin: &str) -> Result<String, String> {
    let started = std::time::Instant::now();
    match a.command.as_str() {
        "version" => {
            let v = version();
            match a.output.as_deref() {
                // As the real one prints it: `clientVersion` with its fields.
                Some("json") => Ok(format!(
                    "{}\n",
                    serde_json::to_string_pretty(&json!({"clientVersion": {
                        "version": v, "revision": "simulated", "golang_version": "go1.24",
                        "status": "Clean", "tag": v}}))
                    .map_err(|e| e.to_string())?
                )),
                None | Some("") => Ok(format!("client version: {v}\n")),
                Some(other) => Err(format!("--output must be 'yaml' or 'json', not {other:?}")),
            }
        }
        "install" | "uninstall" => {
            if !a.yes {
                return Err("refusing to proceed without confirmation: pass -y (the simulator has no prompt)".into());
            }
            let doc = match a.file.as_deref() {
                Some("-") => Some(stdin.to_string()),
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {path}: {e}"))?,
                ),
                None => None,
            };
            if a.command == "install" {
                let Some(doc) = doc else {
                    return Err("istioctl install needs -f FILE (the simulator installs no default profile)".into());
                };
                let iop = parse_iop(&doc)?;
                let objects = objects_for(&iop)?;
                if let Some(ctx) = &a.context
                    && std::env::var("KUBESIM_ISTIOCTL_FAIL_CONTEXT").is_ok_and(|f| f == *ctx)
                {
                    delay(started);
                    return Err(format!(
                        "failed to install manifests: simulated failure on context {ctx} (KUBESIM_ISTIOCTL_FAIL_CONTEXT)"
                    ));
                }
                block_on(install(a, &objects))?;
                let pruned = block_on(prune(a, &iop, &objects))?;
                if objects.iter().any(|o| {
                    o["kind"] == "MutatingWebhookConfiguration"
                        && o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.starts_with("istio-sidecar-injector"))
                }) {
                    let rev = iop
                        .pointer("/spec/revision")
                        .and_then(Value::as_str)
                        .filter(|r| !r.is_empty())
                        .unwrap_or("default");
                    block_on(default_tag(a, rev))?;
                }
                if objects.iter().any(|o| {
                    o["kind"] == "Deployment"
                        && o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.starts_with("istiod"))
                }) {
                    block_on(istiod_publishes_its_root(a))?;
                }
                delay(started);
                let mut out = String::new();
                for p in pruned {
                    out.push_str(&format!("  Removed {p}.\n"));
                }
                out.push_str("✔ Installation complete\n");
                Ok(out)
            } else {
                let target = match (&doc, a.purge, &a.revision) {
                    (Some(d), _, _) => Removal::Objects(objects_for(&parse_iop(d)?)?),
                    (None, true, _) => Removal::Purge,
                    (None, false, Some(r)) => Removal::Revision(r.clone()),
                    (None, false, None) => {
                        return Err("at least one of the --revision (or --istioctl-revision), --filename or --purge flags should be set".into());
                    }
                };
                let n = block_on(uninstall(a, target))?;
                delay(started);
                Ok(format!("✔ Uninstall complete ({n} objects removed)\n"))
            }
        }
        "tag" => {
            let (sub, tag) = match a.words.as_slice() {
                [sub, tag] => (sub.as_str(), tag.as_str()),
                [sub] if sub == "list" => ("list", ""),
                _ => return Err("usage: istioctl tag set|remove TAG, or tag list".into()),
            };
            match sub {
                "set" => {
                    let rev = a.revision.as_deref().ok_or("tag set needs --revision")?;
                    if !a.yes {
                        // As the real one: a prompt on conflicts, which an
                        // empty stdin answers "no" (and exits 0).
                        return Err("refusing to proceed without confirmation: pass -y (the simulator has no prompt)".into());
                    }
                    block_on(tag_set(a, tag, rev, a.overwrite, false))?;
                    Ok(format!(
                        "Revision tag \"{tag}\" created, referencing control plane revision \"{rev}\".\n"
                    ))
                }
                "remove" => {
                    let n = block_on(tag_remove(a, tag))?;
                    Ok(format!("Revision tag {tag} removed ({n} objects)\n"))
                }
                "list" => block_on(tag_list(a)),
                other => Err(format!("unknown command \"{other}\" for \"istioctl tag\"")),
            }
        }
        // `x precheck`: the simulator finds nothing (it says so on stderr,
        // as istioctl does, and prints nothing on stdout).
        "x" if a.words == ["precheck"] => {
            eprintln!(
                "✔ No issues found when checking the cluster. Istio is safe to install or upgrade!"
            );
            Ok(String::new())
        }
        "" => Err("a command is required: install, uninstall or version".into()),
        other => Err(format!(
            "unknown command \"{other}\" for \"istioctl\" (the simulator knows install, uninstall, tag, version)"
        )),
    }
}

/// Waits until the run has taken `KUBESIM_ISTIOCTL_DELAY_MS` since it
/// `started`: a simulated install takes that long in all, as a real one
/// waits for its workloads to become ready, however long its requests took
/// (unless they took longer). The objects exist before the wait ends, as
/// they do while a real install waits.
fn delay(started: std::time::Instant) {
    if let Some(ms) = std::env::var("KUBESIM_ISTIOCTL_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let total = std::time::Duration::from_millis(ms);
        std::thread::sleep(total.saturating_sub(started.elapsed()));
    }
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(f)
}

fn parse_iop(text: &str) -> Result<Value, String> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| format!("could not parse the IstioOperator: {e}"))?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let [doc] = docs.as_slice() else {
        return Err(format!(
            "expected one IstioOperator document, found {}",
            docs.len()
        ));
    };
    if doc["apiVersion"] != "install.istio.io/v1alpha1" || doc["kind"] != "IstioOperator" {
        return Err(format!(
            "not an IstioOperator: apiVersion {} kind {} (want install.istio.io/v1alpha1 IstioOperator)",
            doc["apiVersion"], doc["kind"]
        ));
    }
    if !doc.get("spec").is_none_or(Value::is_object) {
        return Err("spec must be a map".into());
    }
    Ok(doc.clone())
}

fn meta(name: &str, namespace: Option<&str>, labels: &Value) -> Value {
    let mut m = json!({"name": name, "labels": labels});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn crd(group: &str, kind: &str, plural: &str, versions: &[&str], labels: &Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": meta(&format!("{plural}.{group}"), None, labels),
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List"),
                "shortNames": match plural { "gateways" => vec!["gw"], "virtualservices" => vec!["vs"], "destinationrules" => vec!["dr"], "serviceentries" => vec!["se"], "peerauthentications" => vec!["pa"], _ => vec![] }},
            "versions": versions.iter().enumerate().map(|(i, v)| json!({
                "name": v, "served": true, "storage": i == 0,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}},
            })).collect::<Vec<_>>(),
        }
    })
}

/// The reader's ServiceAccount and RBAC. As Istio's base chart: with
/// `values.global.readerServiceAccount.name` set, the ServiceAccount is the
/// user's to create and only the binding to it is installed.
/// The reader ServiceAccount and its cluster role, as Istio's charts name
/// them: the ClusterRole and binding per revision
/// (`istio-reader-clusterrole[-<rev>]-istio-system`, the discovery chart),
/// the ServiceAccount shared (the base chart: a revision's uninstall
/// leaves it).
fn reader_objects(labels: &Value, values: &Value, rev: Option<&str>, remote: bool) -> Vec<Value> {
    let name = match rev {
        Some(r) => format!("istio-reader-clusterrole-{r}-{NS}"),
        None => format!("istio-reader-clusterrole-{NS}"),
    };
    let mut base = labels.clone();
    base[COMPONENT_LABEL] = json!("Base");
    let custom = values
        .pointer("/global/readerServiceAccount/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let sa_ns = values
        .pointer("/global/readerServiceAccount/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(NS);
    let sa = custom.unwrap_or("istio-reader-service-account");
    let mut out = Vec::new();
    if custom.is_none() {
        out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(sa, Some(NS), &base)}));
    }
    // Istio's rules, reads simplified to every resource: reviews of tokens
    // and access; in the remote profile (`istiodRemote.enabled`), what the
    // external control plane writes there.
    let mut rules = vec![
        json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}),
        json!({"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}),
        json!({"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}),
    ];
    if remote {
        rules.extend([
            json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get", "list", "watch", "update"]}),
            json!({"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"], "verbs": ["get", "list", "watch", "update", "patch"]}),
            json!({"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"], "verbs": ["get", "list", "watch", "update"]}),
        ]);
    }
    out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(&name, None, labels),
        "rules": rules}));
    out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(&name, None, labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": sa_ns}]}));
    out
}

fn webhook(name: &str, client: Value, labels: &Value) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": meta(name, None, labels),
        "webhooks": [{
            "name": "namespace.sidecar-injector.istio.io",
            "clientConfig": client,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        }]
    })
}

/// ConfigMap `values` (`values-<rev>`), where the real istioctl leaves the
/// values it rendered its charts with (`merged-values`, JSON).
fn values_configmap(suffix: &str, values: &Value, labels: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&format!("values{suffix}"), Some(NS), labels),
        "data": {"merged-values": values.to_string()}})
}

/// The objects istioctl creates for an IstioOperator, in creation order.
pub fn objects_for(iop: &Value) -> Result<Vec<Value>, String> {
    let spec = &iop["spec"];
    let rev = spec["revision"].as_str().filter(|r| !r.is_empty());
    let suffix = rev.map(|r| format!("-{r}")).unwrap_or_default();
    let owner = iop
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    // As the real istioctl: the owner label only when the IstioOperator has a name.
    let labels = |component: &str| {
        let mut l = json!({REV_LABEL: rev.unwrap_or("default"), COMPONENT_LABEL: component});
        if let Some(owner) = owner {
            l[OWNER_LABEL] = json!(owner);
        }
        l
    };
    let values = &spec["values"];
    let profile = spec["profile"].as_str().unwrap_or("default");
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    let mut out = vec![namespace];
    match profile {
        "default" | "demo" | "minimal" | "ambient" => {
            let base = labels("Base");
            // `values.base.enableCRDTemplates: false` renders no CRD, as
            // Istio's base chart (`templates/crds.yaml`).
            let crds = values.pointer("/base/enableCRDTemplates") != Some(&json!(false));
            for (group, kind, plural, versions) in [
                (
                    "networking.istio.io",
                    "Gateway",
                    "gateways",
                    &["v1", "v1beta1", "v1alpha3"][..],
                ),
                (
                    "networking.istio.io",
                    "VirtualService",
                    "virtualservices",
                    &["v1", "v1beta1", "v1alpha3"][..],
                ),
                (
                    "networking.istio.io",
                    "DestinationRule",
                    "destinationrules",
                    &["v1", "v1beta1", "v1alpha3"][..],
                ),
                (
                    "networking.istio.io",
                    "ServiceEntry",
                    "serviceentries",
                    &["v1", "v1beta1", "v1alpha3"][..],
                ),
                (
                    "security.istio.io",
                    "PeerAuthentication",
                    "peerauthentications",
                    &["v1", "v1beta1"][..],
                ),
            ]
            .into_iter()
            .filter(|_| crds)
            {
                out.push(crd(group, kind, plural, versions, &base));
            }
            out.extend(reader_objects(&base, values, rev, false));
            // As Istio's chart labels istiod's Deployment and Service.
            let mut pilot = labels("Pilot");
            pilot["app"] = json!("istiod");
            pilot["istio"] = json!("pilot");
            let istiod = format!("istiod{suffix}");
            let mut env = vec![
                json!({"name": "CLUSTER_ID", "value": values.pointer("/global/multiCluster/clusterName").and_then(Value::as_str).unwrap_or("Kubernetes")}),
                json!({"name": "MESH_ID", "value": values.pointer("/global/meshID").and_then(Value::as_str).unwrap_or("")}),
                json!({"name": "NETWORK", "value": values.pointer("/global/network").and_then(Value::as_str).unwrap_or("")}),
            ];
            if profile == "ambient" {
                // The ambient profile's own values (Istio's helm-profiles/ambient.yaml).
                env.push(json!({"name": "PILOT_ENABLE_AMBIENT", "value": "true"}));
            }
            if let Some(extra) = values.pointer("/pilot/env").and_then(Value::as_object) {
                for (k, v) in extra {
                    let v = v
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string());
                    env.push(json!({"name": k, "value": v}));
                }
            }
            out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(&istiod, Some(NS), &pilot),
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "istiod", REV_LABEL: rev.unwrap_or("default")}},
                    "template": {"metadata": {"labels": {"app": "istiod", REV_LABEL: rev.unwrap_or("default")}},
                        "spec": {"serviceAccountName": istiod, "containers": [{"name": "discovery", "image": "docker.io/istio/pilot:simulated", "env": env}]}}}}));
            out.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(&istiod, Some(NS), &pilot),
                "spec": {"selector": {"app": "istiod", REV_LABEL: rev.unwrap_or("default")}, "ports": [
                    {"name": "grpc-xds", "port": 15010, "targetPort": 15010},
                    {"name": "https-dns", "port": 15012, "targetPort": 15012},
                    {"name": "https-webhook", "port": 443, "targetPort": 15017},
                    {"name": "http-monitoring", "port": 15014, "targetPort": 15014}]}}));
            out.push(webhook(
                &format!("istio-sidecar-injector{suffix}"),
                json!({"service": {"name": istiod, "namespace": NS, "path": "/inject", "port": 443}}),
                &pilot,
            ));
            out.push(values_configmap(&suffix, values, &pilot));
            if profile == "ambient" {
                // Istio's ambient profile: istio-cni and ztunnel on every
                // node, one of each per cluster whatever the revision.
                for (name, component) in [("istio-cni-node", "Cni"), ("ztunnel", "Ztunnel")] {
                    let l = labels(component);
                    out.push(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta(name, Some(NS), &l),
                        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}},
                            "spec": {"containers": [{"name": name, "image": format!("docker.io/istio/{name}:simulated"),
                                "env": [{"name": "NETWORK", "value": values.pointer("/global/network").and_then(Value::as_str).unwrap_or("")}]}]}}}}));
                }
            }
        }
        "remote" => {
            let address = values
                .pointer("/global/remotePilotAddress")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if address.is_empty() || address.starts_with('(') {
                return Err(format!(
                    "values.global.remotePilotAddress must be the primary's address for the remote profile, not {address:?}"
                ));
            }
            let path = values
                .pointer("/istiodRemote/injectionPath")
                .and_then(Value::as_str)
                .unwrap_or("/inject");
            let remote = labels("IstiodRemote");
            out.extend(reader_objects(&remote, values, rev, true));
            // As Istio's chart: for an IP, a selector-less Service
            // `istiod[-rev]` whose EndpointSlice routes to the primary.
            if address.parse::<std::net::Ipv4Addr>().is_ok() {
                let istiod = format!("istiod{suffix}");
                out.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(&istiod, Some(NS), &remote),
                    "spec": {"ports": [
                        {"name": "tcp-istiod", "port": 15012},
                        {"name": "tcp-webhook", "port": 443, "targetPort": 15017}]}}));
                let mut slice_meta = meta(&istiod, Some(NS), &remote);
                slice_meta["labels"]["kubernetes.io/service-name"] = json!(istiod);
                out.push(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": slice_meta,
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [address]}],
                    "ports": [{"name": "tcp-istiod", "port": 15012, "protocol": "TCP"},
                              {"name": "tcp-webhook", "port": 15017, "protocol": "TCP"}]}));
            }
            out.push(webhook(
                &format!("istio-sidecar-injector{suffix}"),
                json!({"url": format!("https://{address}:15017{path}")}),
                &remote,
            ));
            out.push(values_configmap(&suffix, values, &remote));
        }
        "empty" => {}
        other => {
            return Err(format!(
                "unknown profile \"{other}\": the simulator knows default, demo, minimal, ambient, remote and empty"
            ));
        }
    }
    // Istio's default and demo profiles install `istio-ingressgateway`,
    // unless the document names it (`enabled: false` leaves it out).
    let mut gateways: Vec<Value> = spec
        .pointer("/components/ingressGateways")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if matches!(profile, "default" | "demo")
        && !gateways.iter().any(|g| g["name"] == DEFAULT_INGRESS)
    {
        gateways.insert(
            0,
            json!({"name": DEFAULT_INGRESS, "enabled": true,
                "label": {"app": DEFAULT_INGRESS, "istio": "ingressgateway"},
                "k8s": {"service": {"ports": [
                    {"name": "status-port", "port": 15021, "targetPort": 15021},
                    {"name": "http2", "port": 80, "targetPort": 8080},
                    {"name": "https", "port": 443, "targetPort": 8443}]}}}),
        );
    }
    for gw in &gateways {
        if gw["enabled"] == json!(false) {
            continue;
        }
        let name = gw["name"]
            .as_str()
            .ok_or("an ingress gateway needs a name")?;
        let ns = gw["namespace"].as_str().unwrap_or(NS);
        let mut l = labels("IngressGateways");
        for (k, v) in gw["label"].as_object().into_iter().flatten() {
            l[k] = v.clone();
        }
        let selector = gw["label"].clone();
        let ports = gw
            .pointer("/k8s/service/ports")
            .cloned()
            .unwrap_or_else(|| json!([]));
        let env = gw.pointer("/k8s/env").cloned().unwrap_or_else(|| json!([]));
        out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name, Some(ns), &l),
            "spec": {"replicas": 1, "selector": {"matchLabels": selector}, "template": {"metadata": {"labels": selector},
                "spec": {"containers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:simulated", "env": env}]}}}}));
        out.push(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name, Some(ns), &l),
            "spec": {"type": "LoadBalancer", "selector": selector, "ports": ports}}),
        );
    }
    Ok(out)
}

fn api_resource(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "ServiceAccount" => "serviceaccounts".to_string(),
        "ClusterRoleBinding" => "clusterrolebindings".to_string(),
        "CustomResourceDefinition" => "customresourcedefinitions".to_string(),
        k => format!("{}s", k.to_lowercase()),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

fn api_for(client: &kube::Client, obj: &Value) -> (Api<DynamicObject>, String) {
    let ar = api_resource(
        obj["apiVersion"].as_str().unwrap_or("v1"),
        obj["kind"].as_str().unwrap_or(""),
    );
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let api = match obj.pointer("/metadata/namespace").and_then(Value::as_str) {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    (api, name)
}

async fn client(a: &Args) -> Result<kube::Client, String> {
    let kubeconfig = match &a.kubeconfig {
        Some(p) => read_kubeconfig(p, a.context.as_deref()),
        None => kube::config::Kubeconfig::read(),
    }
    .map_err(|e| format!("cannot read the kubeconfig: {e}"))?;
    let options = kube::config::KubeConfigOptions {
        context: a.context.clone(),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            format!(
                "context {:?}: {e}",
                a.context.as_deref().unwrap_or("(current)")
            )
        })?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// The kubeconfig at `path`. A fleet's kubeconfig holds a thousand
/// contexts and every simulated istioctl run would read all of them: the
/// one-context file kubesim writes beside its kubeconfig is read instead
/// when there is one, and a JSON kubeconfig (kubesim's; kubectl reads JSON
/// too) is parsed as JSON, not by the slower YAML parser.
fn read_kubeconfig(
    path: &str,
    context: Option<&str>,
) -> Result<kube::config::Kubeconfig, kube::config::KubeconfigError> {
    let json = |p: &Path| -> Option<kube::config::Kubeconfig> {
        let text = std::fs::read(p).ok()?;
        if text.first() != Some(&b'{') {
            return None;
        }
        serde_json::from_slice(&text).ok()
    };
    if let Some(context) = context
        && let Some(one) = json(&crate::kubeconfig::context_file(Path::new(path), context))
        && one.contexts.iter().any(|c| c.name == context)
    {
        return Ok(one);
    }
    match json(Path::new(path)) {
        Some(all) => Ok(all),
        None => kube::config::Kubeconfig::read_from(path),
    }
}

/// Like client-go under istioctl: 429, 5xx and connection errors are
/// retried with backoff; other errors are answers.
async fn retry<T, F, Fut>(mut op: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut delay = std::time::Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match op().await {
            Err(kube::Error::Api(s)) if (s.code == 429 || s.code >= 500) && attempt < 8 => {}
            Err(kube::Error::HyperError(_) | kube::Error::Service(_)) if attempt < 8 => {}
            other => return other,
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(std::time::Duration::from_secs(2));
        attempt += 1;
    }
}

async fn install(a: &Args, objects: &[Value]) -> Result<(), String> {
    let client = client(a).await?;
    let pp = PatchParams::apply(MANAGER).force();
    for obj in objects {
        let (api, name) = api_for(&client, obj);
        let patch = Patch::Apply(obj);
        retry(|| api.patch(&name, &pp, &patch)).await.map_err(|e| {
            format!(
                "failed to apply {} {name}: {e}",
                obj["kind"].as_str().unwrap_or("")
            )
        })?;
    }
    Ok(())
}

/// What the istiod just installed does when it starts (kubesim runs no
/// istiod): it signs with the plug-in CA of Secret `cacerts` when there is
/// one, else with a self-signed root of its own, and publishes its root as
/// ConfigMap `istio-ca-root-cert` (key `root-cert.pem`). Tests compare these
/// across primaries: one root of trust means the same root everywhere.
async fn istiod_publishes_its_root(a: &Args) -> Result<(), String> {
    let client = client(a).await?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), NS);
    let plugged = retry(|| secrets.get_opt("cacerts"))
        .await
        .map_err(|e| format!("reading Secret cacerts: {e}"))?
        .and_then(|s| s.data)
        .and_then(|d| d.get("root-cert.pem").map(|b| b.0.clone()))
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let root = match plugged {
        Some(root) => root,
        None => self_signed_root(&secrets).await?,
    };
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio-ca-root-cert", "namespace": NS},
        "data": {"root-cert.pem": root}});
    let (api, name) = api_for(&client, &cm);
    let pp = PatchParams::apply("istiod").force();
    let patch = Patch::Apply(&cm);
    retry(|| api.patch(&name, &pp, &patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("publishing istio-ca-root-cert: {e}"))
}

/// istiod's own CA when there is no `cacerts` (Istio's
/// `security/pkg/pki/ca/ca.go`): made once, kept in Secret
/// `istio-ca-secret` (`ca-cert.pem`, `ca-key.pem`), and its certificate is
/// the root it publishes. A real self-signed CA, so that a root rotation
/// away from it can be checked certificate by certificate.
async fn self_signed_root(
    secrets: &Api<k8s_openapi::api::core::v1::Secret>,
) -> Result<String, String> {
    if let Some(cert) = retry(|| secrets.get_opt("istio-ca-secret"))
        .await
        .map_err(|e| format!("reading Secret istio-ca-secret: {e}"))?
        .and_then(|s| s.data)
        .and_then(|d| d.get("ca-cert.pem").map(|b| b.0.clone()))
    {
        return Ok(String::from_utf8_lossy(&cert).into_owned());
    }
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "cluster.local");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let (cert, key) = (cert.pem(), key.serialize_pem());
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "istio-ca-secret", "namespace": NS},
        "type": "istio.io/ca-root",
        "data": {"ca-cert.pem": b64.encode(&cert), "ca-key.pem": b64.encode(&key),
                 "cert-chain.pem": "", "key.pem": "", "root-cert.pem": ""}});
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(secret).map_err(|e| e.to_string())?;
    let pp = kube::api::PostParams::default();
    retry(|| secrets.create(&pp, &secret))
        .await
        .map_err(|e| format!("creating Secret istio-ca-secret: {e}"))?;
    Ok(cert)
}

/// What the real `istioctl install` does after applying (Istio's
/// `operator/pkg/install` prune): every object of the kinds it installs that
/// carries a component label and the installing IstioOperator's owner
/// labels (its revision, and its name *only if it has one*) but is not among
/// the objects just applied is deleted. An unnamed IstioOperator therefore
/// prunes what other IstioOperators installed on the same revision, e.g. the
/// east-west gateway (Istio issues 29634 and 36982). Returns what it removed.
async fn prune(a: &Args, iop: &Value, applied: &[Value]) -> Result<Vec<String>, String> {
    let client = client(a).await?;
    let rev = iop
        .pointer("/spec/revision")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
        .unwrap_or("default");
    let mut selector = format!("{REV_LABEL}={rev},{COMPONENT_LABEL}");
    if let Some(name) = iop
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        selector.push_str(&format!(",{OWNER_LABEL}={name}"));
    }
    let key = |kind: &str, ns: Option<&str>, name: &str| {
        format!(
            "{kind} {}{name}",
            ns.map(|n| format!("{n}/")).unwrap_or_default()
        )
    };
    let keep: std::collections::HashSet<String> = applied
        .iter()
        .map(|o| {
            key(
                o["kind"].as_str().unwrap_or(""),
                o.pointer("/metadata/namespace").and_then(Value::as_str),
                o.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            )
        })
        .collect();
    let mut removed = Vec::new();
    for (api_version, kind, _) in KINDS {
        let ar = api_resource(api_version, kind);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let lp = ListParams::default().labels(&selector);
        let list = retry(|| api.list(&lp))
            .await
            .map_err(|e| format!("listing {kind} to prune: {e}"))?;
        for o in list.items {
            let name = o.metadata.name.clone().unwrap_or_default();
            let ns = o.metadata.namespace.clone();
            let k = key(kind, ns.as_deref(), &name);
            if keep.contains(&k) {
                continue;
            }
            let api: Api<DynamicObject> = match &ns {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let dp = DeleteParams::default();
            match retry(|| api.delete(&name, &dp)).await {
                Ok(_) => removed.push(k),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(format!("pruning {k}: {e}")),
            }
        }
    }
    Ok(removed)
}

enum Removal {
    Purge,
    Revision(String),
    Objects(Vec<Value>),
}

/// The kinds istioctl installs, for purge and revision removal.
const KINDS: &[(&str, &str, bool)] = &[
    (
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        false,
    ),
    ("apps/v1", "Deployment", true),
    ("apps/v1", "DaemonSet", true),
    ("v1", "Service", true),
    ("v1", "ServiceAccount", true),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", false),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", false),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition", false),
];

async fn uninstall(a: &Args, what: Removal) -> Result<usize, String> {
    let client = client(a).await?;
    let mut doomed: Vec<Value> = Vec::new();
    match what {
        Removal::Objects(objs) => {
            doomed = objs
                .into_iter()
                .filter(|o| o["kind"] != "Namespace")
                .collect()
        }
        Removal::Purge | Removal::Revision(_) => {
            let selector = match &what {
                // What the install made (its component label): tags that
                // `istioctl tag set` made carry none and stay, as they do.
                Removal::Revision(r) => format!(
                    "{REV_LABEL}={r},{COMPONENT_LABEL} in (Pilot,IstiodRemote,IngressGateways,EgressGateways,Cni,Ztunnel)"
                ),
                _ => COMPONENT_LABEL.to_string(),
            };
            for (api_version, kind, _) in KINDS {
                // A revision's uninstall leaves the CRDs, which every
                // revision shares; only a purge removes them.
                if matches!(what, Removal::Revision(_)) && *kind == "CustomResourceDefinition" {
                    continue;
                }
                let ar = api_resource(api_version, kind);
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
                let lp = ListParams::default().labels(&selector);
                let list = retry(|| api.list(&lp))
                    .await
                    .map_err(|e| format!("listing {kind}: {e}"))?;
                for o in list.items {
                    let mut v = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": o.metadata.name}});
                    if let Some(ns) = o.metadata.namespace {
                        v["metadata"]["namespace"] = json!(ns);
                    }
                    doomed.push(v);
                }
            }
        }
    }
    let mut n = 0;
    for obj in doomed.iter().rev() {
        let (api, name) = api_for(&client, obj);
        let dp = DeleteParams::default();
        match retry(|| api.delete(&name, &dp)).await {
            Ok(_) => n += 1,
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(format!(
                    "failed to delete {} {name}: {e}",
                    obj["kind"].as_str().unwrap_or("")
                ));
            }
        }
    }
    Ok(n)
}

/// The version this istioctl says it is: `KUBESIM_ISTIOCTL_VERSION`; else,
/// standing in for another istioctl (`KUBESIM_ISTIOCTL_AS`, set by mesh's
/// sandbox for a kept revision's istioctl), the version in that path
/// (`/opt/istio-1.27.0/bin/istioctl` is 1.27.0); else 1.28.0.
fn version() -> String {
    if let Ok(v) = std::env::var("KUBESIM_ISTIOCTL_VERSION") {
        return v;
    }
    std::env::var("KUBESIM_ISTIOCTL_AS")
        .ok()
        .and_then(|p| version_in_path(&p))
        .unwrap_or_else(|| "1.28.0".into())
}

/// The version a path names: the last component like `istio-1.27.0` or
/// `istioctl-1.27.0`.
fn version_in_path(path: &str) -> Option<String> {
    path.rsplit('/').find_map(|part| {
        let v = part
            .strip_prefix("istioctl-")
            .or_else(|| part.strip_prefix("istio-"))?;
        (v.starts_with(|c: char| c.is_ascii_digit()) && v.contains('.')).then(|| v.to_string())
    })
}

const TAG_LABEL: &str = "istio.io/tag";

/// `istioctl tag set`: the tag's webhook, a copy of the revision's
/// injector (its client config), labelled with the tag and the revision;
/// for `default` also the default validator. Refused without a revision
/// injector, and over an existing tag without `--overwrite`.
async fn tag_set(
    a: &Args,
    tag: &str,
    rev: &str,
    overwrite: bool,
    by_installer: bool,
) -> Result<(), String> {
    let client = client(a).await?;
    let mwc = api_resource(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &mwc);
    let canonical = if rev == "default" {
        "istio-sidecar-injector".to_string()
    } else {
        format!("istio-sidecar-injector-{rev}")
    };
    let Some(injector) = retry(|| api.get_opt(&canonical))
        .await
        .map_err(|e| format!("reading {canonical}: {e}"))?
    else {
        return Err(format!(
            "cannot find MutatingWebhookConfiguration with revision \"{rev}\""
        ));
    };
    let name = format!("istio-revision-tag-{tag}");
    if !overwrite
        && retry(|| api.get_opt(&name))
            .await
            .map_err(|e| e.to_string())?
            .is_some()
    {
        return Err(format!(
            "revision tag \"{tag}\" already exists, and --overwrite is false"
        ));
    }
    let client_config = injector
        .data
        .pointer("/webhooks/0/clientConfig")
        .cloned()
        .unwrap_or(Value::Null);
    // The installer's own default tag keeps its component label, so an
    // uninstall removes it; `istioctl tag set` strips it (user-managed).
    let mut labels = json!({TAG_LABEL: tag, REV_LABEL: rev, "app": "sidecar-injector"});
    if by_installer {
        labels[COMPONENT_LABEL] = json!("Pilot");
    }
    let mut doc = webhook(&name, client_config.clone(), &labels);
    doc["metadata"]["labels"] = labels.clone();
    let mut docs = vec![doc];
    if tag == "default" {
        // As istioctl: the validator calls the same istiod, on /validate.
        let mut validate = client_config.clone();
        if validate.get("service").is_some() {
            validate["service"]["path"] = json!("/validate");
        }
        docs.push(json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "istiod-default-validator", "labels": labels.clone()},
            "webhooks": [{"name": "validation.istio.io", "clientConfig": validate,
                "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Ignore",
                "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["security.istio.io", "networking.istio.io"],
                    "apiVersions": ["*"], "resources": ["*"]}]}],
        }));
    }
    // The tag's Service (Istio's revision-tags-svc.yaml): the tag's name
    // for the revision's istiod.
    docs.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("istiod-revision-tag-{tag}"), "namespace": NS,
            "labels": {TAG_LABEL: tag, REV_LABEL: rev, "app": "istiod", "istio": "pilot"}},
        "spec": {"selector": {"app": "istiod", REV_LABEL: rev},
            "ports": [{"name": "grpc-xds", "port": 15010}, {"name": "https-dns", "port": 15012},
                {"name": "https-webhook", "port": 443, "targetPort": 15017},
                {"name": "http-monitoring", "port": 15014}]},
    }));
    let pp = PatchParams::apply("istio-ci").force();
    for obj in &docs {
        let (api, name) = api_for(&client, obj);
        let patch = Patch::Apply(obj);
        retry(|| api.patch(&name, &pp, &patch))
            .await
            .map_err(|e| format!("applying {name}: {e}"))?;
    }
    Ok(())
}

/// `istioctl tag remove`: every webhook configuration labelled with the tag.
async fn tag_remove(a: &Args, tag: &str) -> Result<usize, String> {
    let client = client(a).await?;
    let mut n = 0;
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let ar = api_resource("admissionregistration.k8s.io/v1", kind);
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let lp = ListParams::default().labels(&format!("{TAG_LABEL}={tag}"));
        let list = retry(|| api.list(&lp)).await.map_err(|e| e.to_string())?;
        for o in list.items {
            let name = o.metadata.name.unwrap_or_default();
            let dp = DeleteParams::default();
            match retry(|| api.delete(&name, &dp)).await {
                Ok(_) => n += 1,
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(format!("deleting {name}: {e}")),
            }
        }
    }
    if n == 0 {
        return Err(format!(
            "cannot remove tag \"{tag}\": cannot find MutatingWebhookConfiguration for tag"
        ));
    }
    // …and the tag's Services.
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), NS);
    let lp = ListParams::default().labels(&format!("{TAG_LABEL}={tag}"));
    let list = retry(|| services.list(&lp))
        .await
        .map_err(|e| e.to_string())?;
    for s in list.items {
        let name = s.metadata.name.unwrap_or_default();
        let dp = DeleteParams::default();
        match retry(|| services.delete(&name, &dp)).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(format!("deleting Service {name}: {e}")),
        }
    }
    Ok(n)
}

/// `istioctl tag list -o json`: `[{"tag", "revision", "namespaces"}]`.
async fn tag_list(a: &Args) -> Result<String, String> {
    let client = client(a).await?;
    let ar = api_resource(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let lp = ListParams::default().labels(TAG_LABEL);
    let list = retry(|| api.list(&lp)).await.map_err(|e| e.to_string())?;
    let tags: Vec<Value> = list
        .items
        .iter()
        .filter_map(|o| {
            let l = o.metadata.labels.as_ref()?;
            Some(json!({"tag": l.get(TAG_LABEL)?, "revision": l.get(REV_LABEL)?, "namespaces": []}))
        })
        .collect();
    serde_json::to_string_pretty(&tags).map_err(|e| e.to_string())
}

/// After an install that made a revision's injector: the `default` tag,
/// when there is none yet or the install is the unrevisioned control plane
/// (as the real istioctl does after installing).
async fn default_tag(a: &Args, rev: &str) -> Result<(), String> {
    let client = client(a).await?;
    let ar = api_resource(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let exists = retry(|| api.get_opt("istio-revision-tag-default"))
        .await
        .map_err(|e| e.to_string())?
        .is_some();
    if !exists || rev == "default" {
        tag_set(a, "default", rev, true, true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn flags_parse_like_istioctl() {
        let a = args("install -y -f - --context kind-c1 --kubeconfig /k").unwrap();
        assert_eq!(
            (
                a.command.as_str(),
                a.yes,
                a.file.as_deref(),
                a.context.as_deref(),
                a.kubeconfig.as_deref()
            ),
            ("install", true, Some("-"), Some("kind-c1"), Some("/k"))
        );
        let a = args("uninstall -y --purge --context=c").unwrap();
        assert!(a.purge && a.context.as_deref() == Some("c"));
        assert_eq!(
            args("install --bogus").unwrap_err(),
            "unknown flag: --bogus"
        );
        assert!(args("install --context").is_err());
    }

    fn kinds(objs: &[Value]) -> Vec<String> {
        objs.iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn profiles_make_their_objects() {
        let cp = objects_for(&json!({"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
            "spec": {"values": {"global": {"meshID": "mesh1"}, "pilot": {"env": {"EXTERNAL_ISTIOD": true}}}}})).unwrap();
        let k = kinds(&cp);
        for want in [
            "Namespace/istio-system",
            "CustomResourceDefinition/gateways.networking.istio.io",
            "CustomResourceDefinition/peerauthentications.security.istio.io",
            "Deployment/istiod",
            "Service/istiod",
            "ServiceAccount/istio-reader-service-account",
            "ClusterRole/istio-reader-clusterrole-istio-system",
            "ClusterRoleBinding/istio-reader-clusterrole-istio-system",
            "MutatingWebhookConfiguration/istio-sidecar-injector",
        ] {
            assert!(k.contains(&want.to_string()), "{want} in {k:?}");
        }
        assert!(cp.iter().any(|o| o.to_string().contains("EXTERNAL_ISTIOD")));
        let rev = objects_for(&json!({"spec": {"revision": "canary"}})).unwrap();
        assert!(kinds(&rev).contains(&"Deployment/istiod-canary".to_string()));

        let remote = objects_for(&json!({"spec": {"profile": "remote", "values": {"istiodRemote": {"injectionPath": "/inject/cluster/c2/net/n1"}, "global": {"remotePilotAddress": "172.18.0.200"}}}})).unwrap();
        let wh = remote
            .iter()
            .find(|o| o["kind"] == "MutatingWebhookConfiguration")
            .unwrap();
        assert_eq!(
            wh["webhooks"][0]["clientConfig"]["url"],
            "https://172.18.0.200:15017/inject/cluster/c2/net/n1"
        );
        assert!(objects_for(&json!({"spec": {"profile": "remote"}})).is_err());
        assert!(objects_for(&json!({"spec": {"profile": "nope"}})).is_err());
    }
}
