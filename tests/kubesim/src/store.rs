//! The object store of one simulated cluster: generic storage for any
//! resource type, with the API server's bookkeeping (resourceVersion, uid,
//! creationTimestamp, generation), conflicts, finalizers, patches,
//! server-side apply with per-manager field ownership, and a history of
//! events for watches. Synchronous: the server holds it behind a mutex.

use crate::resources::{self, ResourceType};
use crate::select::{FieldSelector, LabelSelector};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use tokio::sync::broadcast;

/// An API error, answered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details.causes` of the Status: (reason, message, field).
    pub causes: Vec<(&'static str, String, String)>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            causes: Vec::new(),
        }
    }
    pub fn with_cause(
        mut self,
        reason: &'static str,
        message: impl Into<String>,
        field: impl Into<String>,
    ) -> Self {
        self.causes.push((reason, message.into(), field.into()));
        self
    }
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        let what = if rt.group.is_empty() {
            rt.plural.clone()
        } else {
            format!("{}.{}", rt.plural, rt.group)
        };
        Self::new(404, "NotFound", format!("{what} \"{name}\" not found"))
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.causes.is_empty() {
            s["details"] = json!({"causes": self.causes.iter().map(|(r, m, f)| {
                json!({"reason": r, "message": m, "field": f})
            }).collect::<Vec<_>>()});
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "ADDED")]
    Added,
    #[serde(rename = "MODIFIED")]
    Modified,
    #[serde(rename = "DELETED")]
    Deleted,
}

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: EventType,
    /// (group, plural)
    pub key: (String, String),
    pub object: Value,
}

/// How a PATCH body is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    /// Strategic merge patch, done with merge-patch semantics (lists are
    /// replaced, not merged by key): enough for what mesh and kubectl send.
    Strategic,
    Apply,
}

/// manager → (operation, owned field paths)
type Owners = BTreeMap<String, (String, BTreeSet<Vec<String>>)>;

/// Field paths (`["data", "a"]`).
type Paths = BTreeSet<Vec<String>>;

const HISTORY: usize = 20_000;

/// Everything a cluster stores, serialisable for persistence.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Data {
    pub rv: u64,
    /// "group/plural" → "namespace/name" → object.
    pub objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// "group/plural|namespace/name" → owners.
    pub owners: BTreeMap<String, Owners>,
    /// "group/plural|namespace/name" → manager → when it last changed the
    /// object (managedFields' `time`).
    #[serde(default)]
    pub written: BTreeMap<String, BTreeMap<String, String>>,
}

pub struct Store {
    pub types: Vec<ResourceType>,
    data: Data,
    history: VecDeque<Event>,
    events: broadcast::Sender<Event>,
}

fn type_key(rt: &ResourceType) -> String {
    format!("{}/{}", rt.group, rt.plural)
}

fn obj_key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Leaf field paths of an applied or patched object: what a manager owns.
/// Lists are atomic (owned whole), as for most Kubernetes lists.
pub fn leaf_paths(v: &Value) -> BTreeSet<Vec<String>> {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "status") {
                        continue;
                    }
                    if path.len() == 1
                        && path[0] == "metadata"
                        && matches!(
                            k.as_str(),
                            "name"
                                | "namespace"
                                | "resourceVersion"
                                | "uid"
                                | "creationTimestamp"
                                | "managedFields"
                                | "generation"
                                | "deletionTimestamp"
                        )
                    {
                        continue;
                    }
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// `leaf_paths` and the status fields too: what an update or a write to
/// /status changes and so owns.
fn all_leaf_paths(v: &Value) -> BTreeSet<Vec<String>> {
    let mut out = leaf_paths(v);
    if let Some(st) = v.get("status") {
        for p in leaf_paths(&json!({"metadata": {"x": st}})) {
            let mut q = vec!["status".to_string()];
            q.extend(p.into_iter().skip(2));
            out.insert(q);
        }
    }
    out
}

fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// A write to the main resource of a type with a status subresource leaves
/// status as it was.
fn keep_status(current: &Value, next: &mut Value) {
    match current.get("status") {
        Some(st) => next["status"] = st.clone(),
        None => {
            if let Some(m) = next.as_object_mut() {
                m.remove("status");
            }
        }
    }
}

