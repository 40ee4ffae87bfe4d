//! The mesh file (mesh.toml): its model, parsing and validation.
//!
//! [`parse`] is pure: source text in, a validated [`MeshFile`] or every
//! mistake as [`Diagnostics`] out. [`load`] reads the file first.
//! docs/mesh-toml.md documents the format; [`schema_json`] is its JSON Schema.

mod diagnostic;
mod model;
mod parse;
pub mod raw;
mod validate;

pub use diagnostic::{Diagnostic, Diagnostics};
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

/// Reads and validates the mesh file at `path`: a regular file of at most
/// [`MESH_FILE_LIMIT`] (a FIFO or a device is refused, not read).
pub fn load(path: &Path) -> Result<MeshFile, Diagnostics> {
    let bytes = state::local::read_regular_file(path, MESH_FILE_LIMIT, "mesh file");
    if let Ok(bytes) = &bytes
        && let Err(e) = std::str::from_utf8(bytes)
    {
        // Point at the first bad byte: the valid text before it gives its line and column.
        let good = &bytes[..e.valid_up_to()];
        let text = String::from_utf8_lossy(good);
        let line = text.matches('\n').count() + 1;
        let line_start = text.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..].chars().count() + 1;
        return Err(Diagnostics(vec![Diagnostic {
            path: path.to_path_buf(),
            line,
            column,
            width: 1,
            source_line: text[line_start..].to_string(),
            message: format!(
                "the mesh file is not UTF-8 text: byte {} (0x{:02x}) is not valid UTF-8",
                e.valid_up_to(),
                bytes[e.valid_up_to()]
            ),
            help: Some("save the file as UTF-8 (TOML files must be UTF-8)".into()),
        }]));
    }
    match bytes.and_then(|b| String::from_utf8(b).map_err(std::io::Error::other)) {
        Ok(source) => match parse_keeping_trust(&source, path) {
            Ok(mut mesh) => {
                if let Some(trust) = mesh.trust.as_mut() {
                    load_trust(trust, path, &source, &mut mesh.warnings)?;
                }
                Ok(mesh)
            }
            Err((mut diagnostics, Some(mut trust))) => {
                if let Err(more) = load_trust(&mut trust, path, &source, &mut Vec::new()) {
                    diagnostics.0.extend(more.0);
                    diagnostics = sorted(diagnostics.0);
                }
                Err(diagnostics)
            }
            Err((diagnostics, None)) => Err(diagnostics),
        },
        Err(e) => {
            // No location: there is no text to point into.
            let (message, help) = if e.kind() == std::io::ErrorKind::NotFound {
                let init = if path == Path::new("mesh.toml") {
                    "mesh init".to_string()
                } else {
                    format!("mesh init -f {}", path.display())
                };
                (
                    format!(
                        "no mesh file at {}: create one with `{init}` (or pass -f)",
                        path.display()
                    ),
                    None,
                )
            } else {
                let help = match e.kind() {
                    std::io::ErrorKind::InvalidInput => {
                        "name a regular file with -f FILE: mesh does not read a mesh file from a pipe or a device (write the text to a file first)"
                    }
                    std::io::ErrorKind::FileTooLarge => {
                        "check that -f FILE names the mesh file: even one of thousands of clusters is far smaller"
                    }
                    _ => {
                        "check that it is a readable UTF-8 text file, or name another with -f FILE"
                    }
                };
                (
                    format!("cannot read the mesh file {}: {e}", path.display()),
                    Some(help.to_string()),
                )
            };
            Err(Diagnostics(vec![Diagnostic {
                path: path.to_path_buf(),
                line: 0,
                column: 0,
                width: 0,
                source_line: String::new(),
                message,
                help,
            }]))
        }
    }
}

