//! Just enough of Kubernetes' protobuf encoding to read what kubectl's
//! typed commands send (`kubectl create namespace`, `kubectl create service`):
//! the `k8s\0` envelope, TypeMeta, ObjectMeta's common fields, and the
//! Namespace and Service shapes. kubesim answers in JSON, which kubectl
//! accepts; other protobuf bodies are refused with 415.

use serde_json::{Map, Value, json};

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Wire<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((field, Wire::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let bytes = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                out.push((field, Wire::Bytes(bytes)));
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return None,
        }
    }
    Some(out)
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn string_map(entries: &[&[u8]]) -> Option<Value> {
    let mut m = Map::new();
    for e in entries {
        let mut k = String::new();
        let mut v = String::new();
        for (f, w) in fields(e)? {
            if let Wire::Bytes(b) = w {
                match f {
                    1 => k = string(b),
                    2 => v = string(b),
                    _ => {}
                }
            }
        }
        m.insert(k, Value::from(v));
    }
    Some(Value::Object(m))
}

/// A map<string, bytes>: JSON carries the values base64-encoded.
fn bytes_map(entries: &[&[u8]]) -> Option<Value> {
    use base64::Engine as _;
    let mut m = Map::new();
    for e in entries {
        let (mut k, mut v): (String, &[u8]) = (String::new(), &[]);
        for (f, w) in fields(e)? {
            if let Wire::Bytes(b) = w {
                match f {
                    1 => k = string(b),
                    2 => v = b,
                    _ => {}
                }
            }
        }
        m.insert(
            k,
            Value::from(base64::engine::general_purpose::STANDARD.encode(v)),
        );
    }
    Some(Value::Object(m))
}

fn object_meta(buf: &[u8]) -> Option<Value> {
    let mut meta = Map::new();
    let (mut labels, mut annotations) = (Vec::new(), Vec::new());
    for (f, w) in fields(buf)? {
        let Wire::Bytes(b) = w else { continue };
        match f {
            1 => {
                meta.insert("name".into(), Value::from(string(b)));
            }
            2 => {
                meta.insert("generateName".into(), Value::from(string(b)));
            }
            3 => {
                meta.insert("namespace".into(), Value::from(string(b)));
            }
            11 => labels.push(b),
            12 => annotations.push(b),
            _ => {}
        }
    }
    if !labels.is_empty() {
        meta.insert("labels".into(), string_map(&labels)?);
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), string_map(&annotations)?);
    }
    Some(Value::Object(meta))
}

fn int_or_string(buf: &[u8]) -> Option<Value> {
    let (mut kind, mut int, mut s) = (0, 0, String::new());
    for (f, w) in fields(buf)? {
        match (f, w) {
            (1, Wire::Varint(v)) => kind = v,
            (2, Wire::Varint(v)) => int = v,
            (3, Wire::Bytes(b)) => s = string(b),
            _ => {}
        }
    }
    Some(if kind == 1 {
        Value::from(s)
    } else {
        Value::from(int)
    })
}

fn service_spec(buf: &[u8]) -> Option<Value> {
    let mut spec = Map::new();
    let (mut ports, mut selector) = (Vec::new(), Vec::new());
    for (f, w) in fields(buf)? {
        match (f, w) {
            (1, Wire::Bytes(b)) => {
                let mut port = Map::new();
                for (pf, pw) in fields(b)? {
                    match (pf, pw) {
                        (1, Wire::Bytes(v)) => {
                            port.insert("name".into(), Value::from(string(v)));
                        }
                        (2, Wire::Bytes(v)) => {
                            port.insert("protocol".into(), Value::from(string(v)));
                        }
                        (3, Wire::Varint(v)) => {
                            port.insert("port".into(), Value::from(v));
                        }
                        (4, Wire::Bytes(v)) => {
                            port.insert("targetPort".into(), int_or_string(v)?);
                        }
                        (5, Wire::Varint(v)) => {
                            port.insert("nodePort".into(), Value::from(v));
                        }
                        _ => {}
                    }
                }
                ports.push(Value::Object(port));
            }
            (2, Wire::Bytes(b)) => selector.push(b),
            (3, Wire::Bytes(b)) => {
                spec.insert("clusterIP".into(), Value::from(string(b)));
            }
            (4, Wire::Bytes(b)) => {
                spec.insert("type".into(), Value::from(string(b)));
            }
            _ => {}
        }
    }
    spec.insert("ports".into(), Value::Array(ports));
    if !selector.is_empty() {
        spec.insert("selector".into(), string_map(&selector)?);
    }
    Some(Value::Object(spec))
}

/// The JSON form of a protobuf-encoded Namespace or Service.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\x00")
        .ok_or("a protobuf body must start with the k8s envelope")?;
    let bad = || "malformed protobuf body".to_string();
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (f, w) in fields(rest).ok_or_else(bad)? {
        let Wire::Bytes(b) = w else { continue };
        match f {
            1 => {
                for (tf, tw) in fields(b).ok_or_else(bad)? {
                    if let Wire::Bytes(v) = tw {
                        match tf {
                            1 => api_version = string(v),
                            2 => kind = string(v),
                            _ => {}
                        }
                    }
                }
            }
            2 => raw = b,
            _ => {}
        }
    }
    let mut obj = json!({"apiVersion": api_version, "kind": kind});
    // Map fields come as one entry per occurrence: (JSON field, entries, bytes values).
    let mut maps: Vec<(&str, Vec<&[u8]>, bool)> = Vec::new();
    let mut map_entry = |name: &'static str, b, binary| match maps.iter_mut().find(|m| m.0 == name)
    {
        Some(m) => m.1.push(b),
        None => maps.push((name, vec![b], binary)),
    };
    for (f, w) in fields(raw).ok_or_else(bad)? {
        if let (("ConfigMap", 4) | ("Secret", 5), Wire::Varint(v)) = ((kind.as_str(), f), &w) {
            obj["immutable"] = Value::from(*v != 0);
            continue;
        }
        let Wire::Bytes(b) = w else { continue };
        match (kind.as_str(), f) {
            (_, 1) => obj["metadata"] = object_meta(b).ok_or_else(bad)?,
            ("Service", 2) => obj["spec"] = service_spec(b).ok_or_else(bad)?,
            ("ConfigMap", 2) => map_entry("data", b, false),
            ("ConfigMap", 3) => map_entry("binaryData", b, true),
            ("Secret", 2) => map_entry("data", b, true),
            ("Secret", 4) => map_entry("stringData", b, false),
            ("Secret", 3) => obj["type"] = Value::from(string(b)),
            ("Namespace", 2 | 3) | ("Service", 3) => {}
            (other, _) => {
                return Err(format!(
                    "protobuf bodies of kind {other} are not supported by kubesim: send JSON"
                ));
            }
        }
    }
    for (name, entries, binary) in maps {
        obj[name] = if binary {
            bytes_map(&entries)
        } else {
            string_map(&entries)
        }
        .ok_or_else(bad)?;
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_namespace_from_kubectl_create() {
        let meta = [
            field(1, b"istio-system"),
            field(11, &[field(1, b"a"), field(2, b"b")].concat()),
        ]
        .concat();
        let ns = field(1, &meta);
        let tm = [field(1, b"v1"), field(2, b"Namespace")].concat();
        let body = [b"k8s\x00".to_vec(), field(1, &tm), field(2, &ns)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system", "labels": {"a": "b"}}})
        );
        assert!(decode(b"nope").is_err());
        assert!(decode(&body[..body.len() - 3]).is_err());
    }
}
