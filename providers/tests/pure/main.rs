//! The providers crate's tests, of the pure tier (docs/testing.md): the
//! rendered documents against Istio's own (providers/testdata) and the root
//! of trust as users bring it; no cluster, no simulator. Seconds.
//!
//! One test binary, one module per area:
//!
//! ```sh
//! cargo test -p providers --test pure             # all of them
//! cargo test -p providers --test pure render::    # one module
//! cargo test --workspace --test pure              # the pure tier of every crate
//! ```

mod ca;
mod render;