/// An apply patch without a field manager, as the API server refuses it.
pub fn field_manager_required() -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
    )
    .with_cause(
        "FieldValueRequired",
        "Required value: is required for apply patch",
        "fieldManager",
    )
}

/// The API server's 409 for an apply that conflicts: its message and a
/// cause per field.
fn apply_conflict(conflicts: &[(String, String, Vec<String>)], api_version: &str) -> ApiError {
    let who = |m: &str, op: &str| {
        if op == "Update" {
            format!("\"{m}\" using {api_version}")
        } else {
            format!("\"{m}\"")
        }
    };
    let path = |p: &[String]| format!(".{}", p.join("."));
    let message = if let [(m, op, p)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            who(m, op),
            path(p)
        )
    } else {
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (m, op, p) in conflicts {
            by.entry(who(m, op))
                .or_default()
                .push(format!("- {}", path(p)));
        }
        let parts: Vec<String> = by
            .into_iter()
            .map(|(w, ps)| format!("conflicts with {w}:\n{}", ps.join("\n")))
            .collect();
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            parts.join("\n")
        )
    };
    conflicts
        .iter()
        .fold(ApiError::new(409, "Conflict", message), |e, (m, op, p)| {
            e.with_cause(
                "FieldManagerConflict",
                format!("conflict with {}", who(m, op)),
                path(p),
            )
        })
}

