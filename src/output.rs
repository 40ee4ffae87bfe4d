//! Terminal output: colour decisions, plans in the chosen format, and error
//! printing.

use crate::cli::Format;
use std::io::{IsTerminal, Write};

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

    /// Prints a failure to stderr. Mesh-file diagnostics are already
    /// formatted with their locations; everything else gets `error:` and its
    /// chain of causes.
    pub fn error(&self, err: &anyhow::Error) {
        let mut stderr = std::io::stderr().lock();
        if let Some(diags) = err.downcast_ref::<engine::config::Diagnostics>() {
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
    let mut out = format!("{prefix} {said}\n");
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if said.contains(&text) {
            continue;
        }
        out.push_str(&format!("  caused by: {text}\n"));
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

/// Writes to stdout; a closed pipe (`mesh plan | head`) is not an error
/// worth dying for, so write errors are ignored (`println!` would panic).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` without the panic on a closed stdout.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout();
        let _ = write!(o, $($arg)*);
        let _ = o.flush();
    }};
}

/// Writes to stderr, ignoring a closed stderr: an apply must never die
/// half-way because nobody reads its progress (`mesh apply 2>&1 | head`).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `eprint!` without the panic on a closed stderr.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut e = std::io::stderr();
        let _ = write!(e, $($arg)*);
        let _ = e.flush();
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

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
