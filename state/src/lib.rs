//! The state: what mesh has applied, step by step, and how it is kept safe.
//!
//! A map of the crate:
//!
//! - [`model`]: [`State`] and [`StepRecord`], the JSON file's contract
//!   (docs/state.md describes it field by field).
//! - [`local`]: the local file backend: atomic replace (temp, fsync,
//!   rename), mode 0600, `<state>.backup`, and reads that refuse what they
//!   cannot understand rather than guess.
//! - [`lock`]: the exclusive lock on `<state>.lock`, an OS file lock so a
//!   killed holder never leaves it held, its holder record, and
//!   [`force_unlock`].
//! - [`backend`]: the traits every backend implements (the local one in
//!   [`local`]), and the checks of a push they share.
//! - `error`: [`StateError`], every failure with what to do about it.
//! - `lock_info`, `paths`, `time`: the holder record ([`LockInfo`], made
//!   by [`LockInfo::new`] for every backend) and the random IDs, the files
//!   beside a state, and timestamps, which the modules above share.
//!
//! No two modules import each other: `time` and `paths` at the bottom,
//! `lock_info` on `time`, `error` and `model` on them, `backend` (no
//! backend's internals) and `lock` above those, and `local` on top.
//!
//! Typical use, by a command that changes clusters:
//!
//! ```no_run
//! # use state::*; use std::time::Duration;
//! # fn main() -> Result<(), StateError> {
//! let backend = LocalBackend::new("mesh.state.json".into());
//! let mut lock = backend.lock("apply", Duration::from_secs(60))?;
//! let mut st = match lock.read()? {
//!     Some(st) => { st.check_mesh_id("mesh1")?; st }
//!     None => State::new("mesh1"),
//! };
//! // … apply a step, then:
//! // st.record("cluster2/attach", record);
//! lock.write(&mut st)?; // serial + 1, atomically, previous kept as .backup
//! # Ok(()) }
//! ```
//!
//! Pure data plus file IO: no other workspace crate, no async.

pub mod backend;
mod error;
pub mod local;
pub mod lock;
mod lock_info;
pub mod model;
mod paths;
mod time;

pub use backend::{Backend, LockedState, push_serial};
pub use error::{RemoteOp, StateError};
pub use local::{LocalBackend, StateLock, parse_state, read_unlocked};
pub use lock::{LockInfo, force_unlock, lock_path};
pub use model::{
    ClusterRecord, FORMAT_VERSION, MAX_SERIAL, Program, SERIAL_HEADROOM, SERIAL_RECOVERY, State,
    Status, StepRecord,
};
pub use time::{format_rfc3339, now_rfc3339};
