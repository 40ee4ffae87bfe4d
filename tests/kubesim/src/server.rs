//! The HTTPS API server of one simulated cluster: TLS, bearer-token auth,
//! faults, request accounting, discovery, and the REST verbs on the store
//! (get, list, watch, create, update, patch, delete), as kube-rs and kubectl
//! call them.

use crate::cluster::{Cluster, RequestRecord};
use crate::select::{FieldSelector, LabelSelector};
use crate::store::{ApiError, EventType, PatchType};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(v).unwrap_or_default()))
        .expect("a valid response")
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.status())
}

/// Serves `cluster` on `listener` until the task is aborted.
pub async fn serve(cluster: Arc<Cluster>, listener: TcpListener) {
    let config = match cluster.certs.server_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kubesim: {}: cannot set up TLS: {e:#}", cluster.name);
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        if cluster.faults().refuse_connections {
            drop(tcp);
            continue;
        }
        let acceptor = acceptor.clone();
        let cluster = cluster.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let cluster = cluster.clone();
                async move { Ok::<_, Infallible>(handle(cluster, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Percent-decoding for query values (`+` is a space, as in forms).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// [`crate::Faults::after_list`]: the object written once its list has
/// been answered.
fn after_list(cluster: &Cluster, rt: &crate::resources::ResourceType, selector: &str) {
    let mut faults = cluster.faults();
    let Some((plural, wanted, obj)) = faults.after_list.clone() else {
        return;
    };
    if plural != rt.plural || wanted != selector {
        return;
    }
    faults.after_list = None;
    cluster.set_faults(faults);
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut store = cluster.store();
    let _ = store.delete(rt, &ns, &name);
    let _ = store.create(rt, &ns, obj, "kubectl");
}

async fn handle(cluster: Arc<Cluster>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let faults = cluster.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let (verb, resp) = if faults.error_rate > 0.0 && rand::random::<f64>() < faults.error_rate {
        ("fault".to_string(), injected_error())
    } else {
        route(&cluster, req).await
    };
    // Marked before the client hears back, so a `flush` after any answered
    // write saves it (the controllers' own writes mark it too).
    // A review (a POST) is computed and stored nowhere: nothing to save.
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) && !path.ends_with("reviews")
    {
        cluster.mark_dirty();
    }
    cluster.record(RequestRecord {
        method: method.to_string(),
        path,
        verb,
        status: resp.status().as_u16(),
        at: SystemTime::now(),
    });
    resp
}

/// A 500 or a 429 with Retry-After, half and half.
fn injected_error() -> Response<Body> {
    if rand::random::<bool>() {
        let e = ApiError::new(
            500,
            "InternalError",
            "kubesim: injected fault: internal error",
        );
        error_response(&e)
    } else {
        let mut status = ApiError::new(
            429,
            "TooManyRequests",
            "kubesim: injected fault: too many requests",
        )
        .status();
        status["details"] = json!({"retryAfterSeconds": 1});
        let mut r = json_response(429, &status);
        r.headers_mut()
            .insert("retry-after", "1".parse().expect("a header value"));
        r
    }
}

async fn route(cluster: &Arc<Cluster>, req: Request<Incoming>) -> (String, Response<Body>) {
    let authorised = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| cluster.authorised(t.trim()));
    if !authorised {
        let e = ApiError::new(401, "Unauthorized", "Unauthorized");
        return ("unauthorized".into(), error_response(&e));
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let discovery = |v: Value| ("discovery".to_string(), json_response(200, &v));
    match segs.as_slice() {
        ["version"] => discovery(json!({
            "major": "1", "minor": "34", "gitVersion": "v1.34.0-kubesim",
            "platform": "linux/amd64", "goVersion": "kubesim", "compiler": "kubesim"
        })),
        ["api"] => discovery(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{}", cluster.port)}]
        })),
        ["apis"] => discovery(group_list(cluster)),
        ["api", "v1"] => discovery(resource_list(cluster, "", "v1")),
        ["apis", g, v] => {
            let list = resource_list(cluster, g, v);
            if list["resources"].as_array().is_some_and(|r| r.is_empty()) {
                let e = ApiError::new(
                    404,
                    "NotFound",
                    format!("the server could not find the requested resource ({g}/{v})"),
                );
                return ("discovery".into(), error_response(&e));
            }
            discovery(list)
        }
        ["apis", "authentication.k8s.io", "v1", "tokenreviews"] if req.method() == Method::POST => {
            review(req, |body| crate::review::token_review(cluster, body)).await
        }
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"]
            if req.method() == Method::POST =>
        {
            review(req, |body| crate::review::access_review(cluster, body)).await
        }
        ["api", "v1", "namespaces", ns, "pods", pod, "portforward"]
            if req.method() == Method::GET =>
        {
            let r = match crate::portforward::upgrade(
                cluster.clone(),
                ns,
                pod,
                req,
                crate::portforward::empty_body,
            ) {
                Ok(r) => r,
                Err((code, message)) => Response::builder()
                    .status(code)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(full(message))
                    .expect("a valid response"),
            };
            ("portforward".into(), r)
        }
        [
            "api",
            "v1",
            "namespaces",
            ns,
            "pods",
            pod,
            "proxy",
            rest @ ..,
        ] if req.method() == Method::GET => {
            let r = match crate::review::pod_proxy(cluster, ns, pod, rest) {
                Ok(v) => json_response(200, &v),
                // The proxy's own failures are plain text, as the API server's.
                Err((code, message)) => Response::builder()
                    .status(code)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(full(message))
                    .expect("a valid response"),
            };
            ("proxy".into(), r)
        }
        ["api", "v1", "namespaces", ns, "pods", pod, "log"] if req.method() == Method::GET => {
            let r = if cluster.faults().refuses("get", "pods/log") {
                Err((
                    403,
                    format!("pods \"{pod}\" is forbidden: cannot get resource \"pods/log\""),
                ))
            } else {
                cluster.pod_log(ns, pod, &query(&req))
            };
            let r = match r {
                Ok(text) => Response::builder()
                    .status(200)
                    .header("content-type", "text/plain; charset=utf-8")
                    .body(full(text))
                    .expect("a valid response"),
                Err((code, message)) => {
                    let reason = match code {
                        403 => "Forbidden",
                        404 => "NotFound",
                        _ => "BadRequest",
                    };
                    error_response(&ApiError::new(code, reason, message))
                }
            };
            ("log".into(), r)
        }
        ["api", "v1", rest @ ..] => {
            resource(
                cluster,
                req,
                "",
                "v1",
                &rest.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
            .await
        }
        [
            "apis",
            "authorization.k8s.io",
            "v1",
            "selfsubjectaccessreviews",
        ] => ("create".into(), access_review(cluster, req).await),
        ["apis", g, v, rest @ ..] => {
            let (g, v) = (g.to_string(), v.to_string());
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource(cluster, req, &g, &v, &rest).await
        }
        _ => {
            let e = ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            );
            ("unknown".into(), error_response(&e))
        }
    }
}

/// `POST selfsubjectaccessreviews`: kubesim has no RBAC, so every token
/// may do everything, except what the cluster's faults deny.
async fn access_review(cluster: &Cluster, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        let e = ApiError::new(
            405,
            "MethodNotAllowed",
            "selfsubjectaccessreviews can only be created",
        );
        return error_response(&e);
    }
    let mut review = match body_bytes(req).await.and_then(|b| parse_json(&b)) {
        Ok(v) => v,
        Err(e) => return error_response(&e),
    };
    let attrs = &review["spec"]["resourceAttributes"];
    let field = |k: &str| attrs[k].as_str().unwrap_or_default().to_string();
    let (verb, resource) = (field("verb"), field("resource"));
    let allowed = !cluster.faults().denies(&verb, &resource);
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "kubesim allows every token everything"})
    } else {
        json!({"allowed": false, "reason": format!("kubesim denies {verb} {resource} (faults)")})
    };
    json_response(201, &review)
}

