//! The engine: mesh file → model → step graph → plan → execution.
//!
//! - [`config`]: the mesh.toml model, parsing and validation (pure).
//! - [`topology`]: compiles a validated mesh into a [`graph::StepGraph`]; the
//!   one module that knows which step kinds a primary and a remote need.
//! - [`graph`]: the step DAG (petgraph): order, dependencies, DOT.
//! - [`planner`]: graph + recorded state (+ refresh observations) → plan (pure).
//! - [`executor`]: runs a plan's tasks on tokio in dependency order, in parallel.
//!
//! Nothing here does IO but [`config::load`] reading the mesh file; the
//! executor runs futures that providers supply.

pub mod config;
pub mod executor;
pub mod graph;
pub mod planner;
pub mod topology;
