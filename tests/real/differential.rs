//! kubesim against the real API server: one script of requests (kube-rs
//! and the real kubectl of the real tier) run against a kubesim cluster and
//! a real kube-apiserver (tests/realk8s/harness.rs) in the same test; the
//! two records must agree on status codes, Status reasons and messages, and
//! the fields mesh reads. Values that legitimately differ (uids, timestamps,
//! resourceVersion numbers, addresses, temporary paths) are normalised,
//! never compared.
//!
//! The script (`script`): namespace and ConfigMap create, conflicting
//! create, get and create in missing places, replace with current, stale
//! and no resourceVersion, merge, JSON and strategic merge patches (with
//! their failures, no-op and stale resourceVersion), server-side apply by
//! several managers (shared fields, conflicts with Apply and Update
//! managers, `force`, dropped fields, no-op, no fieldManager) with the
//! managedFields owners after each, Secrets as mesh writes and reads them
//! (stringData, types, the token controller, the token authenticating),
//! a LoadBalancer Service's address, finalizers on an object, label and
//! field selectors, watches from a resourceVersion, namespace deletion
//! with a finalizer inside, CRD then CR (generation, /status, versions,
//! CRD deletion), discovery of the resources mesh uses, and the same verbs
//! through kubectl.
//!
//! What kubesim does not match is in `NOT_MODELLED`, one sentence each:
//! either outside what kubesim models (also in tests/kubesim/README.md) or
//! a reported kubesim bug. Each run writes both records to
//! `target/tmp/differential-{kubesim,real}.txt`.

use crate::harness;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    WatchParams,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Observations kubesim is known not to match: (step, field or `outcome`,
/// or `*` for the whole step; why). Recorded and printed, not asserted; an
/// entry that no longer differs fails the test, so the list stays true.
/// `BUG (reported)`: kubesim is wrong and is to be fixed (then the entry
/// goes); the others are outside what kubesim models (its README says so).
const NOT_MODELLED: &[(&str, &str, &str)] = &[
    // -- outside kubesim's model --
    (
        "kubectl: the reader token reads a namespace",
        "*",
        "RBAC: any valid token may do anything in kubesim; the real server forbids a \
         ServiceAccount without bindings",
    ),
    (
        "list: labels `set=sel` fields `data.a=1`",
        "*",
        "field selectors are not validated: kubesim filters on any dotted path, the API \
         server accepts only metadata.name, metadata.namespace and a few fields per kind",
    ),
    (
        "list: labels `tier in web` fields ``",
        "message",
        "the label selector parser's error messages are kubesim's own (code and reason match)",
    ),
    // -- kubesim bugs, reported --
    (
        "CR: apply (forced)",
        "managers",
        "BUG (reported): managedFields are kept per manager, not per (manager, operation): \
         mesh's Apply entry replaced its Update entry (and status-writer is missing while \
         /status writes own no fields)",
    ),
];

/// What one step of the script saw.
#[derive(Debug, Clone, PartialEq)]
struct Observation {
    step: String,
    /// `ok`, `<code> <reason>` for an API error, `exit <n>` for kubectl.
    outcome: String,
    /// The compared fields, normalised, in the order the step records them.
    fields: Vec<(String, String)>,
}

#[derive(Default)]
struct Record {
    obs: Vec<Observation>,
}

impl Record {
    fn push(&mut self, step: &str, outcome: String, fields: Vec<(&str, String)>) {
        assert!(
            self.obs.iter().all(|o| o.step != step),
            "step names must be unique: {step}"
        );
        self.obs.push(Observation {
            step: step.into(),
            outcome,
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        });
    }

    /// A kube-rs call: its outcome, and `fields` of the answer when it succeeded.
    fn api<T: k8s_openapi::serde::Serialize>(
        &mut self,
        step: &str,
        r: &kube::Result<T>,
        fields: impl FnOnce(&Value) -> Vec<(&'static str, String)>,
    ) {
        let f = match r {
            Ok(v) => fields(&serde_json::to_value(v).unwrap()),
            Err(kube::Error::Api(s)) => {
                let mut f = vec![("message", s.message.clone())];
                f.extend(conflict_causes(s));
                f
            }
            Err(_) => Vec::new(),
        };
        self.push(step, outcome(r), f);
    }

    /// A kubectl run: exit code, stdout and stderr (the temporary folder's
    /// path replaced by `$DIR`).
    fn kubectl(&mut self, step: &str, o: &Output, dir: &str) {
        let clean = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .replace(dir, "$DIR")
                .lines()
                .filter(|l| !l.contains("client-side throttling"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .to_string()
        };
        self.push(
            step,
            format!("exit {}", o.status.code().unwrap_or(-1)),
            vec![("stdout", clean(&o.stdout)), ("stderr", clean(&o.stderr))],
        );
    }
}

fn outcome<T>(r: &kube::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        // kube-rs's reason when the body was not a Status (a plain-text 404).
        Err(kube::Error::Api(s)) if s.reason == "Failed to parse error data" => {
            format!("{} (no Status body)", s.code)
        }
        Err(kube::Error::Api(s)) => format!("{} {}", s.code, s.reason),
        Err(e) => format!("error: {e}"),
    }
}

/// A Status's causes, `field (message)` (an apply conflict names its fields
/// and managers there).
fn conflict_causes(s: &kube::core::Status) -> Vec<(&'static str, String)> {
    let causes: Vec<String> = s
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .map(|c| format!("{} ({})", c.field, c.message))
        .collect();
    if causes.is_empty() {
        Vec::new()
    } else {
        vec![("causes", causes.join("; "))]
    }
}

// ---- reading answers ----

/// JSON with every object's keys sorted.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let b: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::to_value(b).unwrap()
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        v => v.clone(),
    }
}

fn at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .map(|x| match x {
            Value::String(s) => s.clone(),
            x => sorted(x).to_string(),
        })
        .unwrap_or_else(|| "(none)".into())
}

fn set(v: &Value, pointer: &str) -> String {
    if v.pointer(pointer).is_some_and(|x| !x.is_null()) {
        "set".into()
    } else {
        "unset".into()
    }
}

/// The object's keys at `pointer`, sorted.
fn keys(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            let k: BTreeSet<&String> = m.keys().collect();
            k.into_iter().cloned().collect::<Vec<_>>().join(",")
        })
        .unwrap_or_else(|| "(none)".into())
}

/// `manager/Operation` of every managedFields entry, sorted.
fn managers(v: &Value) -> String {
    let mut m: Vec<String> = v
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| format!("{}/{}", at(e, "/manager"), at(e, "/operation")))
        .collect();
    m.sort();
    m.join(", ")
}

