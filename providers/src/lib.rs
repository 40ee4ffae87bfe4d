//! The step kinds of an Istio multicluster install, one file each.
//!
//! A step kind ([`kind::Kind`]) knows how to *render* its input (pure: the
//! documents it will apply, deterministic, so the planner can diff and
//! fingerprint them), and, against a live cluster, how to *read* (refresh),
//! *apply*, *destroy* and *adopt* (import). The engine never looks inside a
//! rendered document: it only compares, fingerprints and orders them, and
//! calls the verbs through [`StepInput`] and [`StepKind`]. Everything
//! Istio-specific lives here.

pub mod access;
pub mod ca;
pub mod check;
pub mod cluster;
pub mod env;
pub mod facts;
pub mod identity;
pub mod istio;
pub mod istioctl;
pub mod istiod_clients;
pub mod k8s;
pub mod kind;
pub mod kinds;
pub mod objects;
pub mod observe;
pub mod preflight;
pub mod proxies;
pub mod remote_secret;
pub mod rendered;
pub mod revision_use;
pub mod state_store;

pub use env::Ctx;
pub use kind::{Adoption, Kind};
pub use kinds::{StepInput, StepKind};
pub use observe::Observation;
pub use rendered::{
    KNOWN_AFTER_APPLY, Known, Rendered, Sensitive, Target, deep_merge, redact, sha256_hex,
};
