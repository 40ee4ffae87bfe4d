//! The three plan formats (docs/plan-json.md for JSON): text for a terminal,
//! Markdown for a pull-request comment, JSON for scripts. All deterministic:
//! no times, no absolute paths, the plan's own order.

use crate::model::{Action, Change, Command, Plan, PolicyReport, PolicyResult};
use std::fmt::Write as _;

/// GitHub refuses comments over 65,536 characters; keep a margin.
pub const MARKDOWN_LIMIT: usize = 65_000;

#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// ANSI colours (the CLI decides: a terminal, and no NO_COLOR).
    pub color: bool,
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Delete => "-",
        Action::NoOp => " ",
    }
}

fn changed(plan: &Plan) -> impl Iterator<Item = &Change> {
    plan.changes.iter().filter(|c| c.action != Action::NoOp)
}

/// The lines that show a change: the whole new input for a create, the
/// whole old one for a delete, the unified diff for an update.
pub fn body(change: &Change) -> String {
    let prefixed =
        |text: &str, p: char| -> String { text.lines().map(|l| format!("{p}{l}\n")).collect() };
    match change.action {
        Action::Create => prefixed(change.after.as_deref().unwrap_or_default(), '+'),
        Action::Delete => prefixed(change.before.as_deref().unwrap_or_default(), '-'),
        Action::Update => {
            // Hunks only: the ---/+++ headers repeat the step ID.
            let diff = change.diff.as_deref().unwrap_or_default();
            diff.lines()
                .skip_while(|l| l.starts_with("---") || l.starts_with("+++"))
                .map(|l| format!("{l}\n"))
                .collect()
        }
        Action::NoOp => String::new(),
    }
}

/// The summary line of the contract.
pub fn summary_line(plan: &Plan) -> String {
    let s = plan.summary;
    if s.has_changes() {
        format!(
            "Plan: {} to create, {} to update, {} to delete.",
            s.create, s.update, s.delete
        )
    } else {
        "No changes.".to_string()
    }
}

pub fn text(plan: &Plan, opts: &TextOptions) -> String {
    if plan.refresh_only {
        return refresh_only_text(plan, opts);
    }
    let paint = |code: &str, s: &str| {
        if opts.color {
            format!("{code}{s}{RESET}")
        } else {
            s.to_string()
        }
    };
    let mut out = warnings_text(plan, opts);
    if plan.summary.has_changes() {
        let _ = writeln!(out, "mesh `{}`: steps in the order they run\n", plan.mesh);
    }
    for c in changed(plan) {
        let color = match c.action {
            Action::Create => GREEN,
            Action::Update => YELLOW,
            _ => RED,
        };
        let head = format!("{} {} ({})", symbol(c.action), c.step, c.action.as_str());
        let _ = writeln!(out, "{}", paint(&format!("{BOLD}{color}"), &head));
        if let Some(r) = &c.reason {
            let _ = writeln!(out, "    reason: {}", printable(r));
        }
        for line in body(c).lines() {
            let painted = match line.chars().next() {
                Some('+') => paint(GREEN, line),
                Some('-') => paint(RED, line),
                Some('@') => paint(CYAN, line),
                _ => line.to_string(),
            };
            let _ = writeln!(out, "    {painted}");
        }
        out.push('\n');
    }
    text_review(plan, &mut out, &paint);
    let summary = summary_line(plan);
    if plan.summary.has_changes() {
        let _ = writeln!(out, "{}", paint(BOLD, &summary));
    } else {
        let _ = writeln!(
            out,
            "{} The clusters match the mesh file ({} steps unchanged).",
            paint(BOLD, &summary),
            plan.summary.unchanged
        );
    }
    out
}