/// The field paths `manager` owns: fieldsV1 flattened to dotted leaves
/// (`.` entries dropped, a list owned as a whole at its first item key).
fn owned(v: &Value, manager: &str) -> String {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut BTreeSet<String>) {
        let Some(m) = v.as_object() else { return };
        let children: Vec<_> = m.iter().filter(|(k, _)| *k != ".").collect();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path.join("."));
            }
            return;
        }
        for (k, c) in children {
            if let Some(name) = k.strip_prefix("f:") {
                path.push(name.to_string());
                walk(c, path, out);
                path.pop();
            } else if !path.is_empty() {
                // k:, v:, i: (an item of a list): the list.
                out.insert(path.join("."));
            }
        }
    }
    let mut out = BTreeSet::new();
    for e in v
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e["manager"] == manager)
    {
        walk(&e["fieldsV1"], &mut Vec::new(), &mut out);
    }
    out.into_iter().collect::<Vec<_>>().join(", ")
}

fn rv(v: &Value) -> String {
    at(v, "/metadata/resourceVersion")
}

fn names(items: &[DynamicObject]) -> String {
    let mut n: Vec<String> = items
        .iter()
        .map(|o| o.metadata.name.clone().unwrap_or_default())
        .collect();
    n.sort();
    n.join(",")
}

// ---- requests ----

fn ar(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

fn cm(name: &str, labels: Value, data: Value) -> Value {
    let mut meta = json!({"name": name});
    if labels.as_object().is_some_and(|l| !l.is_empty()) {
        meta["labels"] = labels;
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
}

fn post(manager: &str) -> PostParams {
    PostParams {
        field_manager: Some(manager.into()),
        ..Default::default()
    }
}

fn patch_as(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.into()),
        ..Default::default()
    }
}

async fn apply(
    api: &Api<DynamicObject>,
    name: &str,
    manager: &str,
    force: bool,
    body: Value,
) -> kube::Result<DynamicObject> {
    let mut pp = PatchParams::apply(manager);
    if force {
        pp = pp.force();
    }
    api.patch(name, &pp, &Patch::Apply(&body)).await
}

/// DELETE: the answer as JSON, the deleted object or a `Status` (marked
/// `kind: Status`).
async fn del(api: &Api<DynamicObject>, name: &str) -> kube::Result<Value> {
    api.delete(name, &DeleteParams::default()).await.map(|e| {
        e.either(
            |o| serde_json::to_value(o).unwrap(),
            |st| {
                let mut v = serde_json::to_value(st).unwrap();
                v["kind"] = json!("Status");
                v
            },
        )
    })
}

/// Polls `f` until it is true, for at most `timeout`; says how long it took.
async fn until<F: Future<Output = bool>>(what: &str, timeout: Duration, f: impl Fn() -> F) -> bool {
    let t0 = Instant::now();
    let deadline = t0 + timeout;
    loop {
        if f().await {
            eprintln!("  waited {:.1} s for {what}", t0.elapsed().as_secs_f64());
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "  gave up waiting for {what} after {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn gone(api: &Api<DynamicObject>, name: &str) -> bool {
    matches!(api.get_opt(name).await, Ok(None))
}

/// The events of a watch from `version` (`path` is the collection's URL),
/// as `TYPE name`, until the server ends it (`timeoutSeconds`).
async fn watch_events(
    client: &kube::Client,
    path: &str,
    wp: &WatchParams,
    version: &str,
) -> (String, String) {
    let req = kube::core::Request::new(path).watch(wp, version).unwrap();
    let text = match client.request_text(req).await {
        Ok(t) => t,
        Err(e) => return (outcome::<()>(&Err(e)), String::new()),
    };
    let seen: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let ev: Value = serde_json::from_str(l).unwrap_or_default();
            match at(&ev, "/type").as_str() {
                "ERROR" => format!(
                    "ERROR {} {}",
                    at(&ev, "/object/code"),
                    at(&ev, "/object/reason")
                ),
                t => format!("{t} {}", at(&ev, "/object/metadata/name")),
            }
        })
        .collect();
    ("ok".into(), seen.join(", "))
}

/// Discovery of one resource: namespaced, kind and the verbs that matter.
fn discovered(
    list: &kube::Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList>,
    name: &str,
) -> String {
    const VERBS: &[&str] = &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    let Ok(list) = list else {
        return format!("discovery failed: {}", outcome(list));
    };
    match list.resources.iter().find(|r| r.name == name) {
        None => "(not listed)".into(),
        Some(r) => {
            let verbs: Vec<&str> = VERBS
                .iter()
                .copied()
                .filter(|v| r.verbs.iter().any(|x| x == v))
                .collect();
            format!(
                "namespaced={} kind={} verbs={}",
                r.namespaced,
                r.kind,
                verbs.join(",")
            )
        }
    }
}

// ---- the script ----

