//! kubesim's own tests, of the simulator tier (docs/testing.md): the
//! simulator itself, against kube-rs, the real kubectl and its own
//! simulated istioctl (`kubesim serve` and `kubesim istioctl`, the binaries
//! of this package). They fail, not skip, when kubectl is missing (.ci/run
//! installs it). Seconds.
//!
//! One test binary, one module per area:
//!
//! ```sh
//! cargo test -p kubesim --test sim              # all of them
//! cargo test -p kubesim --test sim kubectl::    # one module
//! ```

mod folders;
mod kube_client;
mod kubectl;
