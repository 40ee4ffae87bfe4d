//! The mesh file (mesh.toml): its model, parsing and validation.
//!
//! [`parse`] is pure: source text in, a validated [`MeshFile`] or every
//! mistake as [`Diagnostics`] out. [`load`] reads the file first.
//! docs/mesh-toml.md documents the format; [`schema_json`] is its JSON Schema.

mod diagnostic;
mod load;
mod model;
mod parse;
pub mod raw;
mod validate;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use load::load;
pub use model::*;
pub use validate::{REMOTE_SECRET_LIMIT, is_dns1123_label};

use diagnostic::Locator;
use serde_json::{Map, Value};
use std::path::Path;

/// Parses and validates a mesh file's text. `path` is used in messages and
/// to resolve relative paths later; nothing is read.
pub fn parse(source: &str, path: &Path) -> Result<MeshFile, Diagnostics> {
    parse_keeping_trust(source, path).map_err(|(d, _)| d)
}

/// [`parse`], and on failure the `[trust]` section if it was written well
/// enough to know its files: [`load`] checks them too, so that their
/// mistakes are not reported only once every other one is fixed.
fn parse_keeping_trust(
    source: &str,
    path: &Path,
) -> Result<MeshFile, (Diagnostics, Option<Box<TrustSection>>)> {
    let loc = Locator::new(path, source);
    let mut walker = parse::Walker {
        loc: &loc,
        errors: Vec::new(),
    };
    let root = match parse::syntax(source, &loc) {
        Ok(root) => root,
        Err((mut errors, recovered)) => {
            // The unknown keys and wrong types of what the parser made out
            // of the rest, with the syntax errors; the rules between values
            // wait for a file that parses (the parser may have dropped a
            // value they need). Nothing on a line with a syntax error.
            walker.document(recovered.get_ref());
            let lines: Vec<usize> = errors.iter().map(|d| d.line).collect();
            errors.extend(
                walker
                    .errors
                    .into_iter()
                    .filter(|d| !lines.contains(&d.line)),
            );
            return Err((sorted(errors), None));
        }
    };
    let draft = walker.document(root.get_ref());
    let values = cluster_values(source, "values");
    let eastwest_values = cluster_values(source, "eastwest_values");
    let shape_errors = walker.errors;
    match validate::validate(draft, (&values, &eastwest_values), path, &loc) {
        Ok(mesh) if shape_errors.is_empty() => Ok(mesh),
        Ok(mesh) => Err((sorted(shape_errors), mesh.trust.map(Box::new))),
        Err((mut rule_errors, trust)) => {
            rule_errors.extend(shape_errors);
            Err((sorted(rule_errors), trust))
        }
    }
}

fn sorted(mut errors: Vec<Diagnostic>) -> Diagnostics {
    errors.sort_by(|a, b| (a.line, a.column, &a.message).cmp(&(b.line, b.column, &b.message)));
    errors.dedup();
    Diagnostics(errors)
}

/// The largest mesh file mesh reads: 16 MiB. A mesh file of ten thousand
/// clusters is about 1.5 MiB; a larger file is not a mesh file (a mistyped
/// `-f`), and reading it whole could exhaust memory.
pub const MESH_FILE_LIMIT: u64 = 16 << 20;

/// The largest PEM file (`[trust] root_cert`, `root_key`) mesh reads:
/// 1 MiB. A certificate or key is a few KiB.
pub const PEM_FILE_LIMIT: u64 = 1 << 20;

/// Each `[[cluster]]`'s `key` table (`values`, `eastwest_values`) as JSON,
/// by position.
fn cluster_values(source: &str, key: &str) -> Vec<Option<Map<String, Value>>> {
    let Ok(table) = toml::from_str::<toml::Table>(source) else {
        return Vec::new();
    };
    let Some(toml::Value::Array(clusters)) = table.get("cluster") else {
        return Vec::new();
    };
    clusters
        .iter()
        .map(|c| match c.get(key) {
            Some(v @ toml::Value::Table(_)) => match to_json(v) {
                Value::Object(m) => Some(m),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or_else(|| Value::from(f.to_string()), Value::Number),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// A duration as the mesh file and the CLI write it: `30s`, `5m`, `1h`,
/// `1m30s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let bad = || format!("`{s}` is not a duration: use e.g. 30s, 5m, 1h or 90d");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for ch in s.chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let unit = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        num.clear();
    }
    if !num.is_empty() || s.is_empty() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}

/// The JSON Schema of the mesh file format (docs/mesh.schema.json).
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(raw::RawMeshFile);
    serde_json::to_string_pretty(&schema).expect("a schema serialises") + "\n"
}