/// The request script, run once against each server.
async fn script(client: kube::Client, kubectl: impl Fn(&[&str]) -> Output) -> Vec<Observation> {
    let mut s = Record::default();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_string();
    let file = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let c = || client.clone();
    let ns_ar = ar("v1", "Namespace", "namespaces");
    let cm_ar = ar("v1", "ConfigMap", "configmaps");
    let namespaces: Api<DynamicObject> = Api::all_with(c(), &ns_ar);
    let cms: Api<DynamicObject> = Api::namespaced_with(c(), "diff", &cm_ar);

    // -- namespaces and plain CRUD --
    let r = namespaces
        .create(
            &post("differential"),
            &obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "diff"}})),
        )
        .await;
    s.api("namespace: create", &r, |v| {
        vec![
            ("phase", at(v, "/status/phase")),
            ("spec.finalizers", at(v, "/spec/finalizers")),
            ("labels", at(v, "/metadata/labels")),
            ("managers", managers(v)),
            ("owned:differential", owned(v, "differential")),
        ]
    });

    let r = cms
        .create(
            &post("creator"),
            &obj(cm("c1", json!({"app": "one"}), json!({"a": "1"}))),
        )
        .await;
    let rv_created = r
        .as_ref()
        .map(|o| o.metadata.resource_version.clone().unwrap_or_default())
        .unwrap_or_default();
    s.api("create", &r, |v| {
        vec![
            ("uid", set(v, "/metadata/uid")),
            ("resourceVersion", set(v, "/metadata/resourceVersion")),
            ("creationTimestamp", set(v, "/metadata/creationTimestamp")),
            ("namespace", at(v, "/metadata/namespace")),
            ("data", at(v, "/data")),
            ("managers", managers(v)),
            ("owned:creator", owned(v, "creator")),
        ]
    });
    let r = cms
        .create(
            &post("creator"),
            &obj(cm("c1", json!({}), json!({"a": "other"}))),
        )
        .await;
    s.api("create: already exists", &r, |_| vec![]);
    let r = cms.get("nope").await;
    s.api("get: missing", &r, |_| vec![]);
    let missing_ns: Api<DynamicObject> = Api::namespaced_with(c(), "no-such-ns", &cm_ar);
    let r = missing_ns.get("c1").await;
    s.api("get: in a missing namespace", &r, |_| vec![]);
    let r = missing_ns
        .create(&post("creator"), &obj(cm("c1", json!({}), json!({}))))
        .await;
    s.api("create: in a missing namespace", &r, |_| vec![]);

    let mut body = cm("c1", json!({"app": "one"}), json!({"a": "2"}));
    body["metadata"]["resourceVersion"] = json!(rv_created);
    let r = cms
        .replace("c1", &post("replacer"), &obj(body.clone()))
        .await;
    s.api("replace: current resourceVersion", &r, |v| {
        vec![
            ("resourceVersion changed", (rv(v) != rv_created).to_string()),
            ("data", at(v, "/data")),
            ("managers", managers(v)),
            ("owned:replacer", owned(v, "replacer")),
        ]
    });
    let r = cms.replace("c1", &post("replacer"), &obj(body)).await;
    s.api("replace: stale resourceVersion", &r, |_| vec![]);
    let r = cms
        .replace(
            "c1",
            &post("replacer"),
            &obj(cm("c1", json!({"app": "one"}), json!({"a": "3"}))),
        )
        .await;
    s.api("replace: no resourceVersion", &r, |v| {
        vec![("data", at(v, "/data"))]
    });
    let r = cms
        .replace(
            "nope",
            &post("replacer"),
            &obj(cm("nope", json!({}), json!({}))),
        )
        .await;
    s.api("replace: missing object", &r, |_| vec![]);
    let r = del(&cms, "nope").await;
    s.api("delete: missing object", &r, |_| vec![]);

    // -- patches --
    let r = cms
        .patch(
            "c1",
            &patch_as("patcher"),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "web", "app": null}, "annotations": {"note": "x"}}})),
        )
        .await;
    let rv_patched = r
        .as_ref()
        .map(|o| o.metadata.resource_version.clone().unwrap_or_default())
        .unwrap_or_default();
    s.api("merge patch: labels and annotations", &r, |v| {
        vec![
            ("labels", at(v, "/metadata/labels")),
            ("annotations", at(v, "/metadata/annotations")),
            ("managers", managers(v)),
            ("owned:patcher", owned(v, "patcher")),
        ]
    });
    let r = cms
        .patch(
            "c1",
            &patch_as("patcher"),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
        )
        .await;
    s.api("merge patch: no change", &r, |v| {
        vec![("resourceVersion changed", (rv(v) != rv_patched).to_string())]
    });
    let r = cms
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"m": "1"}})),
        )
        .await;
    s.api("merge patch: no field manager", &r, |v| {
        vec![("data", at(v, "/data")), ("managers", managers(v))]
    });
    let r = cms
        .patch(
            "c1",
            &patch_as("jsonpatcher"),
            &Patch::<Value>::Json(
                serde_json::from_value(json!([
                    {"op": "add", "path": "/data/j", "value": "1"},
                    {"op": "replace", "path": "/data/a", "value": "4"}
                ]))
                .unwrap(),
            ),
        )
        .await;
    s.api("JSON patch: add and replace", &r, |v| {
        vec![
            ("data", at(v, "/data")),
            ("managers", managers(v)),
            ("owned:jsonpatcher", owned(v, "jsonpatcher")),
        ]
    });
    let r = cms
        .patch(
            "c1",
            &patch_as("jsonpatcher"),
            &Patch::<Value>::Json(
                serde_json::from_value(json!([{"op": "test", "path": "/data/a", "value": "nope"}]))
                    .unwrap(),
            ),
        )
        .await;
    s.api("JSON patch: failing test", &r, |_| vec![]);
    let r = cms
        .patch(
            "c1",
            &patch_as("jsonpatcher"),
            &Patch::<Value>::Json(
                serde_json::from_value(json!([{"op": "remove", "path": "/data/nope"}])).unwrap(),
            ),
        )
        .await;
    s.api("JSON patch: remove a missing key", &r, |_| vec![]);
    let r = cms
        .patch(
            "c1",
            &patch_as("patcher"),
            &Patch::Merge(json!({"metadata": {"resourceVersion": rv_created}, "data": {"x": "1"}})),
        )
        .await;
    s.api("merge patch: stale resourceVersion", &r, |_| vec![]);
    let r = cms
        .patch(
            "nope",
            &patch_as("patcher"),
            &Patch::Merge(json!({"data": {"x": "1"}})),
        )
        .await;
    s.api("merge patch: missing object", &r, |_| vec![]);
    let r = cms
        .patch(
            "c1",
            &patch_as("strategic"),
            &Patch::Strategic(json!({"data": {"s": "1"}})),
        )
        .await;
    s.api("strategic merge patch", &r, |v| {
        vec![("data", at(v, "/data")), ("managers", managers(v))]
    });

    // -- server-side apply --
    let r = apply(
        &cms,
        "c2",
        "ssa-a",
        false,
        cm("c2", json!({"owner": "a"}), json!({"x": "1", "y": "2"})),
    )
    .await;
    s.api("apply: create", &r, |v| {
        vec![
            ("data", at(v, "/data")),
            ("managers", managers(v)),
            ("owned:ssa-a", owned(v, "ssa-a")),
        ]
    });
    let r = apply(
        &cms,
        "c2",
        "ssa-b",
        false,
        cm("c2", json!({}), json!({"z": "3"})),
    )
    .await;
    s.api("apply: another manager, other fields", &r, |v| {
        vec![
            ("data", at(v, "/data")),
            ("managers", managers(v)),
            ("owned:ssa-b", owned(v, "ssa-b")),
        ]
    });
    let r = apply(
        &cms,
        "c2",
        "ssa-b",
        false,
        cm("c2", json!({}), json!({"z": "3", "x": "1"})),
    )
    .await;
    s.api("apply: same value as another manager", &r, |v| {
        vec![
            ("data", at(v, "/data")),
            ("owned:ssa-a", owned(v, "ssa-a")),
            ("owned:ssa-b", owned(v, "ssa-b")),
        ]
    });
    let r = apply(
        &cms,
        "c2",
        "ssa-b",
        false,
        cm("c2", json!({}), json!({"z": "3", "x": "1", "y": "other"})),
    )
    .await;
    s.api("apply: conflicting value", &r, |_| vec![]);
    let r = apply(
        &cms,
        "c2",
        "ssa-b",
        true,
        cm("c2", json!({}), json!({"z": "3", "x": "1", "y": "other"})),
    )
    .await;
    s.api("apply: conflicting value, forced", &r, |v| {
        vec![
            ("data", at(v, "/data")),
            ("owned:ssa-a", owned(v, "ssa-a")),
            ("owned:ssa-b", owned(v, "ssa-b")),
        ]
    });
    let r = apply(
        &cms,
        "c2",
        "ssa-b",
        false,
        cm("c2", json!({}), json!({"z": "3"})),
    )
    .await;
    s.api("apply: a manager drops fields", &r, |v| {
        vec![
            ("data", at(v, "/data")),
            ("owned:ssa-a", owned(v, "ssa-a")),
            ("owned:ssa-b", owned(v, "ssa-b")),
        ]
    });
    let r = cms
        .patch(
            "c2",
            &patch_as("editor"),
            &Patch::Merge(json!({"data": {"w": "1"}})),
        )
        .await;
    s.api("apply: an update by another manager", &r, |v| {
        vec![
            ("managers", managers(v)),
            ("owned:editor", owned(v, "editor")),
        ]
    });
    let r = apply(
        &cms,
        "c2",
        "ssa-a",
        false,
        cm("c2", json!({"owner": "a"}), json!({"x": "1", "w": "2"})),
    )
    .await;
    s.api("apply: conflict with an update manager", &r, |_| vec![]);
    let r = apply(
        &cms,
        "c2",
        "ssa-a",
        false,
        cm("c2", json!({"owner": "a"}), json!({"x": "1", "w": "1"})),
    )
    .await;
    let rv_applied = r
        .as_ref()
        .map(|o| o.metadata.resource_version.clone().unwrap_or_default())
        .unwrap_or_default();
    s.api("apply: same value as an update manager", &r, |v| {
        vec![
            ("data", at(v, "/data")),
            ("owned:ssa-a", owned(v, "ssa-a")),
            ("owned:editor", owned(v, "editor")),
        ]
    });
    let r = apply(
        &cms,
        "c2",
        "ssa-a",
        false,
        cm("c2", json!({"owner": "a"}), json!({"x": "1", "w": "1"})),
    )
    .await;
    s.api("apply: no change", &r, |v| {
        vec![("resourceVersion changed", (rv(v) != rv_applied).to_string())]
    });
    let r = apply(
        &cms,
        "c2",
        "ssa-a",
        false,
        cm("other-name", json!({}), json!({})),
    )
    .await;
    s.api("apply: name differs from the URL", &r, |_| vec![]);
    let r = apply(
        &missing_ns,
        "c2",
        "ssa-a",
        false,
        cm("c2", json!({}), json!({})),
    )
    .await;
    s.api("apply: in a missing namespace", &r, |_| vec![]);
    {
        // No fieldManager at all (kube-rs refuses to send it: built by hand).
        let body = cm("c2", json!({}), json!({"x": "1"}));
        let mut req = kube::core::Request::new("/api/v1/namespaces/diff/configmaps")
            .patch("c2", &PatchParams::apply("x"), &Patch::Apply(&body))
            .unwrap();
        *req.uri_mut() = "/api/v1/namespaces/diff/configmaps/c2".parse().unwrap();
        let r = client.request::<Value>(req).await;
        s.api("apply: no field manager", &r, |_| vec![]);
    }

    // -- Secrets, as mesh writes and reads them --
    let secrets: Api<DynamicObject> =
        Api::namespaced_with(c(), "diff", &ar("v1", "Secret", "secrets"));
    let r = apply(
        &secrets,
        "s-string",
        "mesh",
        true,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s-string"}, "stringData": {"k": "v"}}),
    )
    .await;
    s.api("secret: stringData", &r, |v| {
        vec![
            ("data", at(v, "/data")),
            ("stringData", at(v, "/stringData")),
            ("type", at(v, "/type")),
        ]
    });
    let r = secrets
        .create(
            &post("mesh"),
            &obj(
                json!({"apiVersion": "v1", "kind": "Secret", "type": "example.com/custom",
                "metadata": {"name": "s-custom"}, "data": {"k": "dg=="}}),
            ),
        )
        .await;
    s.api("secret: custom type", &r, |v| {
        vec![("data", at(v, "/data")), ("type", at(v, "/type"))]
    });
    let sas: Api<DynamicObject> =
        Api::namespaced_with(c(), "diff", &ar("v1", "ServiceAccount", "serviceaccounts"));
    let r = sas
        .create(
            &post("mesh"),
            &obj(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}})),
        )
        .await;
    s.api("serviceaccount: create", &r, |_| vec![]);
    let r = secrets
        .create(
            &post("mesh"),
            &obj(json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                "metadata": {"name": "reader-token", "annotations": {"kubernetes.io/service-account.name": "reader"}}})),
        )
        .await;
    s.api("secret: service-account token", &r, |_| vec![]);
    let filled = {
        let a = &secrets;
        until("the token", Duration::from_secs(30), move || async move {
            a.get("reader-token")
                .await
                .is_ok_and(|o| o.data.pointer("/data/token").is_some())
        })
        .await
    };
    let r = secrets.get("reader-token").await;
    s.api("secret: token filled by the controller", &r, |v| {
        let ns = v
            .pointer("/data/namespace")
            .and_then(Value::as_str)
            .map(|b| {
                use base64::Engine as _;
                String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .unwrap_or_default(),
                )
                .into_owned()
            })
            .unwrap_or_default();
        vec![
            ("filled", filled.to_string()),
            ("data keys", keys(v, "/data")),
            ("data.namespace", ns),
            (
                "annotation",
                at(
                    v,
                    "/metadata/annotations/kubernetes.io~1service-account.name",
                ),
            ),
        ]
    });
    let r = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/service-account-token"))
        .await;
    s.api("secret: list by type (token)", &r, |_| vec![]);
    if let Ok(l) = &r {
        s.obs
            .last_mut()
            .unwrap()
            .fields
            .push(("names".into(), names(&l.items)));
    }
    let r = secrets
        .list(&ListParams::default().fields("type=example.com/custom"))
        .await;
    s.api("secret: list by type (custom)", &r, |_| vec![]);
    if let Ok(l) = &r {
        s.obs
            .last_mut()
            .unwrap()
            .fields
            .push(("names".into(), names(&l.items)));
    }
    // The token authenticates; what it may do is RBAC's business.
    let token = reader_token(&secrets).await;
    let o = kubectl(&["--token", &token, "get", "namespace", "diff", "-o", "name"]);
    s.kubectl("kubectl: the reader token reads a namespace", &o, &dir);
    let o = kubectl(&[
        "--token",
        "not-a-token",
        "get",
        "namespace",
        "diff",
        "-o",
        "name",
    ]);
    s.kubectl("kubectl: a wrong token", &o, &dir);

    // -- a LoadBalancer Service gets its address --
    let services: Api<DynamicObject> =
        Api::namespaced_with(c(), "diff", &ar("v1", "Service", "services"));
    let r = apply(
        &services,
        "lb",
        "mesh",
        true,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "lb"},
                "ports": [{"name": "tls", "port": 15443, "targetPort": 15443}]}}),
    )
    .await;
    s.api("service: apply a LoadBalancer", &r, |v| {
        vec![
            ("type", at(v, "/spec/type")),
            ("ports", at(v, "/spec/ports/0/port")),
        ]
    });
    let got_ip = {
        let a = &services;
        until(
            "the load balancer's address",
            Duration::from_secs(30),
            move || async move {
                a.get("lb").await.is_ok_and(|o| {
                    o.data
                        .pointer("/status/loadBalancer/ingress/0/ip")
                        .is_some()
                })
            },
        )
        .await
    };
    s.push(
        "service: the load balancer's address",
        "ok".into(),
        vec![("ingress[0].ip", if got_ip { "set" } else { "unset" }.into())],
    );

    // -- finalizers on an object --
    let r = cms
        .create(
            &post("creator"),
            &obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})),
        )
        .await;
    s.api("finalizer: create", &r, |v| {
        vec![("finalizers", at(v, "/metadata/finalizers"))]
    });
    let r = del(&cms, "held").await;
    s.api("finalizer: delete", &r, |v| {
        vec![
            ("answer", at(v, "/kind")),
            ("deletionTimestamp", set(v, "/metadata/deletionTimestamp")),
        ]
    });
    let r = cms.get("held").await;
    s.api("finalizer: still there", &r, |v| {
        vec![("deletionTimestamp", set(v, "/metadata/deletionTimestamp"))]
    });
    let r = cms
        .patch(
            "held",
            &patch_as("finisher"),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    s.api("finalizer: remove it", &r, |_| vec![]);
    let r = cms.get("held").await;
    s.api("finalizer: then it is gone", &r, |_| vec![]);
    let r = del(&cms, "c1").await;
    s.api("delete: an object without finalizers", &r, |v| {
        vec![("answer", at(v, "/kind")), ("status", at(v, "/status"))]
    });

    let r = del(&secrets, "s-custom").await;
    s.api("delete: a Secret", &r, |v| vec![("answer", at(v, "/kind"))]);
    let r = del(&services, "lb").await;
    s.api("delete: a Service", &r, |v| {
        vec![("answer", at(v, "/kind"))]
    });

    // -- label and field selectors --
    for (name, labels) in [
        ("sel-a", json!({"set": "sel", "tier": "web", "env": "prod"})),
        ("sel-b", json!({"set": "sel", "tier": "db", "env": "prod"})),
        ("sel-c", json!({"set": "sel", "tier": "web"})),
        ("sel-d", json!({"set": "sel"})),
    ] {
        let r = cms
            .create(&post("creator"), &obj(cm(name, labels, json!({}))))
            .await;
        s.api(&format!("selectors: create {name}"), &r, |_| vec![]);
    }
    for (labels, fields) in [
        ("set=sel,tier=web", ""),
        ("set=sel,tier==web", ""),
        ("set=sel,tier!=web", ""),
        ("set=sel,tier in (web,db)", ""),
        ("set=sel,tier notin (web)", ""),
        ("set=sel,env", ""),
        ("set=sel,!env", ""),
        ("set=sel,tier=web,env=prod", ""),
        ("set=sel", "metadata.name=sel-a"),
        ("set=sel", "metadata.name!=sel-a"),
        ("set=sel", "metadata.namespace=diff,metadata.name=sel-b"),
        ("tier in web", ""),
        ("set=sel", "data.a=1"),
    ] {
        let mut lp = ListParams::default().labels(labels);
        if !fields.is_empty() {
            lp = lp.fields(fields);
        }
        let r = cms.list(&lp).await;
        let step = format!("list: labels `{labels}` fields `{fields}`");
        s.api(&step, &r, |_| vec![]);
        if let Ok(l) = &r {
            s.obs
                .last_mut()
                .unwrap()
                .fields
                .push(("names".into(), names(&l.items)));
        }
    }
    let all_cms: Api<DynamicObject> = Api::all_with(c(), &cm_ar);
    let r = all_cms
        .list(&ListParams::default().labels("set=sel,env=prod"))
        .await;
    s.api("list: all namespaces", &r, |_| vec![]);
    if let Ok(l) = &r {
        s.obs
            .last_mut()
            .unwrap()
            .fields
            .push(("names".into(), names(&l.items)));
    }

    // -- watch from a resourceVersion --
    let r = cms
        .create(
            &post("creator"),
            &obj(cm("w1", json!({"watch": "yes"}), json!({}))),
        )
        .await;
    s.api("watch: create w1", &r, |_| vec![]);
    let listed = cms.list(&ListParams::default().labels("watch=yes")).await;
    let list_rv = listed
        .as_ref()
        .map(|l| l.metadata.resource_version.clone().unwrap_or_default())
        .unwrap_or_default();
    s.api("watch: list", &listed, |_| vec![]);
    let r = cms
        .patch(
            "w1",
            &patch_as("editor"),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await;
    s.api("watch: modify w1", &r, |_| vec![]);
    let r = cms
        .create(
            &post("creator"),
            &obj(cm("w2", json!({"watch": "yes"}), json!({}))),
        )
        .await;
    s.api("watch: create w2", &r, |_| vec![]);
    let r = cms
        .create(
            &post("creator"),
            &obj(cm("w3", json!({"watch": "no"}), json!({}))),
        )
        .await;
    s.api("watch: create w3 (not selected)", &r, |_| vec![]);
    let r = del(&cms, "w1").await;
    s.api("watch: delete w1", &r, |_| vec![]);
    let cms_path = "/api/v1/namespaces/diff/configmaps";
    let wp = WatchParams::default()
        .labels("watch=yes")
        .timeout(2)
        .disable_bookmarks();
    let (o, events) = watch_events(&client, cms_path, &wp, &list_rv).await;
    s.push(
        "watch: from the list's resourceVersion",
        o,
        vec![("events", events)],
    );
    let (o, events) = watch_events(&client, cms_path, &wp, "0").await;
    s.push("watch: from resourceVersion 0", o, vec![("events", events)]);
    let wp = WatchParams::default()
        .fields("metadata.name=w2")
        .timeout(2)
        .disable_bookmarks();
    let (o, events) = watch_events(&client, cms_path, &wp, &list_rv).await;
    s.push(
        "watch: by field, from the list's resourceVersion",
        o,
        vec![("events", events)],
    );

    // -- deleting a namespace with a finalizer in it --
    let r = namespaces
        .create(
            &post("differential"),
            &obj(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})),
        )
        .await;
    s.api("namespace deletion: create", &r, |_| vec![]);
    let doomed: Api<DynamicObject> = Api::namespaced_with(c(), "doomed", &cm_ar);
    let r = doomed
        .create(&post("creator"), &obj(cm("plain", json!({}), json!({}))))
        .await;
    s.api("namespace deletion: create plain", &r, |_| vec![]);
    let r = doomed
        .create(
            &post("creator"),
            &obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "held", "finalizers": ["example.com/hold"]}})),
        )
        .await;
    s.api("namespace deletion: create held", &r, |_| vec![]);
    let r = del(&namespaces, "doomed").await;
    s.api("namespace deletion: delete", &r, |v| {
        vec![
            ("answer", at(v, "/kind")),
            ("phase", at(v, "/status/phase")),
            ("deletionTimestamp", set(v, "/metadata/deletionTimestamp")),
        ]
    });
    let r = del(&namespaces, "doomed").await;
    s.api("namespace deletion: delete again", &r, |v| {
        vec![
            ("answer", at(v, "/kind")),
            ("phase", at(v, "/status/phase")),
        ]
    });
    let r = doomed
        .create(&post("creator"), &obj(cm("late", json!({}), json!({}))))
        .await;
    s.api("namespace deletion: create in it", &r, |_| vec![]);
    let plain_gone = {
        let a = &doomed;
        until("plain to go", Duration::from_secs(60), move || {
            gone(a, "plain")
        })
        .await
    };
    let held = doomed.get("held").await;
    let ns = namespaces.get("doomed").await;
    s.push(
        "namespace deletion: content removed, the finalizer holds",
        "ok".into(),
        vec![
            ("plain gone", plain_gone.to_string()),
            ("held", outcome(&held)),
            (
                "held deletionTimestamp",
                held.as_ref()
                    .map(|o| o.metadata.deletion_timestamp.is_some().to_string())
                    .unwrap_or_default(),
            ),
            ("namespace", outcome(&ns)),
            (
                "namespace phase",
                ns.as_ref()
                    .map(|o| at(&o.data, "/status/phase"))
                    .unwrap_or_default(),
            ),
        ],
    );
    let r = doomed
        .patch(
            "held",
            &patch_as("finisher"),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    s.api("namespace deletion: remove the finalizer", &r, |_| vec![]);
    let ns_gone = {
        let a = &namespaces;
        until("the namespace to go", Duration::from_secs(60), move || {
            gone(a, "doomed")
        })
        .await
    };
    let r = namespaces.get("doomed").await;
    s.api(
        "namespace deletion: then the namespace goes",
        &r,
        |_| vec![],
    );
    s.obs
        .last_mut()
        .unwrap()
        .fields
        .push(("gone".into(), ns_gone.to_string()));

    // -- CRD then CR --
    let crds: Api<DynamicObject> = Api::all_with(
        c(),
        &ar(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        ),
    );
    let gw_ar = ar("networking.istio.io/v1", "Gateway", "gateways");
    let gateways: Api<DynamicObject> = Api::namespaced_with(c(), "diff", &gw_ar);
    let gw = |name: &str, spec: Value| {
        obj(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": name}, "spec": spec}),
        )
    };
    let o = kubectl(&[
        "get",
        "gateways.networking.istio.io",
        "-n",
        "diff",
        "-o",
        "name",
    ]);
    s.kubectl("kubectl: get a kind before its CRD", &o, &dir);
    let r = gateways
        .create(&post("mesh"), &gw("early", json!({})))
        .await;
    s.api("CR: create before its CRD", &r, |_| vec![]);
    let crd = |kind: &str, plural: &str| {
        obj(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.networking.istio.io")},
            "spec": {
                "group": "networking.istio.io", "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                     "subresources": {"status": {}}},
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                     "subresources": {"status": {}}}
                ]
            }
        }))
    };
    let r = crds
        .create(&post("mesh"), &crd("Gateway", "gateways"))
        .await;
    s.api("CRD: create", &r, |_| vec![]);
    let r = crds
        .create(&post("mesh"), &crd("VirtualService", "virtualservices"))
        .await;
    s.api("CRD: create another", &r, |_| vec![]);
    let established = {
        let a = &crds;
        until("Established", Duration::from_secs(30), move || async move {
            a.get("gateways.networking.istio.io").await.is_ok_and(|o| {
                o.data
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Established" && c["status"] == "True")
                    })
            })
        })
        .await
    };
    let r = crds.get("gateways.networking.istio.io").await;
    s.api("CRD: established", &r, |v| {
        let mut conds: Vec<String> = v
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| format!("{}={}", at(c, "/type"), at(c, "/status")))
            .collect();
        conds.sort();
        vec![
            ("established", established.to_string()),
            ("conditions", conds.join(",")),
            ("acceptedNames.kind", at(v, "/status/acceptedNames/kind")),
        ]
    });
    // The CR endpoint may lag a moment behind Established: retry a 404.
    let mut r = gateways
        .create(
            &post("mesh"),
            &gw("gw1", json!({"servers": [{"port": {"number": 15443}}]})),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while matches!(&r, Err(kube::Error::Api(st)) if st.code == 404) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        r = gateways
            .create(
                &post("mesh"),
                &gw("gw1", json!({"servers": [{"port": {"number": 15443}}]})),
            )
            .await;
    }
    s.api("CR: create", &r, |v| {
        vec![
            ("generation", at(v, "/metadata/generation")),
            ("spec", at(v, "/spec")),
            ("managers", managers(v)),
        ]
    });
    let r = gateways
        .patch(
            "gw1",
            &patch_as("editor"),
            &Patch::Merge(json!({"spec": {"selector": {"istio": "eastwestgateway"}}})),
        )
        .await;
    s.api("CR: a spec change", &r, |v| {
        vec![("generation", at(v, "/metadata/generation"))]
    });
    let r = gateways
        .patch(
            "gw1",
            &patch_as("editor"),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await;
    s.api("CR: a metadata change", &r, |v| {
        vec![("generation", at(v, "/metadata/generation"))]
    });
    let r = gateways
        .patch_status(
            "gw1",
            &patch_as("status-writer"),
            &Patch::Merge(json!({"status": {"ready": true}})),
        )
        .await;
    s.api("CR: patch /status", &r, |v| {
        vec![
            ("generation", at(v, "/metadata/generation")),
            ("status", at(v, "/status")),
            ("managers", managers(v)),
            ("owned:status-writer", owned(v, "status-writer")),
        ]
    });
    let r = gateways
        .patch(
            "gw1",
            &patch_as("editor"),
            &Patch::Merge(json!({"status": {"ready": false}})),
        )
        .await;
    s.api("CR: status through the main resource", &r, |v| {
        vec![("status", at(v, "/status"))]
    });
    let r = apply(
        &gateways,
        "gw1",
        "mesh",
        true,
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "gw1"},
            "spec": {"selector": {"istio": "eastwestgateway"}, "servers": [{"port": {"number": 15443}}]}}),
    )
    .await;
    s.api("CR: apply (forced)", &r, |v| {
        vec![
            ("generation", at(v, "/metadata/generation")),
            ("managers", managers(v)),
            ("owned:mesh", owned(v, "mesh")),
        ]
    });
    let beta: Api<DynamicObject> = Api::namespaced_with(
        c(),
        "diff",
        &ar("networking.istio.io/v1beta1", "Gateway", "gateways"),
    );
    let r = beta.get("gw1").await;
    s.api("CR: get through another served version", &r, |v| {
        vec![
            ("apiVersion", at(v, "/apiVersion")),
            ("spec", at(v, "/spec")),
        ]
    });
    let o = kubectl(&[
        "get",
        "gateways.networking.istio.io",
        "-n",
        "diff",
        "-o",
        "name",
    ]);
    s.kubectl("kubectl: get the CRs", &o, &dir);

    // -- discovery --
    let core = client.list_core_api_resources("v1").await;
    for name in [
        "namespaces",
        "secrets",
        "services",
        "serviceaccounts",
        "configmaps",
    ] {
        s.push(
            &format!("discovery: v1 {name}"),
            outcome(&core),
            vec![("resource", discovered(&core, name))],
        );
    }
    for (gv, name) in [
        ("apps/v1", "deployments"),
        ("networking.istio.io/v1", "gateways"),
        ("networking.istio.io/v1", "virtualservices"),
        ("networking.istio.io/v1beta1", "gateways"),
        ("apiextensions.k8s.io/v1", "customresourcedefinitions"),
    ] {
        let l = client.list_api_group_resources(gv).await;
        s.push(
            &format!("discovery: {gv} {name}"),
            outcome(&l),
            vec![("resource", discovered(&l, name))],
        );
    }
    let groups = client.list_api_groups().await;
    for g in ["apps", "networking.istio.io", "apiextensions.k8s.io"] {
        let f = groups
            .as_ref()
            .ok()
            .and_then(|l| l.groups.iter().find(|x| x.name == g))
            .map(|x| {
                let mut vs: Vec<String> = x.versions.iter().map(|v| v.version.clone()).collect();
                vs.sort();
                format!(
                    "preferred={} versions={}",
                    x.preferred_version
                        .as_ref()
                        .map(|p| p.version.clone())
                        .unwrap_or_default(),
                    vs.join(",")
                )
            })
            .unwrap_or_else(|| "(not listed)".into());
        s.push(
            &format!("discovery: group {g}"),
            outcome(&groups),
            vec![("group", f)],
        );
    }
    let o = kubectl(&[
        "api-resources",
        "--verbs=get,list,watch,create,patch,delete",
        "-o",
        "name",
    ]);
    let wanted = [
        "namespaces",
        "secrets",
        "services",
        "serviceaccounts",
        "configmaps",
        "deployments.apps",
        "gateways.networking.istio.io",
        "virtualservices.networking.istio.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    ];
    let listed: Vec<&str> = std::str::from_utf8(&o.stdout)
        .unwrap_or_default()
        .lines()
        .filter(|l| wanted.contains(l))
        .collect();
    s.push(
        "kubectl: api-resources",
        format!("exit {}", o.status.code().unwrap_or(-1)),
        vec![("listed", listed.join(","))],
    );

    // -- deleting a CRD takes its CRs --
    let r = gateways
        .create(&post("mesh"), &gw("gw-del", json!({})))
        .await;
    s.api("CR: create another", &r, |_| vec![]);
    let r = del(&gateways, "gw-del").await;
    s.api("CR: delete", &r, |v| vec![("answer", at(v, "/kind"))]);
    let r = del(&crds, "gateways.networking.istio.io").await;
    s.api("CRD: delete", &r, |_| vec![]);
    let crs_gone = {
        let a = &crds;
        until("the CRD to go", Duration::from_secs(60), move || {
            gone(a, "gateways.networking.istio.io")
        })
        .await
    };
    let r = gateways.get("gw1").await;
    s.api("CRD: its CRs are gone", &r, |_| vec![]);
    s.obs
        .last_mut()
        .unwrap()
        .fields
        .push(("CRD gone".into(), crs_gone.to_string()));

    // -- kubectl --
    let k = |step: &str, s: &mut Record, args: &[&str]| {
        let o = kubectl(args);
        s.kubectl(step, &o, &dir);
    };
    k(
        "kubectl: create namespace",
        &mut s,
        &["create", "namespace", "kc"],
    );
    k(
        "kubectl: create namespace again",
        &mut s,
        &["create", "namespace", "kc"],
    );
    k(
        "kubectl: get missing",
        &mut s,
        &["get", "configmap", "nope", "-n", "kc"],
    );
    k(
        "kubectl: get missing, raw",
        &mut s,
        &["get", "--raw", "/api/v1/namespaces/kc/configmaps/nope"],
    );
    k(
        "kubectl: create configmap (typed)",
        &mut s,
        &[
            "create",
            "configmap",
            "k0",
            "--from-literal=a=1",
            "-n",
            "kc",
        ],
    );
    k(
        "kubectl: create secret (typed)",
        &mut s,
        &[
            "create",
            "secret",
            "generic",
            "s0",
            "--from-literal=a=1",
            "-n",
            "kc",
        ],
    );
    let k1 = file(
        "k1.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k1\n  namespace: kc\ndata:\n  a: \"1\"\n",
    );
    k(
        "kubectl: create -f",
        &mut s,
        &["create", "--validate=false", "-f", &k1],
    );
    k(
        "kubectl: label",
        &mut s,
        &["label", "configmap", "k1", "tier=web", "-n", "kc"],
    );
    k(
        "kubectl: annotate",
        &mut s,
        &["annotate", "configmap", "k1", "note=x", "-n", "kc"],
    );
    k(
        "kubectl: get by label",
        &mut s,
        &[
            "get",
            "configmaps",
            "-n",
            "kc",
            "-l",
            "tier=web",
            "-o",
            "name",
        ],
    );
    k(
        "kubectl: get by field",
        &mut s,
        &[
            "get",
            "configmaps",
            "-n",
            "kc",
            "--field-selector",
            "metadata.name=k1",
            "-o",
            "name",
        ],
    );
    k(
        "kubectl: merge patch",
        &mut s,
        &[
            "patch",
            "configmap",
            "k1",
            "-n",
            "kc",
            "--type=merge",
            "-p",
            r#"{"data":{"b":"2"}}"#,
        ],
    );
    k(
        "kubectl: JSON patch",
        &mut s,
        &[
            "patch",
            "configmap",
            "k1",
            "-n",
            "kc",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/c","value":"3"}]"#,
        ],
    );
    k(
        "kubectl: JSON patch, failing",
        &mut s,
        &[
            "patch",
            "configmap",
            "k1",
            "-n",
            "kc",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/nope"}]"#,
        ],
    );
    k(
        "kubectl: strategic merge patch",
        &mut s,
        &[
            "patch",
            "configmap",
            "k1",
            "-n",
            "kc",
            "-p",
            r#"{"data":{"d":"4"}}"#,
        ],
    );
    k(
        "kubectl: the result",
        &mut s,
        &[
            "get",
            "configmap",
            "k1",
            "-n",
            "kc",
            "-o",
            r#"jsonpath={.data} {.metadata.labels} {.metadata.annotations}"#,
        ],
    );
    let o = kubectl(&[
        "get",
        "configmap",
        "k1",
        "-n",
        "kc",
        "-o",
        r#"jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation}{"\n"}{end}"#,
    ]);
    let mut ms: Vec<&str> = std::str::from_utf8(&o.stdout)
        .unwrap_or_default()
        .lines()
        .collect();
    ms.sort();
    s.push(
        "kubectl: managers",
        format!("exit {}", o.status.code().unwrap_or(-1)),
        vec![("managers", ms.join(", "))],
    );
    let k2 = file(
        "k2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k2\n  namespace: kc\ndata:\n  a: \"1\"\n",
    );
    let k2_other = file(
        "k2-other.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k2\n  namespace: kc\ndata:\n  a: \"2\"\n",
    );
    k(
        "kubectl: server-side apply",
        &mut s,
        &["apply", "--server-side", "--validate=false", "-f", &k2],
    );
    k(
        "kubectl: server-side apply, conflict",
        &mut s,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "--field-manager=other",
            "-f",
            &k2_other,
        ],
    );
    k(
        "kubectl: server-side apply, forced",
        &mut s,
        &[
            "apply",
            "--server-side",
            "--validate=false",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            &k2_other,
        ],
    );
    let k3 = file(
        "k3.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k3\n  namespace: kc\ndata:\n  c: \"1\"\n",
    );
    k(
        "kubectl: client-side apply",
        &mut s,
        &["apply", "--validate=false", "-f", &k3],
    );
    k(
        "kubectl: client-side apply again",
        &mut s,
        &["apply", "--validate=false", "-f", &k3],
    );
    let stale = file(
        "stale.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k1\n  namespace: kc\n  resourceVersion: \"1\"\ndata: {}\n",
    );
    k(
        "kubectl: replace, stale",
        &mut s,
        &["replace", "--validate=false", "-f", &stale],
    );
    k(
        "kubectl: wait for a field",
        &mut s,
        &[
            "wait",
            "--for=jsonpath={.data.a}=1",
            "configmap/k1",
            "-n",
            "kc",
            "--timeout=20s",
        ],
    );
    k(
        "kubectl: delete namespace and wait",
        &mut s,
        &["delete", "namespace", "kc", "--wait=true", "--timeout=90s"],
    );
    k(
        "kubectl: the namespace is gone",
        &mut s,
        &["get", "namespace", "kc", "-o", "name"],
    );

    s.obs
}

