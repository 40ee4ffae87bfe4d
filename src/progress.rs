//! Progress of an apply or destroy: on a terminal a live view of the
//! running steps (indicatif), with what each is waiting for and for how
//! long; elsewhere plain lines, one when a step starts and one when it ends.

use engine::apply::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use plans::Action;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

pub struct View {
    live: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verbose: bool,
}

fn verb(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("creating", "created"),
        Action::Update => ("updating", "updated"),
        Action::Delete => ("destroying", "destroyed"),
        Action::NoOp => ("checking", "checked"),
    }
}

impl View {
    pub fn new(verbose: bool) -> View {
        let live = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        View {
            live,
            bars: Mutex::new(HashMap::new()),
            verbose,
        }
    }

    /// Prints a line above the live view (or plainly).
    fn line(&self, text: &str) {
        match &self.live {
            Some(m) => {
                // What steps say may quote a cluster: escaped like every
                // other line mesh prints.
                let _ = m.println(crate::output::printable(text));
            }
            None => crate::errln!("{text}"),
        }
    }

    /// A step says what it is doing now (e.g. what it waits for).
    pub fn say(&self, step: &str, what: &str) {
        if let Some(bar) = self.bars.lock().expect("bars").get(step) {
            bar.set_message(crate::output::printable(what).into_owned());
        } else if self.verbose {
            self.line(&format!("{step}: {what}"));
        }
    }

    pub fn event(&self, p: Progress<'_>) {
        match p {
            Progress::Started { step, action } => {
                let (doing, _) = verb(action);
                if let Some(m) = &self.live {
                    let bar = m.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix}: {msg} {elapsed}")
                            .expect("valid template"),
                    );
                    bar.set_prefix(step.to_string());
                    bar.set_message(format!("{doing}…"));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bars
                        .lock()
                        .expect("bars")
                        .insert(step.to_string(), bar);
                } else {
                    self.line(&format!("{step}: {doing}…"));
                }
            }
            Progress::Finished {
                step,
                action,
                elapsed,
                log,
            } => {
                self.finish_bar(step);
                let (_, done) = verb(action);
                self.line(&format!("{step}: {done} ({:.1}s)", elapsed.as_secs_f64()));
                if self.verbose && !log.trim().is_empty() {
                    for l in log.lines() {
                        self.line(&format!("  | {l}"));
                    }
                }
            }
            Progress::Failed {
                step,
                action,
                elapsed,
                error,
                ..
            } => {
                self.finish_bar(step);
                let (doing, _) = verb(action);
                self.line(&format!(
                    "{step}: FAILED {doing} after {:.1}s: {error}",
                    elapsed.as_secs_f64()
                ));
            }
            Progress::Aborted { step } => {
                self.finish_bar(step);
                self.line(&format!("{step}: aborted (recorded as tainted)"));
            }
            Progress::StateError { error } => {
                self.line(&format!(
                    "error: the state could not be saved: {error}; stopping"
                ));
            }
        }
    }

    fn finish_bar(&self, step: &str) {
        if let Some(bar) = self.bars.lock().expect("bars").remove(step) {
            bar.finish_and_clear();
        }
    }
}
