//! Server-side table printing, as kubectl asks for it (`Accept:
//! application/json;as=Table;v=v1;g=meta.k8s.io`): the columns a real API
//! server prints for the kinds mesh installs (a Service's TYPE, CLUSTER-IP,
//! EXTERNAL-IP, PORT(S); a Deployment's READY…), NAME and AGE for the rest.

use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether the request's Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn column(name: &str, kind: &str, format: &str) -> Value {
    json!({"name": name, "type": kind, "format": format, "description": "", "priority": 0})
}

/// A row's cells from its object.
type Cells = fn(&Value) -> Vec<Value>;

/// The Table of `objects` (one object for a get, the items of a list).
pub fn table(kind: &str, objects: &[Value], resource_version: &str) -> Value {
    let (columns, cells): (Vec<Value>, Cells) = match kind {
        "Service" => (
            vec![
                column("Name", "string", "name"),
                column("Type", "string", ""),
                column("Cluster-IP", "string", ""),
                column("External-IP", "string", ""),
                column("Port(s)", "string", ""),
                column("Age", "string", ""),
            ],
            service_cells,
        ),
        "Deployment" => (
            vec![
                column("Name", "string", "name"),
                column("Ready", "string", ""),
                column("Up-to-date", "string", ""),
                column("Available", "string", ""),
                column("Age", "string", ""),
            ],
            deployment_cells,
        ),
        "Namespace" => (
            vec![
                column("Name", "string", "name"),
                column("Status", "string", ""),
                column("Age", "string", ""),
            ],
            |o| {
                vec![
                    name(o),
                    Value::from(
                        o.pointer("/status/phase")
                            .and_then(Value::as_str)
                            .unwrap_or("Active"),
                    ),
                    age(o),
                ]
            },
        ),
        "Secret" => (
            vec![
                column("Name", "string", "name"),
                column("Type", "string", ""),
                column("Data", "string", ""),
                column("Age", "string", ""),
            ],
            |o| {
                vec![
                    name(o),
                    Value::from(o.get("type").and_then(Value::as_str).unwrap_or("Opaque")),
                    Value::from(
                        o.get("data")
                            .and_then(Value::as_object)
                            .map_or(0, |d| d.len()),
                    ),
                    age(o),
                ]
            },
        ),
        _ => (
            vec![
                column("Name", "string", "name"),
                column("Age", "string", ""),
            ],
            |o| vec![name(o), age(o)],
        ),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "cells": cells(o),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or_default(),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn name(o: &Value) -> Value {
    o.pointer("/metadata/name").cloned().unwrap_or_default()
}

fn service_cells(o: &Value) -> Vec<Value> {
    let spec = o.get("spec").cloned().unwrap_or_default();
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let ingress: Vec<String> = o
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.get("ip")
                .or_else(|| i.get("hostname"))
                .and_then(Value::as_str)
        })
        .map(String::from)
        .collect();
    let external = if !ingress.is_empty() {
        ingress.join(",")
    } else if kind == "LoadBalancer" {
        "<pending>".into()
    } else {
        "<none>".into()
    };
    let ports: Vec<String> = spec
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                Some(n) => format!("{port}:{n}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    vec![
        name(o),
        Value::from(kind),
        Value::from(
            spec.get("clusterIP")
                .and_then(Value::as_str)
                .filter(|ip| !ip.is_empty())
                .unwrap_or("<none>"),
        ),
        Value::from(external),
        Value::from(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        }),
        age(o),
    ]
}

fn deployment_cells(o: &Value) -> Vec<Value> {
    let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    let want = o
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    vec![
        name(o),
        Value::from(format!("{}/{want}", n("/status/readyReplicas"))),
        Value::from(n("/status/updatedReplicas")),
        Value::from(n("/status/availableReplicas")),
        age(o),
    ]
}

/// kubectl's short age: `45s`, `3m10s`, `42m`, `5h`, `3d`.
fn age(o: &Value) -> Value {
    let Some(created) = o
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
    else {
        return Value::from("<unknown>");
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Value::from(human(now.saturating_sub(created).max(0) as u64))
}

fn human(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_balancer_service_row() {
        let svc = json!({"metadata": {"name": "istio-eastwestgateway", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.12", "ports": [
                {"port": 15443, "protocol": "TCP", "nodePort": 31443}, {"port": 15012}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "172.18.100.200"}]}}});
        let t = table("Service", &[svc], "7");
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "LoadBalancer");
        assert_eq!(cells[3], "172.18.100.200");
        assert_eq!(cells[4], "15443:31443/TCP,15012/TCP");
        assert!(cells[5].as_str().unwrap().ends_with('d'));
        assert_eq!(t["columnDefinitions"][3]["name"], "External-IP");
    }

    #[test]
    fn ages_and_dates() {
        assert_eq!(parse_rfc3339("1970-01-02T00:00:01Z"), Some(86401));
        assert_eq!(human(45), "45s");
        assert_eq!(human(190), "3m10s");
        assert_eq!(human(7200), "120m");
        assert_eq!(human(5 * 3600), "5h");
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
