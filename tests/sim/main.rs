//! The simulator tier: the `mesh` binary against kubesim, the project's
//! Kubernetes API *simulator* (tests/kubesim), and its simulated istioctl.
//! Most tests serve the simulated clusters themselves (`support::World`,
//! as `kubesim serve` would), so they can inject faults and look at every
//! object; some let mesh serve them (`--sandbox`). Apply, refresh,
//! destroy, drift, faults, `kill -9`, locks, every hardening regression,
//! day two (upgrades, link tokens, the root's rotation), ambient.
//!
//! Cost: seconds per test (the soaks more with `MESH_SOAK_ROUNDS`), no
//! tools beyond cargo's build of `mesh`. kubesim was written with mesh, so
//! it can agree with mesh where Kubernetes would not: the real tier
//! (tests/real/main.rs) keeps it honest.
//!
//! One test binary, one module per area (docs/testing.md lists them):
//!
//! ```sh
//! cargo test -p mesh --test sim              # the whole binary
//! cargo test -p mesh --test sim e2e::        # one module
//! cargo test -p mesh --test sim e2e::kill_9  # the tests whose path contains this
//! MESH_UPDATE_GOLDEN=1 cargo test -p mesh --test sim   # rewrite its goldens
//! ```
//!
//! Without `-p mesh`, `cargo test --test sim` also runs kubesim's own
//! tests (tests/kubesim/tests/sim/, the same tier).

#[path = "../support/golden.rs"]
mod golden;
mod support;

mod ambient;
mod check;
mod credentials;
mod drift;
mod e2e;
mod examples;
mod hardening;
mod hardening_ii;
mod hardening_iii;
mod identity;
mod import;
mod ownership;
mod pipelines;
mod preflight;
mod readme;
mod root_rotation;
mod team;
mod topologies;
mod upgrades;
mod verbs;
