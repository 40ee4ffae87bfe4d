//! Golden files (tests/golden/): the one helper both the pure and the
//! simulator tier use. Each of those binaries declares it from its
//! `main.rs` as `#[path = "../support/golden.rs"] mod golden;`.

use std::path::Path;

/// Compares `actual` with tests/golden/NAME; `MESH_UPDATE_GOLDEN=1` writes it.
pub fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("MESH_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "no golden file {}: run with MESH_UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {} (MESH_UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}
