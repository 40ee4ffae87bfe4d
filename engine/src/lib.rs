//! The engine: mesh file → model → step graph → plan → execution.
//!
//! - [`config`]: the mesh.toml model, parsing and validation (pure).
//! - [`topology`]: compiles a validated mesh into a [`topology::StepGraph`]; the
//!   one module that knows which step kinds a primary and a remote need.
//! - [`graph`]: the step DAG (petgraph): order, dependencies, DOT.
//! - [`planner`]: graph + recorded state (+ refresh observations) → plan (pure).
//! - [`executor`]: runs tasks on tokio in dependency order, in parallel
//!   (generic: it knows tasks, not steps).
//! - [`policy`]: the mesh file's `[policy]` checked against a plan (pure).
//! - [`review`]: what a plan means, removes and refuses, for reviewers (pure).
//! - [`refresh`] and [`apply`]: the glue that hands steps to `providers`
//!   (read, apply, destroy) and records the outcome in the state.
//!
//! The engine itself does no IO but [`config::load`] reading the mesh file:
//! cluster IO happens in the futures `providers` supply, state IO in the
//! callback the CLI passes to [`apply::apply`]. The graph and the planner
//! do not know Istio: `providers` renders, `topology` decides which steps.

pub mod apply;
pub mod check;
pub mod config;
pub mod executor;
pub mod graph;
pub mod identity;
pub mod import;
pub mod planner;
pub mod policy;
pub mod preflight;
pub mod refresh;
pub mod review;
pub mod topology;
pub mod trust;
pub mod upgrades;