/// The text form of what a reviewer needs beside the steps: what the
/// change refuses, removes and means, and the policy.
fn text_review(plan: &Plan, out: &mut String, paint: &dyn Fn(&str, &str) -> String) {
    if !plan.refused.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            paint(
                &format!("{BOLD}{RED}"),
                "Refused: `mesh plan` will not make this change:"
            )
        );
        for r in &plan.refused {
            let _ = writeln!(out, "  - {}", printable(r));
        }
        out.push('\n');
    }
    if !plan.removals.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            paint(&format!("{BOLD}{RED}"), "This plan removes:")
        );
        for r in &plan.removals {
            let _ = writeln!(out, "  - {}: {}", r.step, printable(&r.removes));
        }
        out.push('\n');
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "{}", paint(BOLD, "What changes:"));
        for n in &plan.notes {
            let _ = writeln!(out, "  - {}", printable(n));
        }
        out.push('\n');
    }
    let p = &plan.policy;
    if p.has_rules() || !p.allowed.is_empty() {
        let head = format!("Policy: {}", policy_headline(p, false));
        let color = match p.result {
            PolicyResult::Violated => format!("{BOLD}{RED}"),
            PolicyResult::Overridden => format!("{BOLD}{YELLOW}"),
            PolicyResult::Passed => BOLD.to_string(),
        };
        let _ = writeln!(out, "{}", paint(&color, &head));
        for v in &p.violations {
            let _ = writeln!(out, "  - {}", printable(&violation_line(v, false)));
        }
        out.push('\n');
    }
}

/// `passed (deny_delete [...], ...)`, `violated`, `overridden by --allow …`.
fn policy_headline(p: &PolicyReport, markdown: bool) -> String {
    let rules: Vec<String> = p
        .rules()
        .into_iter()
        .map(|r| if markdown { format!("`{r}`") } else { r })
        .collect();
    let rules = if rules.is_empty() {
        "no rules".to_string()
    } else {
        rules.join(", ")
    };
    /// `--allow a --allow b`.
    fn flags<S: AsRef<str>>(rules: &[S]) -> String {
        rules
            .iter()
            .map(|r| format!("--allow {}", r.as_ref()))
            .collect::<Vec<_>>()
            .join(" ")
    }
    match p.result {
        PolicyResult::Passed if p.allowed.is_empty() => format!("passed ({rules})"),
        PolicyResult::Passed => format!("passed ({rules}); {} not needed", flags(&p.allowed)),
        PolicyResult::Overridden => format!("overridden by {} ({rules})", flags(&p.allowed)),
        PolicyResult::Violated => format!(
            "violated ({rules}); `mesh plan` and `mesh apply` refuse it without {}",
            flags(&p.refused_rules())
        ),
    }
}

/// One violation: `deny_delete: cluster1/install-control-plane: …`, with
/// code spans in Markdown.
fn violation_line(v: &crate::model::Violation, markdown: bool) -> String {
    let allowed = if v.allowed { " (allowed)" } else { "" };
    let code = |s: &str| {
        if markdown {
            format!("`{}`", cell(s))
        } else {
            s.to_string()
        }
    };
    let message = if markdown {
        inline(&v.message)
    } else {
        v.message.clone()
    };
    match &v.step {
        Some(step) => format!("{}: {}: {message}{allowed}", code(&v.rule), code(step)),
        None => format!("{}: {message}{allowed}", code(&v.rule)),
    }
}

pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("a plan serialises") + "\n"
}

pub fn markdown(plan: &Plan) -> String {
    markdown_with_limit(plan, MARKDOWN_LIMIT)
}

/// At most this many lines per list of the review (removals, notes,
/// violations), so that a mesh of a thousand clusters still leaves room
/// for the table; the JSON form has them all.
const LIST_LIMIT: usize = 40;

/// `items` as Markdown list lines under `prefix` (`> ` in an alert), at
/// most [`LIST_LIMIT`], then a line saying how many more there are.
fn list(out: &mut String, prefix: &str, items: &[String]) {
    for item in items.iter().take(LIST_LIMIT) {
        let _ = writeln!(out, "{prefix}- {item}");
    }
    if items.len() > LIST_LIMIT {
        let _ = writeln!(
            out,
            "{prefix}- … and {} more (`--format json` lists them all)",
            items.len() - LIST_LIMIT
        );
    }
}