/// The Kubernetes verb of a request on a resource.
fn request_verb(method: &Method, named: bool, q: &HashMap<String, String>) -> &'static str {
    match (method, named) {
        (&Method::GET, true) => "get",
        (&Method::GET, false)
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) =>
        {
            "watch"
        }
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "unknown",
    }
}

/// A review (TokenReview, SubjectAccessReview): computed from the body,
/// answered 201 as the API server does, stored nowhere.
async fn review(
    req: Request<Incoming>,
    answer: impl FnOnce(&Value) -> Value,
) -> (String, Response<Body>) {
    match body_bytes(req).await.and_then(|b| parse_json(&b)) {
        Ok(body) => ("create".into(), json_response(201, &answer(&body))),
        Err(e) => ("create".into(), error_response(&e)),
    }
}

fn group_list(cluster: &Cluster) -> Value {
    let store = cluster.store();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for t in store.types.iter().filter(|t| !t.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) if !vs.contains(&t.version) => vs.push(t.version.clone()),
            Some(_) => {}
            None => groups.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups.iter().map(|(g, vs)| json!({
            "name": g,
            "versions": vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
            "preferredVersion": {"groupVersion": format!("{g}/{}", vs[0]), "version": vs[0]},
        })).collect::<Vec<_>>(),
    })
}

