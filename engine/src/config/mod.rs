//! The mesh file (mesh.toml): its model, parsing and validation.

mod model;
pub use model::*;
