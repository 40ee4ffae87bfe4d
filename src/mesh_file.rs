//! Reading the mesh file, the same way for every command that needs it
//! (warnings printed, diagnostics as the error). A module of its own, below
//! the commands, so that sharing it makes no command import another.

use anyhow::{Context, Result};
use engine::config::{self, MeshFile};
use engine::topology::{self, StepGraph};
use std::path::Path;

/// Reads and validates the mesh file; diagnostics are returned as the error.
pub fn load_mesh(path: &Path) -> Result<MeshFile> {
    let mesh = config::load(path)?;
    for w in &mesh.warnings {
        crate::errln!("warning: {w}");
    }
    Ok(mesh)
}

pub fn load_graph(path: &Path) -> Result<(MeshFile, StepGraph)> {
    let mesh = load_mesh(path)?;
    let graph = topology::compile(&mesh)
        .with_context(|| format!("compiling the steps of {}", path.display()))?;
    Ok((mesh, graph))
}

/// A mesh file for `mesh diff`, which may stand for "no mesh": a file
/// whose TOML has no keys at all (empty, or only comments: `/dev/null`),
/// and, when `absent_ok`, a file that does not exist. `None` then, with a
/// note on stderr so a mistyped path does not pass unnoticed.
pub fn load_graph_or_none(path: &Path, absent_ok: bool) -> Result<Option<(MeshFile, StepGraph)>> {
    match std::fs::read_to_string(path) {
        Err(e) if absent_ok && e.kind() == std::io::ErrorKind::NotFound => {
            crate::errln!(
                "note: {} does not exist: comparing with no mesh at all",
                path.display()
            );
            Ok(None)
        }
        Ok(text) if text.parse::<toml::Table>().is_ok_and(|t| t.is_empty()) => {
            crate::errln!(
                "note: {} has no settings: comparing with no mesh at all",
                path.display()
            );
            Ok(None)
        }
        // Anything else, unreadable or invalid, is the ordinary load's error.
        _ => load_graph(path).map(Some),
    }
}

/// The fingerprint of the mesh file for the saved plan's stale check: the
/// sha256 of the parsed document written canonically (JSON, every table's
/// keys sorted, arrays in order, no whitespace), so that editing comments or
/// formatting leaves a saved plan fresh and changing any value makes it
/// stale. A file that does not parse (it was validated just before, so only
/// if it changed in between) is fingerprinted by its bytes.
pub fn mesh_file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let canonical = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .map(|table| {
            let mut out = String::new();
            canonical(&toml::Value::Table(table), &mut out);
            out
        });
    Ok(providers::sha256_hex(
        canonical.as_ref().map_or(&bytes[..], |c| c.as_bytes()),
    ))
}

/// `value` as canonical JSON. Strings are JSON strings; a date-time, which
/// JSON lacks, is an object `{"$datetime":"…"}` so it cannot equal a string.
fn canonical(value: &toml::Value, out: &mut String) {
    use std::fmt::Write as _;
    let string = |s: &str| serde_json::Value::from(s).to_string();
    match value {
        toml::Value::String(s) => out.push_str(&string(s)),
        toml::Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        // `{:?}` keeps a float a float (`1.0`, not `1`) and writes nan/inf.
        toml::Value::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        toml::Value::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        toml::Value::Datetime(d) => {
            let _ = write!(out, "{{\"$datetime\":{}}}", string(&d.to_string()));
        }
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        toml::Value::Table(table) => {
            let mut keys: Vec<&String> = table.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&string(key));
                out.push(':');
                canonical(&table[key], out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mesh_file_sha256;

    fn sha(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.toml");
        std::fs::write(&path, text).unwrap();
        mesh_file_sha256(&path).unwrap()
    }

    #[test]
    fn the_fingerprint_ignores_comments_and_formatting_but_not_values() {
        let a = sha("[mesh]\nid = \"mesh1\"\n\n[[cluster]]\nname = \"c1\"\nvalues = { a = 1 }\n");
        // Comments, spacing, quoting, key order and inline-vs-section tables.
        let b = sha(
            "# the mesh\n[mesh]\n  id='mesh1'   # its ID\n[[cluster]]\n[cluster.values]\na=1\n\n[[cluster]]\n",
        );
        assert_ne!(a, b, "a second cluster is a change");
        let b = sha(
            "# the mesh\n[mesh]\n  id='mesh1'   # its ID\n[[cluster]]\n[cluster.values]\na=1\n[cluster.x]\n",
        );
        assert_ne!(a, b);
        let b = sha(
            "# the mesh\n[mesh]\n  id='mesh1'   # its ID\n[[cluster]]\nvalues.a=1\nname=\"c1\"\n",
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            sha("[mesh]\nid = \"mesh2\"\n[[cluster]]\nname = \"c1\"\nvalues = { a = 1 }\n")
        );
        assert_ne!(
            a,
            sha("[mesh]\nid = \"mesh1\"\n[[cluster]]\nname = \"c1\"\nvalues = { a = \"1\" }\n")
        );
        assert_ne!(
            a,
            sha("[mesh]\nid = \"mesh1\"\n[[cluster]]\nname = \"c1\"\nvalues = { a = 1.0 }\n")
        );
        // Not TOML: its bytes.
        assert_eq!(sha("[mesh"), providers::sha256_hex(b"[mesh"));
    }
}
