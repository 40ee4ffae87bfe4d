//! What a step renders into, and the vocabulary for values a plan cannot
//! show: values known only after apply, and secrets shown as fingerprints.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;

/// Shown in place of a value that only exists once an upstream step has run.
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";

/// The cluster a step acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The mesh file's cluster name.
    pub cluster: String,
    /// The kubeconfig context that reaches it.
    pub context: String,
    /// An explicit kubeconfig for this cluster (else `$KUBECONFIG` / `~/.kube/config`).
    /// Machine-local, so it never enters a fingerprint.
    pub kubeconfig: Option<PathBuf>,
}

/// An upstream output as the planner knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Known<T> {
    Known(T),
    /// The upstream step has not run yet (or will run again): its output is
    /// shown as [`KNOWN_AFTER_APPLY`].
    AfterApply,
}

/// A step's rendered input: the canonical documents it applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// YAML-compatible documents, in the order they are applied.
    pub documents: Vec<Value>,
    /// True when some value is [`KNOWN_AFTER_APPLY`].
    pub unknown: bool,
}

impl Rendered {
    /// The documents as a YAML stream (`---` between documents); deterministic,
    /// since documents keep their key order.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        for (i, doc) in self.documents.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            // Serialising a serde_json::Value cannot fail.
            out.push_str(&serde_saphyr::to_string(doc).expect("a JSON value serialises as YAML"));
            if !out.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// The sha256 of the canonical text: the target context plus the documents.
    pub fn fingerprint(&self, target: &Target) -> String {
        sha256_hex(format!("# context: {}\n{}", target.context, self.to_yaml()).as_bytes())
    }
}

/// A value that came from a cluster (or anywhere untrusted), made safe to
/// print on a terminal: control characters (ESC, newline…) are escaped as
/// `\u{1b}`, `\n`, and anything past 200 characters is cut with `…`.
///
/// For one value inside a message, so newlines are escaped too (a value
/// cannot forge a line of its own). The CLI escapes each whole message
/// again with the same notation (`printable` in src/output.rs), keeping
/// the message's own newlines; the `state` crate has a copy of this for
/// lock records, since it depends on no other workspace crate.
pub fn shown(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 200 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` on one line, whatever it holds: every control character (newline,
/// ESC, BEL…) escaped as [`shown`] does, nothing cut. For text printed a
/// line per item, so no value can forge a line of its own.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// [`sha256_hex`] of everything `reader` yields, read in pieces (a
/// program's binary is 100 MB and more: never held whole).
pub fn sha256_hex_of(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// A secret (token, kubeconfig, key). It can be used, but never printed:
/// `Display` and `Debug` show `(sensitive, sha256:…)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(String);

impl Sensitive {
    pub fn new(value: impl Into<String>) -> Self {
        Sensitive(value.into())
    }
    /// The secret itself, for the one place that must write it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn sha256(&self) -> String {
        sha256_hex(self.0.as_bytes())
    }
}

impl fmt::Display for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(sensitive, sha256:{})", self.sha256())
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Deep-merges `overlay` into `base`: tables merge key by key, anything
/// else in `overlay` replaces what `base` has. This is how `[cluster.values]`
/// reaches `spec.values`: a user value wins over mesh's, on purpose, so an
/// operator can override any default mesh renders (the plan shows it).
pub fn deep_merge(
    base: &mut serde_json::Map<String, Value>,
    overlay: &serde_json::Map<String, Value>,
) {
    for (k, v) in overlay {
        match (base.get_mut(k), v) {
            (Some(Value::Object(b)), Value::Object(o)) => deep_merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Replaces every occurrence of each secret in `text` with its
/// `(sensitive, sha256:…)` form: for tool output that might echo one.
pub fn redact(text: &str, secrets: &[&Sensitive]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if !s.expose().is_empty() {
            out = out.replace(s.expose(), &s.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_is_deep_and_overlay_wins() {
        let mut base =
            json!({"global": {"meshID": "m", "network": "n"}, "pilot": {"env": {"A": true}}})
                .as_object()
                .unwrap()
                .clone();
        let overlay =
            json!({"global": {"network": "x", "logging": {"level": "debug"}}, "pilot": 3})
                .as_object()
                .unwrap()
                .clone();
        deep_merge(&mut base, &overlay);
        assert_eq!(
            Value::Object(base),
            json!({"global": {"meshID": "m", "network": "x", "logging": {"level": "debug"}}, "pilot": 3})
        );
    }

    #[test]
    fn shown_escapes_control_characters_and_cuts_long_values() {
        assert_eq!(shown("10.0.0.1"), "10.0.0.1");
        assert_eq!(shown("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\nc");
        let long = "x".repeat(500);
        assert_eq!(shown(&long).chars().count(), 201);
    }

    #[test]
    fn secrets_print_only_as_fingerprints() {
        let s = Sensitive::new("tok3n");
        assert_eq!(
            format!("{s}"),
            format!("(sensitive, sha256:{})", sha256_hex(b"tok3n"))
        );
        assert_eq!(format!("{s:?}"), format!("{s}"));
        let text = redact("Bearer tok3n and tok3n", &[&s]);
        assert!(!text.contains("tok3n"));
        assert_eq!(text.matches("(sensitive, sha256:").count(), 2);
    }
}
