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

/// Hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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
