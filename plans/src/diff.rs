//! Unified diffs of rendered inputs, made with `similar`.

use similar::TextDiff;

/// A unified diff of `before` → `after` with three lines of context, headed
/// `--- <step> (recorded)` / `+++ <step> (planned)`. Empty when equal.
pub fn unified(before: &str, after: &str, step: &str) -> String {
    if before == after {
        return String::new();
    }
    TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .missing_newline_hint(false)
        .header(&format!("{step} (recorded)"), &format!("{step} (planned)"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn headers_and_hunks() {
        let d = unified("a\nb\nc\n", "a\nB\nc\n", "c1/x");
        assert!(
            d.starts_with("--- c1/x (recorded)\n+++ c1/x (planned)\n@@"),
            "{d}"
        );
        assert!(d.contains("-b\n+B\n"));
        assert_eq!(unified("same\n", "same\n", "s"), "");
        let created = unified("", "new\n", "s");
        assert!(created.contains("+new"));
    }
}