/// Reads and checks `[trust]`'s files: the root certificate (kept, it is
/// public) and the key (read only to check it matches, then dropped; it is
/// read again at apply time). A key file readable by others is a warning.
fn load_trust(
    trust: &mut TrustSection,
    path: &Path,
    source: &str,
    warnings: &mut Vec<String>,
) -> Result<(), Diagnostics> {
    let loc = Locator::new(path, source);
    let (cert_span, key_span) = trust.spans.clone();
    // Only regular files, and only up to PEM_FILE_LIMIT: a FIFO or a device
    // named here would block the load or never end.
    let read = |p: &Path, span: &std::ops::Range<usize>, what: &str| {
        state::local::read_regular_file(p, PEM_FILE_LIMIT, "PEM file")
            .and_then(|b| {
                String::from_utf8(b).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "it is not text, as a PEM file is",
                    )
                })
            })
            .map_err(|e| {
                let help = match e.kind() {
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::FileTooLarge => {
                        "point it at the PEM file itself (a regular file of a few KiB); `mesh ca init` makes a new root in certs/ beside the mesh file"
                    }
                    _ => {
                        "check the path (relative to the mesh file); `mesh ca init` makes a new root in certs/ beside the mesh file"
                    }
                };
                Diagnostics(vec![loc.at(
                    span.clone(),
                    format!("cannot read the {what} {}: {e}", p.display()),
                    Some(help.into()),
                )])
            })
    };
    // Both files' problems at once.
    let (cert, key) = match (
        read(&trust.root_cert, &cert_span, "root certificate"),
        read(&trust.root_key, &key_span, "root key"),
    ) {
        (Ok(c), Ok(k)) => (c, providers::Sensitive::new(k)),
        (Err(mut a), Err(b)) => {
            a.0.extend(b.0);
            return Err(a);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    use providers::ca::RootProblem;
    // The check plug-ca runs before it signs, run here so that a root that
    // cannot do its job stops every command before anything runs.
    let checked = providers::ca::check_root(
        &cert,
        Some(&key),
        providers::ca::now(),
        trust.intermediate_days,
    );
    if let Err(problem) = checked {
        const NEW_ROOT: &str = "`mesh ca init DIR` makes one";
        let (span, help) = match &problem {
            RootProblem::Key(_) => (
                key_span,
                "root_key must be the PEM private key of root_cert (PKCS#8, PKCS#1 or SEC1, unencrypted)"
                    .to_string(),
            ),
            RootProblem::KeyMismatch => (
                key_span,
                "point root_key at the key the root certificate was made with".to_string(),
            ),
            RootProblem::NotCa => (
                cert_span,
                "root_cert must be a CA certificate (basicConstraints CA:true)".to_string(),
            ),
            RootProblem::Expired { .. } => (
                cert_span,
                "make a new root (`mesh ca init`) and plan: every primary's intermediate is then rotated"
                    .to_string(),
            ),
            RootProblem::NotYetValid { .. } => (
                cert_span,
                format!(
                    "make a root valid from now (was the clock of the machine that made it ahead?); {NEW_ROOT}"
                ),
            ),
            RootProblem::PathLenZero => (
                cert_span,
                format!(
                    "make a root with basicConstraints CA:true and no pathlen (or pathlen:1 or more); {NEW_ROOT}"
                ),
            ),
            RootProblem::NoKeyCertSign => (
                cert_span,
                format!("make a root whose keyUsage has keyCertSign (and cRLSign); {NEW_ROOT}"),
            ),
            RootProblem::ExtendedKeyUsage { .. } => (
                cert_span,
                format!(
                    "make a root without extendedKeyUsage (or with serverAuth and clientAuth); {NEW_ROOT}"
                ),
            ),
            RootProblem::Outlived { days_left, .. } if *days_left >= 1 => (
                cert_span,
                format!(
                    "set [trust] intermediate_days to at most {days_left}, or use a root that outlives the \
                     intermediates ({NEW_ROOT}, valid ten years)"
                ),
            ),
            RootProblem::Outlived { .. } => (
                cert_span,
                format!("the root expires within a day: use a new one ({NEW_ROOT}, valid ten years)"),
            ),
            RootProblem::Cert(_) => (cert_span, "root_cert must be a PEM certificate".to_string()),
            RootProblem::Bundle { .. } => (
                cert_span,
                "point root_cert at a file with the root alone: an intermediate or a second root \
                 beside it would reach every primary's root-cert.pem unseen by plans"
                    .to_string(),
            ),
        };
        return Err(Diagnostics(vec![loc.at(
            span,
            problem.to_string(),
            Some(help),
        )]));
    }
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&trust.root_key) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            warnings.push(format!(
                "the root key {} is readable by others (mode {mode:o}): `chmod 600 {}`",
                trust.root_key.display(),
                trust.root_key.display()
            ));
        }
    }
    trust.root_cert_pem = cert;
    Ok(())
}

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
