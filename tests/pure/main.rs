//! The pure tier of the `mesh` package: the `mesh` binary with no cluster,
//! neither simulated nor real (validate, plan from the state alone, diff,
//! graph, show, state, saved plans, the policy, golden plans in
//! tests/golden/); two of its tests start mesh's own `--sandbox`, for what
//! only an apply shows. The crates' own pure tests are in `engine/tests`,
//! `plans/tests`, `state/tests` and `providers/tests`, each a `pure`
//! binary too.
//!
//! Cost: seconds, no tools beyond cargo's build of `mesh`.
//!
//! One test binary, one module per area (docs/testing.md lists them):
//!
//! ```sh
//! cargo test -p mesh --test pure            # this binary
//! cargo test -p mesh --test pure cli::      # one module
//! cargo test --workspace --test pure        # the pure tier of every crate
//! MESH_UPDATE_GOLDEN=1 cargo test -p mesh --test pure   # rewrite its goldens
//! ```

#[path = "../support/golden.rs"]
mod golden;

mod cli;
mod tidy;