fn resource_list(cluster: &Cluster, group: &str, version: &str) -> Value {
    let store = cluster.store();
    let mut resources = Vec::new();
    for t in store
        .types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        resources.push(t.discovery());
        if t.status {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

async fn body_bytes(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let ctype = req
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if ctype.contains("cbor") {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body content type {ctype} is not supported by kubesim: send JSON"),
        ));
    }
    let protobuf = ctype.contains("protobuf");
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
    if protobuf {
        // kubectl's typed commands send protobuf; answer as if it were JSON.
        let v = crate::protobuf::decode(&bytes)
            .map_err(|m| ApiError::new(415, "UnsupportedMediaType", m))?;
        return Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()));
    }
    Ok(bytes)
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

async fn resource(
    cluster: &Arc<Cluster>,
    req: Request<Incoming>,
    group: &str,
    version: &str,
    segs: &[String],
) -> (String, Response<Body>) {
    // [plural], [plural, name], [plural, name, sub],
    // [namespaces, ns, plural], [namespaces, ns, plural, name], [.., sub]
    let (ns, plural, name, sub): (Option<String>, String, Option<String>, Option<String>) =
        if segs.len() >= 3
            && segs[0] == "namespaces"
            && segs[2] != "status"
            && segs[2] != "finalize"
        {
            (
                Some(segs[1].clone()),
                segs[2].clone(),
                segs.get(3).cloned(),
                segs.get(4).cloned(),
            )
        } else {
            (
                None,
                segs.first().cloned().unwrap_or_default(),
                segs.get(1).cloned(),
                segs.get(2).cloned(),
            )
        };
    let rt = cluster.store().find_type(group, version, &plural);
    let Some(rt) = rt else {
        // As the API server: a resource no one serves is a plain-text 404.
        let r = Response::builder()
            .status(404)
            .header("content-type", "text/plain; charset=utf-8")
            .body(full("404 page not found\n"))
            .expect("a valid response");
        return ("unknown".into(), r);
    };
    if let Some(s) = &sub
        && s != "status"
    {
        let e = ApiError::new(
            404,
            "NotFound",
            format!("subresource {s} is not served by kubesim"),
        );
        return ("unknown".into(), error_response(&e));
    }
    let status_only = sub.is_some();
    let q = query(&req);
    let ns_str = ns.clone().unwrap_or_default();
    let verb = request_verb(req.method(), name.is_some(), &q);
    if cluster.faults().refuses(verb, &rt.plural) {
        let scope = match &ns {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_string(),
        };
        let e = ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} is forbidden: User \"kubesim-admin\" cannot {verb} resource \"{}\" in API group \"{}\"{scope}",
                rt.qualified(),
                rt.plural,
                rt.group
            ),
        );
        return (verb.into(), error_response(&e));
    }
    let manager = q.get("fieldManager").cloned().unwrap_or_else(|| {
        req.headers()
            .get("user-agent")
            .and_then(|h| h.to_str().ok())
            .map(|ua| ua.split('/').next().unwrap_or("unknown").to_string())
            .unwrap_or_else(|| "unknown".into())
    });
    let method = req.method().clone();
    let as_table = req
        .headers()
        .get("accept")
        .and_then(|h| h.to_str().ok())
        .is_some_and(crate::table::wants_table);
    let result: (String, Result<Value, ApiError>) = match (&method, &name) {
        (&Method::GET, Some(n)) if as_table => (
            "get".into(),
            cluster.store().get(&rt, &ns_str, n).map(|o| {
                let rv = o
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                crate::table::table(&rt.kind, &[o], &rv)
            }),
        ),
        (&Method::GET, Some(n)) => ("get".into(), cluster.store().get(&rt, &ns_str, n)),
        (&Method::GET, None) => {
            let labels = match LabelSelector::parse(
                q.get("labelSelector").map(String::as_str).unwrap_or(""),
            ) {
                Ok(l) => l,
                Err(e) => return ("list".into(), error_response(&ApiError::bad_request(e))),
            };
            let fields = match FieldSelector::parse(
                q.get("fieldSelector").map(String::as_str).unwrap_or(""),
            ) {
                Ok(f) => f,
                Err(e) => return ("list".into(), error_response(&ApiError::bad_request(e))),
            };
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
                return (
                    "watch".into(),
                    watch(cluster.clone(), rt, ns, labels, fields, &q),
                );
            }
            let (items, rv) = cluster.store().list(&rt, ns.as_deref(), &labels, &fields);
            after_list(
                cluster,
                &rt,
                q.get("labelSelector").map(String::as_str).unwrap_or(""),
            );
            if as_table {
                return (
                    "list".into(),
                    json_response(200, &crate::table::table(&rt.kind, &items, &rv.to_string())),
                );
            }
            (
                "list".into(),
                Ok(json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(),
                    "metadata": {"resourceVersion": rv.to_string()},
                    "items": items,
                })),
            )
        }
        (&Method::POST, None) => {
            let body = match body_bytes(req).await.and_then(|b| parse_json(&b)) {
                Ok(b) => b,
                Err(e) => return ("create".into(), error_response(&e)),
            };
            if q.contains_key("dryRun") {
                return ("create".into(), json_response(201, &body));
            }
            let r = cluster.store().create(&rt, &ns_str, body, &manager);
            return (
                "create".into(),
                r.map_or_else(|e| error_response(&e), |v| json_response(201, &v)),
            );
        }
        (&Method::PUT, Some(n)) => {
            let r = match body_bytes(req).await.and_then(|b| parse_json(&b)) {
                Ok(b) => cluster
                    .store()
                    .update(&rt, &ns_str, n, b, status_only, &manager),
                Err(e) => Err(e),
            };
            ("update".into(), r)
        }
        (&Method::PATCH, Some(n)) => {
            let ctype = req
                .headers()
                .get("content-type")
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let kind = match ctype.as_str() {
                "application/json-patch+json" => PatchType::Json,
                "application/merge-patch+json" => PatchType::Merge,
                "application/strategic-merge-patch+json" => PatchType::Strategic,
                "application/apply-patch+yaml" | "application/apply-patch+json" => PatchType::Apply,
                other => {
                    let e = ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        format!("the patch type {other:?} is not supported"),
                    );
                    return ("patch".into(), error_response(&e));
                }
            };
            let force = q.get("force").is_some_and(|f| f == "true");
            if kind == PatchType::Apply && q.get("fieldManager").is_none_or(String::is_empty) {
                let e = crate::store::field_manager_required();
                return ("patch".into(), error_response(&e));
            }
            let r = match body_bytes(req).await {
                Ok(b) => {
                    cluster
                        .store()
                        .patch(&rt, &ns_str, n, kind, &b, &manager, force, status_only)
                }
                Err(e) => Err(e),
            };
            ("patch".into(), r)
        }
        (&Method::DELETE, Some(n)) => {
            let r = cluster.store().delete(&rt, &ns_str, n).map(|o| {
                // Gone at once: the API server answers Status Success,
                // except for the kinds whose registry returns the object.
                let gone = o.pointer("/metadata/deletionTimestamp").is_none();
                if gone && !matches!(rt.kind.as_str(), "Service" | "Pod") {
                    json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success",
                        "details": {
                            "name": n, "group": rt.group, "kind": rt.plural,
                            "uid": o.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                        },
                    })
                } else {
                    o
                }
            });
            ("delete".into(), r)
        }
        (&Method::DELETE, None) => {
            let labels =
                LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
                    .unwrap_or_default();
            let fields =
                FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))
                    .unwrap_or_default();
            let mut store = cluster.store();
            let (items, _) = store.list(&rt, ns.as_deref(), &labels, &fields);
            let mut deleted = Vec::new();
            for it in items {
                let n = it
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let ins = it
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if let Ok(d) = store.delete(&rt, &ins, &n) {
                    deleted.push(d);
                }
            }
            (
                "deletecollection".into(),
                Ok(
                    json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {}, "items": deleted}),
                ),
            )
        }
        _ => {
            let e = ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not allowed here"),
            );
            return ("unknown".into(), error_response(&e));
        }
    };
    let (verb, r) = result;
    (
        verb,
        r.map_or_else(|e| error_response(&e), |v| json_response(200, &v)),
    )
}