async fn reader_token(secrets: &Api<DynamicObject>) -> String {
    use base64::Engine as _;
    secrets
        .get("reader-token")
        .await
        .ok()
        .and_then(|o| {
            o.data
                .pointer("/data/token")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|t| String::from_utf8_lossy(&t).into_owned())
        .unwrap_or_else(|| "no-token".into())
}

// ---- running it twice ----

async fn client_for(kubeconfig: &Path, context: &str) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
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

/// kubectl against one server, with its own discovery cache.
fn kubectl_for(
    bin: &Path,
    kubeconfig: &Path,
    context: &str,
    cache: &Path,
) -> impl Fn(&[&str]) -> Output {
    let (bin, kubeconfig, context, cache) = (
        bin.to_path_buf(),
        kubeconfig.to_path_buf(),
        context.to_string(),
        cache.to_path_buf(),
    );
    move |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--context", &context, "--cache-dir"])
            .arg(&cache)
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null());
        tokio::task::block_in_place(|| c.output().unwrap())
    }
}

/// The differences between the two records, as (step, field, kubesim, real).
fn differences(sim: &[Observation], real: &[Observation]) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    assert_eq!(
        sim.iter().map(|o| &o.step).collect::<Vec<_>>(),
        real.iter().map(|o| &o.step).collect::<Vec<_>>(),
        "both runs must take the same steps"
    );
    for (a, b) in sim.iter().zip(real) {
        if a.outcome != b.outcome {
            out.push((
                a.step.clone(),
                "outcome".into(),
                a.outcome.clone(),
                b.outcome.clone(),
            ));
        }
        let mut fields: Vec<&String> = a.fields.iter().map(|(k, _)| k).collect();
        for (k, _) in &b.fields {
            if !fields.contains(&k) {
                fields.push(k);
            }
        }
        let get = |o: &Observation, k: &str| {
            o.fields
                .iter()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "(not recorded)".into())
        };
        for k in fields {
            let (x, y) = (get(a, k), get(b, k));
            if x != y {
                out.push((a.step.clone(), k.clone(), x, y));
            }
        }
    }
    out
}

