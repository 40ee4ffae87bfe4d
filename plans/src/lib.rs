//! Plans: what `mesh plan` decided, and how it is shown.
//!
//! A [`Plan`] is plain data made by the engine's planner. This crate renders
//! it as text (terminal), Markdown (pull-request comment) and JSON (scripts),
//! and reads and writes saved plans. It does no cluster IO and knows nothing
//! of Istio: a plan is steps, actions and texts.

pub mod diff;
pub mod model;
pub mod render;
pub mod saved;

pub use model::{
    Action, Change, Command, Drift, FORMAT_VERSION, Plan, PolicyReport, PolicyResult, Removal,
    Summary, Violation,
};
pub use saved::{SavedPlan, SavedPlanError};