/// What a reviewer reads before the steps: a refusal (CAUTION), the
/// policy's violations (CAUTION) or overrides (IMPORTANT), the removals
/// (WARNING), the plain-language notes and the policy's result.
fn markdown_review(plan: &Plan, out: &mut String) {
    if !plan.refused.is_empty() {
        out.push_str("> [!CAUTION]\n> **`mesh plan` refuses this change.**\n");
        let items: Vec<String> = plan.refused.iter().map(|r| inline(r)).collect();
        list(out, "> ", &items);
        out.push('\n');
    }
    let p = &plan.policy;
    let by = |rules: &[&str]| {
        rules
            .iter()
            .map(|r| format!("`--allow {r}`"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    match p.result {
        PolicyResult::Violated => {
            let _ = writeln!(
                out,
                "> [!CAUTION]\n> **Policy violated: `mesh plan` and `mesh apply` refuse this plan.**"
            );
            let items: Vec<String> = p
                .violations
                .iter()
                .map(|v| violation_line(v, true))
                .collect();
            list(out, "> ", &items);
            let rules = p.refused_rules();
            let _ = writeln!(
                out,
                ">\n> Change the mesh file, or, once reviewed, plan with {} (the plan records it).\n",
                by(&rules)
            );
        }
        PolicyResult::Overridden => {
            let allowed: Vec<&str> = p.allowed.iter().map(String::as_str).collect();
            let _ = writeln!(
                out,
                "> [!IMPORTANT]\n> **Policy overridden by {}.**",
                by(&allowed)
            );
            let items: Vec<String> = p
                .violations
                .iter()
                .map(|v| violation_line(v, true))
                .collect();
            list(out, "> ", &items);
            out.push('\n');
        }
        PolicyResult::Passed => {}
    }
    if !plan.removals.is_empty() {
        let n = plan.removals.len();
        let _ = writeln!(
            out,
            "> [!WARNING]\n> **{} removes {n} step{}:**",
            match plan.command {
                Command::Plan => "This plan",
                Command::Diff => "This change",
            },
            if n == 1 { "" } else { "s" }
        );
        let items: Vec<String> = plan
            .removals
            .iter()
            .map(|r| format!("`{}`: {}", cell(&r.step), inline(&r.removes)))
            .collect();
        list(out, "> ", &items);
        out.push('\n');
    }
    if !plan.notes.is_empty() {
        out.push_str("**What changes**\n\n");
        let items: Vec<String> = plan.notes.iter().map(|n| inline(n)).collect();
        list(out, "", &items);
        out.push('\n');
    }
    if p.result == PolicyResult::Passed && (p.has_rules() || !p.allowed.is_empty()) {
        let _ = writeln!(out, "**Policy:** {}\n", policy_headline(p, true));
    }
}

/// Text inside a Markdown paragraph or list item: one line. (What goes
/// there is mesh's own wording around names the mesh file validated.)
fn inline(s: &str) -> String {
    printable(s)
}

/// A table cell: no line breaks, `|` and backticks escaped.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('`', "\\`")
        .replace(['\n', '\r'], " ")
}

/// A fence longer than any run of backticks in `body`.
fn fence(body: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for ch in body.chars() {
        if ch == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// `body` cut to at most `budget` characters at a line boundary, with a
/// closing line saying how many lines were cut.
fn shorten(body: &str, budget: usize) -> (String, usize) {
    if body.len() <= budget {
        return (body.to_string(), 0);
    }
    let total = body.lines().count();
    let mut kept = String::new();
    let mut n = 0;
    for line in body.lines() {
        // Leave room for the note line.
        if kept.len() + line.len() + 1 + 60 > budget {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
        n += 1;
    }
    let cut = total - n;
    let _ = writeln!(
        kept,
        "@@ … {cut} more lines not shown (comment size limit) …"
    );
    (kept, cut)
}

/// How many characters each body may keep so that the sum fits `budget`:
/// small bodies keep everything, large ones share the rest equally
/// ("water filling"), so the output is deterministic.
fn allowances(sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| (sizes[i], i));
    let mut out = vec![0; sizes.len()];
    let mut left = budget;
    for (k, &i) in order.iter().enumerate() {
        let share = left / (sizes.len() - k);
        let take = sizes[i].min(share);
        out[i] = take;
        left -= take;
    }
    out
}

pub fn markdown_with_limit(plan: &Plan, limit: usize) -> String {
    if plan.refresh_only {
        return refresh_only_markdown(plan, limit);
    }
    let title = match plan.command {
        Command::Plan => "mesh plan",
        Command::Diff => "mesh diff",
    };
    let mut head = format!("### {title}: `{}`\n\n", cell(&plan.mesh));
    head.push_str(&warnings_markdown(plan));
    let s = plan.summary;
    if !s.has_changes() {
        let _ = writeln!(
            head,
            "**No changes.** {} ({} steps unchanged).\n",
            match plan.command {
                Command::Plan => "The clusters match the mesh file",
                Command::Diff => "Both versions of the mesh file make the same steps",
            },
            s.unchanged
        );
        markdown_review(plan, &mut head);
        return head.trim_end().to_string() + "\n";
    }
    // The labels a reviewer scans first, then the words.
    let _ = writeln!(
        head,
        "**`+{}` `~{}` `-{}`** · {} to create, {} to update, {} to delete · {} unchanged\n",
        s.create, s.update, s.delete, s.create, s.update, s.delete, s.unchanged
    );
    markdown_review(plan, &mut head);

    let rows: Vec<String> = changed(plan)
        .map(|c| {
            format!(
                "| {} | `{}` | {} | {} | {} |\n",
                c.action.as_str(),
                c.step,
                cell(&c.kind),
                cell(&c.location()),
                cell(&printable(c.reason.as_deref().unwrap_or("")))
            )
        })
        .collect();
    let table_head = "| action | step | kind | cluster | reason |\n|---|---|---|---|---|\n";
    // An update of drift alone changes no input: say so rather than show
    // an empty diff.
    let bodies: Vec<String> = changed(plan)
        .map(|c| match body(c) {
            b if b.is_empty() => {
                " (the input is unchanged: apply repairs what the reason says)\n".to_string()
            }
            b => b,
        })
        .collect();
    let wrappers: Vec<(String, String)> = changed(plan)
        .zip(&bodies)
        .map(|(c, b)| {
            let f = fence(b);
            (
                format!(
                    "<details><summary><code>{}</code> ({})</summary>\n\n{f}diff\n",
                    c.step,
                    c.action.as_str()
                ),
                format!("{f}\n\n</details>\n\n"),
            )
        })
        .collect();

    let note_room = 400;
    let fixed: usize = head.len()
        + table_head.len()
        + rows.iter().map(String::len).sum::<usize>()
        + 1
        + wrappers
            .iter()
            .map(|(a, b)| a.len() + b.len())
            .sum::<usize>();
    let full: usize = fixed + bodies.iter().map(String::len).sum::<usize>();

    let mut out = head.clone();
    if full <= limit {
        push_changes(&mut out, table_head, &rows, &wrappers, &bodies);
        return out;
    }

    // Every shortened diff carries a note line of ~70 characters.
    if fixed + note_room + bodies.len() * 70 > limit {
        // Too many steps even without diffs: list as many rows as fit.
        rows_that_fit(&mut out, table_head, &rows, limit.saturating_sub(note_room));
        return out;
    }

    let (shortened, cut_total) = shortened(&bodies, limit - fixed - note_room);
    let _ = writeln!(
        out,
        "_Some diffs were shortened to keep this comment under GitHub's size limit \
         ({cut_total} lines not shown). `mesh plan --format text` or `--format json` shows them all._\n"
    );
    push_changes(&mut out, table_head, &rows, &wrappers, &shortened);
    out
}

/// The table of changes, then each diff in its wrapper.
fn push_changes(
    out: &mut String,
    table_head: &str,
    rows: &[String],
    wrappers: &[(String, String)],
    bodies: &[String],
) {
    out.push_str(table_head);
    rows.iter().for_each(|r| out.push_str(r));
    out.push('\n');
    for ((open, close), b) in wrappers.iter().zip(bodies) {
        out.push_str(open);
        out.push_str(b);
        out.push_str(close);
    }
}

/// As many rows of the table as keep `out` within `limit`, and a note of
/// how many are not shown (nor any diff).
fn rows_that_fit(out: &mut String, table_head: &str, rows: &[String], limit: usize) {
    out.push_str(table_head);
    let mut shown = 0;
    for r in rows {
        if out.len() + r.len() > limit {
            break;
        }
        out.push_str(r);
        shown += 1;
    }
    let _ = write!(
        out,
        "\n_{} more changed steps and every diff are not shown: the comment would exceed \
         GitHub's size limit. `mesh plan --format text` or `--format json` shows the full plan._\n",
        rows.len() - shown
    );
}

/// The diffs shortened to fit `budget` bytes together, and how many lines
/// were cut.
fn shortened(bodies: &[String], budget: usize) -> (Vec<String>, usize) {
    let sizes: Vec<usize> = bodies.iter().map(String::len).collect();
    let allow = allowances(&sizes, budget);
    let mut cut_total = 0;
    let mut shortened = Vec::with_capacity(bodies.len());
    for (b, a) in bodies.iter().zip(allow) {
        let (s, cut) = shorten(b, a);
        cut_total += cut;
        shortened.push(s);
    }
    (shortened, cut_total)
}

/// The plan's warnings (targeting in effect), each a paragraph, before
/// anything else: a reader must see them before trusting the plan.
fn warnings_text(plan: &Plan, opts: &TextOptions) -> String {
    let mut out = String::new();
    for w in &plan.warnings {
        let label = if opts.color {
            format!("{BOLD}{YELLOW}Warning:{RESET}")
        } else {
            "Warning:".to_string()
        };
        let _ = writeln!(out, "{label} {}\n", printable(w));
    }
    out
}

fn warnings_markdown(plan: &Plan) -> String {
    plan.warnings
        .iter()
        .map(|w| format!("> **Warning:** {}\n\n", printable(w)))
        .collect()
}

/// The summary line of a `--refresh-only` plan.
pub fn refresh_only_summary(plan: &Plan) -> String {
    let n = plan.drift.as_ref().map_or(0, Vec::len);
    if n == 0 {
        format!(
            "No changes. The state matches the clusters ({} recorded steps read).",
            plan.summary.unchanged
        )
    } else {
        format!(
            "Refresh-only plan: {n} step{} to record in the state; nothing in any cluster changes.",
            if n == 1 { "" } else { "s" }
        )
    }
}

/// A `--refresh-only` plan: what the clusters are now, step by step, and
/// what `mesh apply --refresh-only` would record; no cluster change.
fn refresh_only_text(plan: &Plan, opts: &TextOptions) -> String {
    let paint = |code: &str, s: &str| {
        if opts.color {
            format!("{code}{s}{RESET}")
        } else {
            s.to_string()
        }
    };
    let mut out = warnings_text(plan, opts);
    let drift = plan.drift.as_deref().unwrap_or_default();
    if !drift.is_empty() {
        let _ = writeln!(
            out,
            "mesh `{}`: the clusters changed outside mesh. This is a refresh-only plan: applying it \
             (`mesh apply --refresh-only`) records what follows in the state and changes nothing in \
             any cluster.\n",
            plan.mesh
        );
    }
    for d in drift {
        let head = format!("~ {} (record)", d.step);
        let _ = writeln!(out, "{}", paint(&format!("{BOLD}{YELLOW}"), &head));
        for f in &d.found {
            let _ = writeln!(out, "    found: {}", printable(f));
        }
        let _ = writeln!(out, "    {}\n", printable(&d.would_record()));
    }
    let _ = writeln!(out, "{}", paint(BOLD, &refresh_only_summary(plan)));
    out
}

fn refresh_only_markdown(plan: &Plan, limit: usize) -> String {
    let mut out = format!("### mesh plan: `{}` (refresh only)\n\n", cell(&plan.mesh));
    out.push_str(&warnings_markdown(plan));
    let drift = plan.drift.as_deref().unwrap_or_default();
    let _ = writeln!(out, "**{}**\n", refresh_only_summary(plan));
    if drift.is_empty() {
        return out;
    }
    out.push_str("| step | kind | cluster | found | would record |\n|---|---|---|---|---|\n");
    let note_room = 300;
    for (i, d) in drift.iter().enumerate() {
        let row = format!(
            "| `{}` | {} | {} | {} | {} |\n",
            d.step,
            cell(&d.kind),
            cell(&d.cluster),
            cell(&printable(&d.found.join("; "))),
            cell(&printable(
                d.would_record().trim_start_matches("would record: ")
            ))
        );
        if out.len() + row.len() + note_room > limit {
            let _ = write!(
                out,
                "\n_{} more steps are not shown: the comment would exceed GitHub's size limit. \
                 `mesh plan --refresh-only --format text` or `--format json` shows them all._\n",
                drift.len() - i
            );
            return out;
        }
        out.push_str(&row);
    }
    out
}

/// A reason made safe for a terminal or a comment: reasons quote what a
/// cluster reported, so control characters (ESC sequences, newlines) are
/// escaped rather than printed.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_debug().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowances_fill_small_first_and_share_the_rest() {
        assert_eq!(allowances(&[10, 1000, 1000], 310), vec![10, 150, 150]);
        assert_eq!(allowances(&[10, 20], 100), vec![10, 20]);
        assert_eq!(allowances(&[], 100), Vec::<usize>::new());
    }

    #[test]
    fn fences_outgrow_backticks_in_the_body() {
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("a ```` b"), "`````");
    }

    #[test]
    fn cells_cannot_break_the_table() {
        assert_eq!(cell("a|b`c\nd"), "a\\|b\\`c d");
    }
}