/// A watch: the events after `resourceVersion` (or the current objects as
/// ADDED when none is given), then live events, as newline-separated JSON.
fn watch(
    cluster: Arc<Cluster>,
    rt: crate::resources::ResourceType,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    q: &HashMap<String, String>,
) -> Response<Body> {
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let drop_after = cluster
        .faults()
        .drop_watches
        .then(|| Duration::from_millis(200 + u64::from(rand::random::<u16>() % 800)));
    let since: Option<u64> = q
        .get("resourceVersion")
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0);
    let key = rt.key();
    let in_scope = move |o: &Value| {
        (ns.is_none()
            || !rt.namespaced
            || o.pointer("/metadata/namespace").and_then(Value::as_str) == ns.as_deref())
            && labels.matches(o)
            && fields.matches(o)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let line = |kind: &str, o: &Value| {
        let mut s = serde_json::to_vec(&json!({"type": kind, "object": o})).unwrap_or_default();
        s.push(b'\n');
        Bytes::from(s)
    };
    // Subscribe before reading the past, so nothing falls in between.
    let (mut live, backlog, mut last) = {
        let store = cluster.store();
        let live = store.subscribe();
        let rv = store.resource_version();
        let backlog: Result<Vec<Bytes>, ()> = match since {
            Some(rv0) => match store.events_since(rv0) {
                Some(evs) => Ok(evs
                    .iter()
                    .filter(|e| e.key == key && in_scope(&e.object))
                    .map(|e| line(event_name(e.kind), &e.object))
                    .collect()),
                None => Err(()),
            },
            None => {
                let objects = store.all(&key.0, &key.1);
                Ok(objects
                    .iter()
                    .filter(|o| in_scope(o))
                    .map(|o| {
                        let mut o = o.clone();
                        if let Some(m) = o.as_object_mut() {
                            m.insert(
                                "apiVersion".into(),
                                Value::from(rt_api_version(&key, &store)),
                            );
                        }
                        line("ADDED", &o)
                    })
                    .collect())
            }
        };
        (live, backlog, rv)
    };
    tokio::spawn(async move {
        let backlog = match backlog {
            Ok(b) => b,
            Err(()) => {
                let gone = ApiError::new(410, "Expired", "too old resource version");
                let _ = tx.send(line("ERROR", &gone.status())).await;
                return;
            }
        };
        for b in backlog {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + drop_after.unwrap_or(timeout).min(timeout);
        loop {
            let ev = tokio::select! {
                ev = live.recv() => ev,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            };
            match ev {
                Ok(e) if e.key == key && e.rv > last => {
                    last = e.rv;
                    if in_scope(&e.object)
                        && tx.send(line(event_name(e.kind), &e.object)).await.is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                // Fell behind: end the watch; the client lists again.
                Err(_) => return,
            }
        }
    });
    let stream = tokio_stream(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("a valid response")
}

fn rt_api_version(key: &(String, String), store: &crate::store::Store) -> String {
    store
        .types
        .iter()
        .find(|t| t.key() == *key)
        .map(|t| t.api_version())
        .unwrap_or_else(|| "v1".into())
}

fn event_name(k: EventType) -> &'static str {
    match k {
        EventType::Added => "ADDED",
        EventType::Modified => "MODIFIED",
        EventType::Deleted => "DELETED",
    }
}

fn tokio_stream(mut rx: tokio::sync::mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("a%3Db%2Cc"), "a=b,c");
        assert_eq!(decode("app+in+%28a%29"), "app in (a)");
        assert_eq!(decode("bad%zz"), "bad%zz");
        assert_eq!(decode("end%2"), "end%2");
    }
}