/// Objects merge key by key; anything else replaces.
fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(bv) if bv.is_object() && v.is_object() => deep_merge(bv, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn managed_fields(owners: &Owners, api_version: &str) -> Value {
    managed_fields_at(owners, api_version, None)
}

/// managedFields, with each entry's `time` from `written` when given.
fn managed_fields_at(
    owners: &Owners,
    api_version: &str,
    written: Option<&BTreeMap<String, String>>,
) -> Value {
    let mut list = Vec::new();
    for (manager, (operation, paths)) in owners {
        if paths.is_empty() {
            continue;
        }
        let mut fields = Map::new();
        for p in paths {
            let mut cur = &mut fields;
            for k in p {
                cur = cur
                    .entry(format!("f:{k}"))
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .expect("built as objects");
            }
        }
        let mut entry = json!({
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        });
        if let Some(t) = written.and_then(|w| w.get(manager)) {
            entry["time"] = Value::from(t.clone());
        }
        list.push(entry);
    }
    Value::Array(list)
}

/// The API server's defaulting that clients see: a Namespace's
/// `kubernetes.io/metadata.name` label; a Secret's `stringData` merged into
/// `data` (base64) and its `type` defaulted to `Opaque`.
fn normalise(rt: &ResourceType, obj: &mut Value) {
    if !rt.group.is_empty() {
        return;
    }
    match rt.kind.as_str() {
        "Namespace" => {
            if let Some(name) = obj.pointer("/metadata/name").cloned() {
                let meta = &mut obj["metadata"];
                if !meta["labels"].is_object() {
                    meta["labels"] = json!({});
                }
                meta["labels"]["kubernetes.io/metadata.name"] = name;
            }
        }
        "Secret" => {
            use base64::Engine as _;
            let Some(m) = obj.as_object_mut() else { return };
            if let Some(Value::Object(sd)) = m.remove("stringData") {
                let data = m.entry("data").or_insert_with(|| json!({}));
                if !data.is_object() {
                    *data = json!({});
                }
                for (k, v) in sd {
                    let text = v.as_str().unwrap_or_default().to_string();
                    data[k.as_str()] =
                        Value::from(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
            if m.get("type")
                .is_none_or(|t| t.as_str().is_none_or(str::is_empty))
            {
                m.insert("type".into(), Value::from("Opaque"));
            }
        }
        _ => {}
    }
}

impl Store {
    pub fn new(data: Data) -> Store {
        let (events, _) = broadcast::channel(8192);
        let mut s = Store {
            types: resources::builtin(),
            data,
            history: VecDeque::new(),
            events,
        };
        // CRDs restored from disk serve their kinds again.
        let crds: Vec<Value> = s
            .data
            .objects
            .get("apiextensions.k8s.io/customresourcedefinitions")
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for crd in crds {
            s.register_crd(&crd);
        }
        for ns in ["default", "kube-system", "kube-public"] {
            if s.get_raw("", "namespaces", "", ns).is_none() {
                let rt = s.types[0].clone();
                let _ = s.create(
                    &rt,
                    "",
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                    "kubesim",
                );
            }
        }
        s
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn resource_version(&self) -> u64 {
        self.data.rv
    }

    /// Events after `rv` still in the history; None when `rv` is too old.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Event>> {
        if let Some(first) = self.history.front()
            && rv + 1 < first.rv
        {
            return None;
        }
        Some(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    pub fn type_of_kind(&self, api_version: &str, kind: &str) -> Option<ResourceType> {
        self.types
            .iter()
            .find(|t| t.api_version() == api_version && t.kind == kind)
            .cloned()
    }

    fn register_crd(&mut self, crd: &Value) {
        for t in resources::from_crd(crd) {
            if !self
                .types
                .iter()
                .any(|x| x.group == t.group && x.version == t.version && x.plural == t.plural)
            {
                self.types.push(t);
            }
        }
    }

    fn unregister_crd(&mut self, crd: &Value) {
        let gone = resources::from_crd(crd);
        self.types.retain(|t| !gone.contains(t));
        for t in gone {
            self.data.objects.remove(&type_key(&t));
        }
    }

    fn emit(&mut self, kind: EventType, rt: &ResourceType, object: &Value) {
        let ev = Event {
            rv: self.data.rv,
            kind,
            key: rt.key(),
            object: object.clone(),
        };
        self.history.push_back(ev.clone());
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
        let _ = self.events.send(ev);
    }

    fn bump(&mut self) -> u64 {
        self.data.rv += 1;
        self.data.rv
    }

    pub fn get_raw(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<&Value> {
        self.data
            .objects
            .get(&format!("{group}/{plural}"))?
            .get(&obj_key(ns, name))
    }

    /// Sets an object's `creationTimestamp` as if it were made at `when`
    /// (RFC 3339): what a test of ageing needs, since the API server never
    /// lets a client write it. Not an API: the simulator's own hook.
    pub fn backdate(
        &mut self,
        group: &str,
        plural: &str,
        ns: &str,
        name: &str,
        when: &str,
    ) -> bool {
        let Some(obj) = self
            .data
            .objects
            .get_mut(&format!("{group}/{plural}"))
            .and_then(|m| m.get_mut(&obj_key(ns, name)))
        else {
            return false;
        };
        obj["metadata"]["creationTimestamp"] = Value::from(when);
        true
    }

    fn ns_of(rt: &ResourceType, ns: &str) -> String {
        if rt.namespaced {
            ns.to_string()
        } else {
            String::new()
        }
    }

    fn check_namespace(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        match self.get_raw("", "namespaces", "", ns) {
            None => Err(ApiError::new(
                404,
                "NotFound",
                format!("namespaces \"{ns}\" not found"),
            )),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} \
                     because it is being terminated",
                    rt.qualified()
                ),
            )
            .with_cause(
                "NamespaceTerminating",
                format!("namespace {ns} is being terminated"),
                "metadata.namespace",
            )),
            Some(_) => Ok(()),
        }
    }

    fn finish(&self, rt: &ResourceType, mut obj: Value, owners: Option<&Owners>) -> Value {
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), Value::from(rt.api_version()));
            m.insert("kind".into(), Value::from(rt.kind.clone()));
        }
        if let Some(o) = owners {
            let (ns, name) = (
                obj.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                obj.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            );
            let written = self
                .data
                .written
                .get(&format!("{}|{}", type_key(rt), obj_key(ns, name)));
            obj["metadata"]["managedFields"] = managed_fields_at(o, &rt.api_version(), written);
        }
        obj
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let ns = Self::ns_of(rt, ns);
        self.data
            .objects
            .get(&type_key(rt))
            .and_then(|m| m.get(&obj_key(&ns, name)))
            .map(|o| {
                self.finish(
                    rt,
                    o.clone(),
                    self.data
                        .owners
                        .get(&format!("{}|{}", type_key(rt), obj_key(&ns, name))),
                )
            })
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> (Vec<Value>, u64) {
        let items = self
            .data
            .objects
            .get(&type_key(rt))
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|o| {
                ns.is_none_or(|n| {
                    !rt.namespaced
                        || o.pointer("/metadata/namespace").and_then(Value::as_str) == Some(n)
                })
            })
            .filter(|o| labels.matches(o) && fields.matches(o))
            .map(|o| self.finish(rt, o.clone(), None))
            .collect();
        (items, self.data.rv)
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let ns = Self::ns_of(rt, ns);
        let mut name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if name.is_empty()
            && let Some(prefix) = obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
        {
            let tag: String = (0..5)
                .map(|_| (b'a' + rand::random::<u8>() % 26) as char)
                .collect();
            name = format!("{prefix}{tag}");
        }
        if name.is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("{} is invalid: metadata.name: Required value", rt.kind),
            ));
        }
        self.check_namespace(rt, &ns, &name)?;
        let key = obj_key(&ns, &name);
        if self
            .data
            .objects
            .get(&type_key(rt))
            .is_some_and(|m| m.contains_key(&key))
        {
            let what = if rt.group.is_empty() {
                rt.plural.clone()
            } else {
                format!("{}.{}", rt.plural, rt.group)
            };
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{what} \"{name}\" already exists"),
            ));
        }
        let rv = self.bump();
        {
            let meta = obj
                .as_object_mut()
                .expect("checked")
                .entry("metadata")
                .or_insert_with(|| json!({}));
            if !meta.is_object() {
                *meta = json!({});
            }
            let meta = meta.as_object_mut().expect("object");
            meta.insert("name".into(), Value::from(name.clone()));
            if rt.namespaced {
                meta.insert("namespace".into(), Value::from(ns.clone()));
            } else {
                meta.remove("namespace");
            }
            meta.insert("uid".into(), Value::from(uid()));
            meta.insert("resourceVersion".into(), Value::from(rv.to_string()));
            meta.insert("creationTimestamp".into(), Value::from(now()));
            meta.insert("generation".into(), Value::from(1));
            meta.remove("managedFields");
            meta.remove("deletionTimestamp");
        }
        // Defaulting (before ownership: the creator owns defaulted fields).
        normalise(rt, &mut obj);
        let mut owners = Owners::new();
        owners.insert(manager.to_string(), ("Update".into(), leaf_paths(&obj)));
        if rt.kind == "Namespace" {
            obj["status"] = json!({"phase": "Active"});
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        if rt.kind == "CustomResourceDefinition" {
            obj["status"] = json!({"conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}],
                "acceptedNames": obj["spec"]["names"].clone()});
            self.register_crd(&obj);
        }
        let stored = self.finish(rt, obj, None);
        self.data
            .objects
            .entry(type_key(rt))
            .or_default()
            .insert(key.clone(), stored.clone());
        self.data
            .owners
            .insert(format!("{}|{key}", type_key(rt)), owners);
        self.data.written.insert(
            format!("{}|{key}", type_key(rt)),
            BTreeMap::from([(manager.to_string(), now())]),
        );
        self.emit(EventType::Added, rt, &stored);
        self.get(rt, &ns, &name)
    }

    /// Replaces a stored object (PUT), or only its status.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        status_only: bool,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let ns = Self::ns_of(rt, ns);
        let current = self.get(rt, &ns, name)?;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(rv) = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && !rv.is_empty()
            && Some(rv)
                != current
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    rt.plural
                ),
            ));
        }
        if status_only {
            let mut next = current.clone();
            next["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            obj = next;
        } else {
            // The server's own fields are kept.
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
            ] {
                if let Some(v) = current["metadata"].get(k) {
                    obj["metadata"][k] = v.clone();
                }
            }
            // With a status subresource, status is written only through it.
            if rt.status || obj.get("status").is_none() {
                match current.get("status") {
                    Some(st) => obj["status"] = st.clone(),
                    None => {
                        if let Some(m) = obj.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            obj["metadata"]["name"] = Value::from(name);
        }
        self.store_change(rt, &ns, name, current, obj, manager, "Update", None)
    }

    /// Saves `next` in place of `current`: resourceVersion, generation,
    /// ownership of the fields the writer set, finalizer-driven removal. A
    /// write that changes neither the object nor its owners changes nothing
    /// (no new resourceVersion, no event), as on the API server.
    /// `applied` is an Apply's (fields it applies, fields it takes from
    /// other managers); an Update owns, and takes, the fields it changed.
    #[allow(clippy::too_many_arguments)]
    fn store_change(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        current: Value,
        mut next: Value,
        manager: &str,
        operation: &str,
        applied: Option<(Paths, Paths)>,
    ) -> Result<Value, ApiError> {
        let key = obj_key(ns, name);
        let owner_key = format!("{}|{key}", type_key(rt));
        normalise(rt, &mut next);
        if let Some(m) = next.as_object_mut() {
            let meta = m.entry("metadata").or_insert_with(|| json!({}));
            meta["name"] = Value::from(name);
            if rt.namespaced {
                meta["namespace"] = Value::from(ns);
            }
            if let Some(o) = meta.as_object_mut() {
                o.remove("managedFields");
            }
        }
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let spec_changed = current.get("spec") != next.get("spec");
        next["metadata"]["generation"] = Value::from(if spec_changed {
            generation + 1
        } else {
            generation
        });
        // Ownership: the writer takes the fields it wrote.
        let (written, taken) = applied.unwrap_or_else(|| {
            let before = all_leaf_paths(&current);
            let changed: BTreeSet<Vec<String>> = all_leaf_paths(&next)
                .into_iter()
                .filter(|p| !before.contains(p) || get_path(&current, p) != get_path(&next, p))
                .collect();
            (changed.clone(), changed)
        });
        let before_owners = self
            .data
            .owners
            .get(&owner_key)
            .cloned()
            .unwrap_or_default();
        let mut owners = before_owners.clone();
        for (m, (_, paths)) in owners.iter_mut() {
            if m != manager {
                paths.retain(|p| !taken.contains(p));
            }
        }
        let entry = owners
            .entry(manager.to_string())
            .or_insert_with(|| (operation.to_string(), BTreeSet::new()));
        if operation == "Apply" {
            entry.0 = operation.to_string();
            entry.1 = written;
        } else if !written.is_empty() {
            entry.0 = operation.to_string();
            entry.1.extend(written);
        }
        let unchanged = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                for k in ["resourceVersion", "managedFields"] {
                    m.remove(k);
                }
            }
            v
        };
        let api_version = rt.api_version();
        if unchanged(&current) == unchanged(&next)
            && managed_fields(&before_owners, &api_version) == managed_fields(&owners, &api_version)
        {
            return Ok(current);
        }
        if unchanged(&current) != unchanged(&next) {
            self.data
                .written
                .entry(owner_key.clone())
                .or_default()
                .insert(manager.to_string(), now());
        }
        self.data.owners.insert(owner_key, owners);
        let rv = self.bump();
        next["metadata"]["resourceVersion"] = Value::from(rv.to_string());
        // A deleted object whose last finalizer went away is removed now.
        let gone = next.pointer("/metadata/deletionTimestamp").is_some()
            && next
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty())
            && rt.kind != "Namespace";
        let stored = self.finish(rt, next, None);
        if gone {
            return Ok(self.remove(rt, ns, name).unwrap_or(stored));
        }
        self.data
            .objects
            .entry(type_key(rt))
            .or_default()
            .insert(key, stored.clone());
        self.emit(EventType::Modified, rt, &stored);
        self.get(rt, ns, name)
    }

    /// Who owns which fields, for tests and managedFields.
    pub fn owners(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        let ns = Self::ns_of(rt, ns);
        self.data
            .owners
            .get(&format!("{}|{}", type_key(rt), obj_key(&ns, name)))
            .map(|o| managed_fields(o, &rt.api_version()))
    }

    /// A controller's merge patch of `patch` (never forced); with
    /// `status_only`, of the status subresource.
    pub fn controller_patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        patch: &Value,
        manager: &str,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let body = patch.to_string();
        self.patch(
            rt,
            ns,
            name,
            PatchType::Merge,
            body.as_bytes(),
            manager,
            false,
            status_only,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchType,
        body: &[u8],
        manager: &str,
        force: bool,
        status_only: bool,
    ) -> Result<Value, ApiError> {
        let ns = Self::ns_of(rt, ns);
        if kind == PatchType::Apply {
            return self.apply(rt, &ns, name, body, manager, force);
        }
        let current = self.get(rt, &ns, name)?;
        let mut next = current.clone();
        match kind {
            PatchType::Json => {
                let ops: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut next, &ops).map_err(|_| {
                    ApiError::new(
                        422,
                        "Invalid",
                        "the server rejected our request due to an error in our request",
                    )
                })?;
            }
            _ => {
                let p: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
                if !p.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                json_patch::merge(&mut next, &p);
            }
        }
        if status_only {
            let mut only = current.clone();
            only["status"] = next.get("status").cloned().unwrap_or(Value::Null);
            next = only;
        } else if rt.status {
            keep_status(&current, &mut next);
        }
        if let Some(rv) = next
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && Some(rv)
                != current
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                     please apply your changes to the latest version and try again",
                    rt.qualified()
                ),
            ));
        }
        self.store_change(rt, &ns, name, current, next, manager, "Update", None)
    }

    /// Server-side apply: create or merge; fields this manager applied before
    /// and no longer applies are removed unless another manager owns them;
    /// fields another manager owns with a different value conflict unless
    /// `force`.
    fn apply(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: &[u8],
        manager: &str,
        force: bool,
    ) -> Result<Value, ApiError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the apply body is not UTF-8"))?;
        let applied: Value = serde_json::from_str(text)
            .or_else(|_| serde_saphyr::from_str(text))
            .map_err(|e| ApiError::bad_request(format!("invalid apply body: {e}")))?;
        if !applied.is_object() {
            return Err(ApiError::bad_request("an apply body must be an object"));
        }
        if let Some(n) = applied.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if manager.is_empty() {
            return Err(field_manager_required());
        }
        let paths = leaf_paths(&applied);
        let key = format!("{}|{}", type_key(rt), obj_key(ns, name));
        let current = match self.get(rt, ns, name) {
            Err(e) if e.code == 404 => {
                self.create(rt, ns, applied, manager)?;
                let mut owners = Owners::new();
                owners.insert(manager.to_string(), ("Apply".into(), paths));
                self.data.owners.insert(key, owners);
                return self.get(rt, ns, name);
            }
            other => other?,
        };
        let owners = self.data.owners.get(&key).cloned().unwrap_or_default();
        // (manager, operation, path) of every field another manager owns
        // with another value.
        let mut conflicts: Vec<(String, String, Vec<String>)> = Vec::new();
        for (m, (op, owned)) in &owners {
            if m == manager {
                continue;
            }
            for p in owned.intersection(&paths) {
                if get_path(&current, p) != get_path(&applied, p) {
                    conflicts.push((m.clone(), op.clone(), p.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(apply_conflict(&conflicts, &rt.api_version()));
        }
        // Fields applied with the value another manager owns are shared;
        // only forced conflicts are taken from their owners.
        let taken: BTreeSet<Vec<String>> = conflicts.into_iter().map(|(_, _, p)| p).collect();
        let mut next = current.clone();
        let others: BTreeSet<Vec<String>> = owners
            .iter()
            .filter(|(m, _)| *m != manager)
            .flat_map(|(_, (_, p))| p.iter().cloned())
            .filter(|p| !taken.contains(p))
            .collect();
        if let Some((_, before)) = owners.get(manager) {
            for p in before.difference(&paths) {
                if !others.contains(p) {
                    remove_path(&mut next, p);
                }
            }
        }
        deep_merge(&mut next, &applied);
        if rt.status {
            keep_status(&current, &mut next);
        }
        self.store_change(
            rt,
            ns,
            name,
            current,
            next,
            manager,
            "Apply",
            Some((paths, taken)),
        )
    }

    fn remove(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        let key = obj_key(ns, name);
        let obj = self.data.objects.get_mut(&type_key(rt))?.remove(&key)?;
        self.data.owners.remove(&format!("{}|{key}", type_key(rt)));
        self.bump();
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = Value::from(self.data.rv.to_string());
        if rt.kind == "CustomResourceDefinition" {
            self.unregister_crd(&obj);
        }
        self.emit(EventType::Deleted, rt, &obj);
        Some(obj)
    }

    /// DELETE: objects with finalizers (and namespaces) are marked and kept
    /// until their finalizers are gone; others go at once.
    pub fn delete(&mut self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let ns = Self::ns_of(rt, ns);
        let current = self.get(rt, &ns, name)?;
        let has_finalizers = current
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if rt.kind == "Namespace" || has_finalizers {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(current);
            }
            let mut next = current.clone();
            next["metadata"]["deletionTimestamp"] = Value::from(now());
            if rt.kind == "Namespace" {
                next["status"] = json!({"phase": "Terminating"});
            }
            return self.store_change(
                rt,
                &ns,
                name,
                current,
                next,
                "kubesim",
                "Update",
                Some((BTreeSet::new(), BTreeSet::new())),
            );
        }
        Ok(self.remove(rt, &ns, name).unwrap_or(current))
    }

    /// The namespace controller's step: deletes what is in terminating
    /// namespaces, and the namespaces once empty. Returns true if it changed
    /// anything.
    pub fn reap_namespaces(&mut self) -> bool {
        let terminating: Vec<String> = self
            .data
            .objects
            .get("/namespaces")
            .into_iter()
            .flat_map(|m| m.values())
            .filter(|n| n.pointer("/metadata/deletionTimestamp").is_some())
            .filter_map(|n| {
                n.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect();
        let mut changed = false;
        for ns in terminating {
            let namespaced: Vec<ResourceType> = self
                .types
                .iter()
                .filter(|t| t.namespaced)
                .cloned()
                .collect();
            let mut left = 0;
            for rt in &namespaced {
                let names: Vec<String> = self
                    .data
                    .objects
                    .get(&type_key(rt))
                    .into_iter()
                    .flat_map(|m| m.values())
                    .filter(|o| {
                        o.pointer("/metadata/namespace").and_then(Value::as_str)
                            == Some(ns.as_str())
                    })
                    .filter_map(|o| {
                        o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .map(String::from)
                    })
                    .collect();
                for name in names {
                    if let Ok(obj) = self.delete(rt, &ns, &name) {
                        changed = true;
                        if obj.pointer("/metadata/deletionTimestamp").is_some()
                            && self.get(rt, &ns, &name).is_ok()
                        {
                            left += 1;
                        }
                    }
                }
            }
            let nsrt = self.types[0].clone();
            let Ok(n) = self.get(&nsrt, "", &ns) else {
                continue;
            };
            let finalizers_left = n
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if left == 0 && !finalizers_left {
                self.remove(&nsrt, "", &ns);
                changed = true;
            }
        }
        changed
    }

    /// Every object of a type (for controllers and tests).
    pub fn all(&self, group: &str, plural: &str) -> Vec<Value> {
        self.data
            .objects
            .get(&format!("{group}/{plural}"))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(Data::default())
    }

    fn cm(s: &Store) -> ResourceType {
        s.find_type("", "v1", "configmaps").unwrap()
    }

    #[test]
    fn create_get_conflict_and_delete() {
        let mut s = store();
        let rt = cm(&s);
        let o = s
            .create(
                &rt,
                "default",
                json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
                "t",
            )
            .unwrap();
        assert_eq!(o["kind"], "ConfigMap");
        assert!(o.pointer("/metadata/uid").is_some());
        let e = s
            .create(&rt, "default", json!({"metadata": {"name": "a"}}), "t")
            .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
        let e = s
            .create(&rt, "nope", json!({"metadata": {"name": "a"}}), "t")
            .unwrap_err();
        assert_eq!(e.code, 404);
        let mut stale = o.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        assert_eq!(
            s.update(&rt, "default", "a", stale, false, "t")
                .unwrap_err()
                .code,
            409
        );
        s.delete(&rt, "default", "a").unwrap();
        assert_eq!(s.get(&rt, "default", "a").unwrap_err().code, 404);
    }

    #[test]
    fn json_patches_apply_and_bad_ones_are_refused() {
        let mut s = store();
        let rt = cm(&s);
        s.create(
            &rt,
            "default",
            json!({"metadata": {"name": "p"}, "data": {"a": "1"}}),
            "t",
        )
        .unwrap();
        let o = s
            .patch(
                &rt,
                "default",
                "p",
                PatchType::Json,
                br#"[{"op": "add", "path": "/data/b", "value": "2"}]"#,
                "t",
                false,
                false,
            )
            .unwrap();
        assert_eq!(o["data"], json!({"a": "1", "b": "2"}));
        let e = s
            .patch(
                &rt,
                "default",
                "p",
                PatchType::Json,
                br#"[{"op": "remove", "path": "/nope/x"}]"#,
                "t",
                false,
                false,
            )
            .unwrap_err();
        assert_eq!(e.code, 422);
        let e = s
            .patch(
                &rt,
                "default",
                "p",
                PatchType::Merge,
                b"not json",
                "t",
                false,
                false,
            )
            .unwrap_err();
        assert_eq!(e.code, 400);
    }

    #[test]
    fn server_side_apply_owns_and_prunes_fields() {
        let mut s = store();
        let rt = cm(&s);
        let apply = |s: &mut Store, body: Value, m: &str, force: bool| {
            s.patch(
                &rt,
                "default",
                "x",
                PatchType::Apply,
                body.to_string().as_bytes(),
                m,
                force,
                false,
            )
        };
        apply(&mut s, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "b": "2"}}), "m1", false).unwrap();
        // Another manager sets c; m1 stops applying b: b goes, c stays.
        s.patch(
            &rt,
            "default",
            "x",
            PatchType::Merge,
            br#"{"data": {"c": "3"}}"#,
            "kubectl",
            false,
            false,
        )
        .unwrap();
        let o = apply(&mut s, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1"}}), "m1", false).unwrap();
        assert_eq!(o["data"], json!({"a": "1", "c": "3"}));
        // m1 applying c with another value conflicts, unless forced.
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "1", "c": "9"}});
        assert_eq!(
            apply(&mut s, body.clone(), "m1", false).unwrap_err().code,
            409
        );
        let o = apply(&mut s, body, "m1", true).unwrap();
        assert_eq!(o["data"]["c"], "9");
        let owners = s.owners(&rt, "default", "x").unwrap();
        assert!(owners.to_string().contains("\"manager\":\"m1\""));
    }

    #[test]
    fn namespaces_cascade_and_finalizers_hold() {
        let mut s = store();
        let nsrt = s.types[0].clone();
        let rt = cm(&s);
        s.create(&nsrt, "", json!({"metadata": {"name": "n"}}), "t")
            .unwrap();
        s.create(&rt, "n", json!({"metadata": {"name": "a"}}), "t")
            .unwrap();
        s.create(
            &rt,
            "n",
            json!({"metadata": {"name": "held", "finalizers": ["x/y"]}}),
            "t",
        )
        .unwrap();
        let n = s.delete(&nsrt, "", "n").unwrap();
        assert_eq!(n["status"]["phase"], "Terminating");
        assert_eq!(
            s.create(&rt, "n", json!({"metadata": {"name": "b"}}), "t")
                .unwrap_err()
                .code,
            403
        );
        s.reap_namespaces();
        assert!(s.get(&rt, "n", "a").is_err());
        assert!(s.get(&rt, "n", "held").is_ok(), "a finalizer holds it");
        assert!(s.get(&nsrt, "", "n").is_ok(), "so the namespace stays");
        s.patch(
            &rt,
            "n",
            "held",
            PatchType::Merge,
            br#"{"metadata": {"finalizers": null}}"#,
            "t",
            false,
            false,
        )
        .unwrap();
        s.reap_namespaces();
        assert!(s.get(&nsrt, "", "n").is_err());
    }

    #[test]
    fn crds_become_served_types() {
        let mut s = store();
        let crd_rt = s
            .find_type("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        assert!(
            s.find_type("networking.istio.io", "v1", "gateways")
                .is_none()
        );
        s.create(
            &crd_rt,
            "",
            json!({"metadata": {"name": "gateways.networking.istio.io"}, "spec": {
            "group": "networking.istio.io", "scope": "Namespaced",
            "names": {"kind": "Gateway", "plural": "gateways"},
            "versions": [{"name": "v1", "served": true}, {"name": "v1beta1", "served": true}]}}),
            "t",
        )
        .unwrap();
        assert!(
            s.find_type("networking.istio.io", "v1", "gateways")
                .is_some()
        );
        assert!(
            s.find_type("networking.istio.io", "v1beta1", "gateways")
                .is_some()
        );
        s.delete(&crd_rt, "", "gateways.networking.istio.io")
            .unwrap();
        assert!(
            s.find_type("networking.istio.io", "v1", "gateways")
                .is_none()
        );
    }
}
