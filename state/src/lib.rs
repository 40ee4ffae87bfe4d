//! The state: what mesh has applied, step by step.
//!
//! - [`model`]: [`State`] and [`StepRecord`], the JSON file's contract.
//! - [`local`]: the local file backend: atomic replace (temp, fsync,
//!   rename), mode 0600, `<state>.backup`, reads that refuse what they
//!   cannot understand.
//! - [`lock`]: the exclusive lock on `<state>.lock`, an OS file lock so a
//!   killed holder never leaves it held, and `force-unlock`.
//!
//! Pure data plus file IO; no other workspace crate is needed.

mod error;
pub mod local;
pub mod lock;
pub mod model;
mod time;

pub use error::StateError;
pub use local::{LocalBackend, StateLock, read_unlocked};
pub use lock::{LockInfo, force_unlock};
pub use model::{FORMAT_VERSION, State, Status, StepRecord};
pub use time::now_rfc3339;
