//! Unified diffs of rendered inputs, made with `similar`.

/// A unified diff of `before` → `after` with three lines of context.
pub fn unified(_before: &str, _after: &str, _step: &str) -> String {
    todo!()
}
