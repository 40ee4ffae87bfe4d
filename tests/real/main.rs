//! The real tier: the `mesh` binary against real Kubernetes control planes
//! (kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok's
//! fake nodes) and the real istioctl and pilot-discovery, all built from
//! pinned Go modules by `tests/realk8s/build.sh`; and kubesim checked
//! against a real API server (`differential`). The harness is
//! tests/realk8s/harness.rs (also used by benches/real_apply.rs).
//!
//! Cost: the tools once (about 13 minutes cold on two cores, cached
//! outside the repository), then a few minutes for the tier
//! (docs/testing.md, "What it costs"). One test at a time: each starts its
//! own control planes, and each runs again inside its own network
//! namespace (`harness::in_private_network`, whose lock serialises every
//! test of this binary, differential's included; the harness is declared
//! here once, so there is one lock). A missing tool fails the test, it is
//! never skipped.
//!
//! One test binary, one module per area (docs/testing.md lists them):
//!
//! ```sh
//! bash tests/realk8s/build.sh                      # once: the tools
//! cargo test --test real                           # the whole tier
//! cargo test --test real differential::            # one module
//! cargo test --test real real_clusters::seed_procedure_on_real_clusters   # one test
//! ```

#[path = "../realk8s/harness.rs"]
mod harness;

mod differential;
mod real_clusters;