fn not_modelled(step: &str, field: &str) -> Option<&'static str> {
    NOT_MODELLED
        .iter()
        .find(|(s, f, _)| *s == step && (*f == field || *f == "*"))
        .map(|(_, _, why)| *why)
}

#[test]
fn kubesim_answers_as_the_real_api_server() {
    if !harness::in_private_network("kubesim_answers_as_the_real_api_server") {
        return;
    }
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let real = harness::RealClusters::start(&tmp.path().join("real"), &["c1"]);
    eprintln!(
        "real cluster healthy in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let kubectl_bin = real.tool("kubectl");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let (sim_obs, real_obs) = rt.block_on(async {
        let set = kubesim::ClusterSet::open(
            &tmp.path().join("sim"),
            &["sim"],
            kubesim::Options::default(),
        )
        .await
        .unwrap();
        let t = Instant::now();
        let sim_obs = script(
            client_for(&set.kubeconfig_path(), "sim").await,
            kubectl_for(
                &kubectl_bin,
                &set.kubeconfig_path(),
                "sim",
                &tmp.path().join("cache-sim"),
            ),
        )
        .await;
        eprintln!("script against kubesim: {:.1} s", t.elapsed().as_secs_f64());
        set.shutdown().await;
        let t = Instant::now();
        let real_obs = script(
            client_for(&real.kubeconfig, "real-c1").await,
            kubectl_for(
                &kubectl_bin,
                &real.kubeconfig,
                "real-c1",
                &tmp.path().join("cache-real"),
            ),
        )
        .await;
        eprintln!(
            "script against the real server: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        (sim_obs, real_obs)
    });

    for (name, obs) in [("kubesim", &sim_obs), ("real", &real_obs)] {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("differential-{name}.txt"));
        let text: String = obs
            .iter()
            .map(|o| {
                let mut t = format!("{}: {}\n", o.step, o.outcome);
                for (k, v) in &o.fields {
                    t += &format!("    {k}: {v}\n");
                }
                t
            })
            .collect();
        std::fs::write(&path, text).unwrap();
        eprintln!("the {name} record: {}", path.display());
    }
    let diffs = differences(&sim_obs, &real_obs);
    let mut report = String::new();
    let mut unexpected = 0;
    let mut known: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (step, field, sim, real) in &diffs {
        let why = not_modelled(step, field);
        if let Some((s, f, _)) = NOT_MODELLED
            .iter()
            .find(|(s, f, _)| s == step && (f == field || *f == "*"))
        {
            known.insert((s, f));
        }
        if why.is_none() {
            unexpected += 1;
        }
        report += &format!(
            "{} step `{step}`, {field}:\n    kubesim: {sim}\n    real:    {real}\n",
            if why.is_some() {
                "  (not modelled)"
            } else {
                "DIFFERENT"
            },
        );
        if let Some(w) = why {
            report += &format!("    why: {w}\n");
        }
    }
    let stale: Vec<String> = NOT_MODELLED
        .iter()
        .filter(|(s, f, _)| !known.contains(&(*s, *f)))
        .map(|(s, f, _)| format!("  `{s}` / {f}"))
        .collect();
    eprintln!(
        "{} steps compared, {} differences ({} not modelled), in {:.1} s:\n{report}",
        sim_obs.len(),
        diffs.len(),
        diffs.len() - unexpected,
        t0.elapsed().as_secs_f64()
    );
    assert!(
        unexpected == 0,
        "kubesim and the real API server disagree on {unexpected} observation(s):\n{report}\n\
         Fix kubesim, or (when it is out of its scope) list the observation in NOT_MODELLED \
         and in tests/kubesim/README.md."
    );
    assert!(
        stale.is_empty(),
        "these NOT_MODELLED entries now match the real server; remove them (and from tests/kubesim/README.md):\n{}",
        stale.join("\n")
    );
}
