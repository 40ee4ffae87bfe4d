//! The plans crate's tests, of the pure tier (docs/testing.md): the plan
//! formats, saved plans and how each verb's plan shows; no cluster, no
//! simulator. Seconds.
//!
//! One test binary, one module per area:
//!
//! ```sh
//! cargo test -p plans --test pure             # all of them
//! cargo test -p plans --test pure formats::   # one module
//! cargo test --workspace --test pure          # the pure tier of every crate
//! ```

mod formats;
mod verbs;
