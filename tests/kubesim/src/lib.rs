//! kubesim: a Kubernetes API *simulator* and a simulated istioctl, for
//! mesh's tests and its `--sandbox`. It is not Kubernetes: it stores
//! objects and serves the REST API well enough that kube-rs and kubectl
//! work against it unchanged, runs the few controllers mesh depends on, and
//! nothing else (no scheduler, no pods running, no admission). README.md
//! says what it models and what it does not.
//!
//! - [`store`]: objects, versions, conflicts, patches, server-side apply.
//! - [`server`]: HTTPS, auth, discovery, REST verbs, watches.
//! - [`cluster`]: one cluster: faults, request log, controllers.
//! - [`set`]: clusters kept in a folder, the kubeconfig, the folder lock.
//! - [`istioctl`]: the simulated istioctl.

pub mod cluster;
pub mod istioctl;
pub mod istiod_log;
pub mod kubeconfig;
pub mod portforward;
pub mod protobuf;
pub mod proxies;
pub mod resources;
pub mod review;
pub mod select;
pub mod server;
pub mod set;
pub mod store;
pub mod table;
pub mod tls;

pub use cluster::{Cluster, Faults, LbMode, RequestRecord};
pub use set::{ClusterSet, Options, Running};
