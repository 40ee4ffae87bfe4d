//! Terminal output: colour decisions, plans in the chosen format, and error
//! printing.
//!
//! Everything printed as a message (errors, `errln!`, `outln!`) passes
//! through [`printable`] first, so a terminal escape carried by a lock
//! file, a Lease, istioctl's output or a mesh file never reaches the
//! terminal raw; mesh's own colour is added after. `out!` is for text
//! rendered already with its values escaped (plans, which the plans crate
//! escapes before colouring; DOT; completion scripts).

use crate::cli::Format;
use engine::config::{Diagnostic, Diagnostics};
use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// Whether `c` is escaped by [`printable`]: a control character other than
/// the newlines and tabs that messages are laid out with.
fn hidden(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `text` safe for a terminal: every control character but newline and tab
/// (ESC, BEL, CR, the C1 CSI…) escaped as `\u{1b}`, `\u{7}`, `\r`, the
/// notation of `providers::rendered::shown`, so nothing read from a cluster
/// or a file can move the cursor, set the title, ring the bell or hide a
/// line. Borrowed when there is nothing to escape.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Diagnostics with every text escaped by [`printable`], before `render`
/// adds its colour. The carets move with their source line, whose escapes
/// are longer than the characters they stand for.
fn printable_diagnostics(diags: &Diagnostics) -> Diagnostics {
    Diagnostics(diags.0.iter().map(printable_diagnostic).collect())
}

fn printable_diagnostic(d: &Diagnostic) -> Diagnostic {
    let mut out = d.clone();
    out.message = printable(&d.message).into_owned();
    out.help = d.help.as_deref().map(|h| printable(h).into_owned());
    if let Cow::Owned(p) = printable(&d.path.to_string_lossy()) {
        out.path = PathBuf::from(p);
    }
    if let Cow::Owned(line) = printable(&d.source_line) {
        let skip = d.column.saturating_sub(1);
        let before: String = d.source_line.chars().take(skip).collect();
        let span: String = d.source_line.chars().skip(skip).take(d.width).collect();
        if d.column > 0 {
            out.column = printable(&before).chars().count() + 1;
        }
        if !span.is_empty() {
            out.width = printable(&span).chars().count();
        }
        out.source_line = line;
    }
    out
}

/// Where and how mesh prints.
pub struct Output {
    /// Colour on stdout: only on a terminal, never with NO_COLOR or --no-color.
    pub color_stdout: bool,
    pub color_stderr: bool,
}

impl Output {
    pub fn new(no_color: bool) -> Output {
        // https://no-color.org: any non-empty value disables colour.
        let env_off = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let allowed = !no_color && !env_off;
        Output {
            color_stdout: allowed && std::io::stdout().is_terminal(),
            color_stderr: allowed && std::io::stderr().is_terminal(),
        }
    }

    /// Prints a failure to stderr, escaped by [`printable`] (an error may
    /// quote a cluster, a lock record, istioctl). Mesh-file diagnostics are
    /// already formatted with their locations; everything else gets `error:`
    /// and its chain of causes. Colour is added after the escaping.
    pub fn error(&self, err: &anyhow::Error) {
        let mut stderr = std::io::stderr().lock();
        if let Some(diags) = err.downcast_ref::<Diagnostics>() {
            let diags = printable_diagnostics(diags);
            let _ = write!(stderr, "{}", diags.render(self.color_stderr));
            return;
        }
        let prefix = if self.color_stderr {
            "\x1b[1;31merror:\x1b[0m"
        } else {
            "error:"
        };
        let _ = write!(stderr, "{}", with_causes(prefix, err));
    }
}

/// `prefix message`, then each cause of the chain whose text the lines
/// before do not already contain (many errors repeat their source in their
/// own message, and a cause said twice reads as two problems).
fn with_causes(prefix: &str, err: &anyhow::Error) -> String {
    let mut said = err.to_string();
    let mut out = format!("{prefix} {}\n", printable(&said));
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        out.push_str(&format!("  caused by: {}\n", printable(&text)));
        said.push('\n');
        said.push_str(&text);
    }
    out
}

/// A plan as `--format` asks; colour only where stdout takes it.
pub fn render_plan(plan: &plans::Plan, format: Format, out: &Output) -> String {
    match format {
        Format::Text => plans::render::text(
            plan,
            &plans::render::TextOptions {
                color: out.color_stdout,
            },
        ),
        Format::Markdown => plans::render::markdown(plan),
        Format::Json => plans::render::json(plan),
    }
}

/// Writes a line to stdout, escaped by [`printable`] (it may show what a
/// state file holds); a closed pipe (`mesh plan | head`) is not an error
/// worth dying for, so write errors are ignored (`println!` would panic).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stdout(),
            "{}",
            $crate::output::printable(&format!($($arg)*))
        );
    }};
}

/// `print!` without the panic on a closed stdout, and without escaping:
/// for text whose values are escaped already and which may carry mesh's
/// own colour (a rendered plan).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout();
        let _ = write!(o, $($arg)*);
        let _ = o.flush();
    }};
}

/// Writes a line to stderr, escaped by [`printable`] (progress lines and
/// summaries quote step errors, which quote clusters and istioctl),
/// ignoring a closed stderr: an apply must never die half-way because
/// nobody reads its progress (`mesh apply 2>&1 | head`).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "{}",
            $crate::output::printable(&format!($($arg)*))
        );
    }};
}

/// `eprint!` without the panic on a closed stderr, escaped as `errln!`.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut e = std::io::stderr();
        let _ = write!(e, "{}", $crate::output::printable(&format!($($arg)*)));
        let _ = e.flush();
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_but_keeps_the_layout() {
        assert!(matches!(printable("plain\n\tline"), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\u{1b}]0;t\u{7}\u{1b}[2J\r\n\tb\u{9b}"),
            "a\\u{1b}]0;t\\u{7}\\u{1b}[2J\\r\n\tb\\u{9b}"
        );
    }

    #[test]
    fn diagnostics_are_escaped_before_colour_and_carets_follow() {
        let d = Diagnostic {
            path: PathBuf::from("m\u{1b}.toml"),
            line: 2,
            column: 4,
            width: 2,
            source_line: "# \u{1b}xy".into(),
            message: "bad \u{7}".into(),
            help: Some("fix \u{1b}[2J".into()),
        };
        let shown = printable_diagnostics(&Diagnostics(vec![d]));
        let plain = shown.render(false);
        assert!(!plain.contains(['\u{1b}', '\u{7}']), "{plain:?}");
        assert!(plain.contains("2 | # \\u{1b}xy\n"), "{plain}");
        // `xy` starts after the six characters of `\u{1b}`.
        assert!(plain.contains("  |         ^^\n"), "{plain}");
        assert!(plain.contains("m\\u{1b}.toml:2:9"), "{plain}");
        // Colour codes are mesh's own, added after: the only ESCs left.
        let coloured = shown.render(true);
        assert!(coloured.contains("\u{1b}[1;31merror"), "{coloured:?}");
        assert!(!coloured.contains("\u{1b}xy") && !coloured.contains("\u{7}"));
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io)
            .context("reading /x: no such file")
            .context("loading the state");
        assert_eq!(
            with_causes("error:", &err),
            "error: loading the state\n  caused by: reading /x: no such file\n"
        );
    }
}
