//! The engine's tests, of the pure tier (docs/testing.md): the mesh file
//! (engine/tests/invalid/, the examples, docs/mesh.schema.json), the
//! planner and its verbs against recorded states; no cluster, no simulator.
//! Seconds.
//!
//! One test binary, one module per area:
//!
//! ```sh
//! cargo test -p engine --test pure            # all of them
//! cargo test -p engine --test pure config::   # one module
//! cargo test --workspace --test pure          # the pure tier of every crate
//! ```

mod config;
mod planner;
mod verbs;
