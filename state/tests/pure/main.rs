//! The state crate's tests, of the pure tier (docs/testing.md): the local
//! state file and its lock, in temporary folders, against other processes
//! (this binary run again as the writer or the lock holder); no cluster,
//! no simulator. Seconds.
//!
//! One test binary, one module per area:
//!
//! ```sh
//! cargo test -p state --test pure             # all of them
//! cargo test -p state --test pure lock::      # one module
//! cargo test --workspace --test pure          # the pure tier of every crate
//! ```

mod file;
mod lock;
