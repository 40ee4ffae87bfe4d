//! Reading the mesh file, the same way for every command that needs it
//! (warnings printed, diagnostics as the error). A module of its own, below
//! the commands, so that sharing it makes no command import another.

use anyhow::{Context, Result};
use engine::config::{self, MeshFile};
use engine::topology::{self, StepGraph};
use std::path::Path;

/// Reads and validates the mesh file; diagnostics are returned as the error.
pub fn load_mesh(path: &Path) -> Result<MeshFile> {
    let mesh = config::load(path)?;
    for w in &mesh.warnings {
        crate::errln!("warning: {w}");
    }
    Ok(mesh)
}

pub fn load_graph(path: &Path) -> Result<(MeshFile, StepGraph)> {
    let mesh = load_mesh(path)?;
    let graph = topology::compile(&mesh)
        .with_context(|| format!("compiling the steps of {}", path.display()))?;
    Ok((mesh, graph))
}

/// The sha256 of the mesh file's bytes, for the saved plan's stale check.
pub fn mesh_file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(providers::sha256_hex(&bytes))
}
