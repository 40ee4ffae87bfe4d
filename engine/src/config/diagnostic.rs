//! Diagnostics: what is wrong in a mesh file, where, and what to do.
//!
//! Each one carries its own source line, so rendering needs no file access
//! and the output is the same wherever it is printed.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One mistake in a mesh file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// How many characters to underline on that line (at least 1).
    pub width: usize,
    /// The text of the line, for the snippet.
    pub source_line: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

/// Every mistake found in a file, in the order they appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// All diagnostics, rustc style, optionally with ANSI colour.
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&d.render(color));
        }
        if self.0.len() > 1 {
            let n = self.0.len();
            out.push_str(&format!("{n} errors in {}\n", self.0[0].path.display()));
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostic {
    pub fn render(&self, color: bool) -> String {
        let (red, blue, bold, reset) = if color {
            ("\x1b[1;31m", "\x1b[1;34m", "\x1b[1m", "\x1b[0m")
        } else {
            ("", "", "", "")
        };
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        let mut out = format!("{red}error{reset}{bold}: {}{reset}\n", self.message);
        // Line 0: about the file as a whole (it cannot be read), no place in it.
        if self.line > 0 {
            out.push_str(&format!(
                "{pad}{blue}-->{reset} {}:{}:{}\n",
                self.path.display(),
                self.line,
                self.column
            ));
        }
        if !self.source_line.is_empty() || self.line > 0 {
            let caret_pad = " ".repeat(self.column.saturating_sub(1));
            let carets = "^".repeat(self.width.max(1));
            out.push_str(&format!(
                "{pad} {blue}|{reset}\n{blue}{num} |{reset} {}\n{pad} {blue}|{reset} {caret_pad}{red}{carets}{reset}\n",
                self.source_line
            ));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("{pad} {blue}={reset} {bold}help{reset}: {help}\n"));
        }
        out.push('\n');
        out
    }
}

/// Turns byte spans of one source into line, column and snippet.
pub(crate) struct Locator<'a> {
    path: &'a Path,
    source: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub fn new(path: &'a Path, source: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Locator {
            path,
            source,
            line_starts,
        }
    }

    /// A diagnostic pointing at `span` (byte offsets into the source).
    pub fn at(
        &self,
        span: Range<usize>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        let start = span.start.min(self.source.len());
        let line_ix = self
            .line_starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        let line_start = self.line_starts[line_ix];
        let line_end = self.source[line_start..]
            .find('\n')
            .map_or(self.source.len(), |i| line_start + i);
        // Clamp to char boundaries: spans from the parser are, but be safe.
        let floor = |mut i: usize| {
            while i > 0 && !self.source.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let start = floor(start.max(line_start));
        let end = floor(span.end.min(line_end).max(start));
        let source_line = self.source[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let column = self.source[line_start..start].chars().count() + 1;
        let width = self.source[start..end].chars().count().max(1);
        Diagnostic {
            path: self.path.to_path_buf(),
            line: line_ix + 1,
            column,
            width,
            source_line,
            message: message.into(),
            help,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let src = "a = 1\nbb = \"x\"\n";
        let l = Locator::new(Path::new("m.toml"), src);
        let d = l.at(11..14, "bad", Some("fix it".into()));
        assert_eq!((d.line, d.column, d.width), (2, 6, 3));
        assert_eq!(d.source_line, "bb = \"x\"");
        let text = d.render(false);
        assert_eq!(
            text,
            "error: bad\n --> m.toml:2:6\n  |\n2 | bb = \"x\"\n  |      ^^^\n  = help: fix it\n\n"
        );
        assert!(d.render(true).contains("\x1b["));
        // A span at the very end is still a location.
        let end = l.at(src.len()..src.len(), "eof", None);
        assert_eq!(end.line, 3);
    }
}
