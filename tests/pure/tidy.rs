//! The invariants of ARCHITECTURE.md marked (tidy), enforced by reading
//! the sources, as rust-analyzer's tidy tests do: each failure names the
//! file and line that breaks a rule, and the rule. Reading text, not types:
//! each detector has a test of its own that it catches what it should.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file below `dir` (relative to the repository), sorted.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join(dir), &mut out);
    assert!(
        !out.is_empty(),
        "no Rust files under {dir}: has the tree moved?"
    );
    out.sort();
    out
}

fn relative(p: &Path) -> String {
    p.strip_prefix(repo())
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The code of a source file, line by line: a line's `//` comment cut off
/// (doc comments included), and nothing from the first `#[cfg(test)]`
/// on (a file's unit tests come last).
fn code_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        out.push((i + 1, strip_comment(line)));
    }
    out
}

/// `line` without its `//` comment (one outside a string literal).
fn strip_comment(line: &str) -> String {
    let quote_char = line.replace("'\"'", "'_'");
    let line = quote_char.as_str();
    let mut in_str = false;
    let mut prev = ' ';
    let chars: Vec<char> = line.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c == '"' && prev != '\\' {
            in_str = !in_str;
        }
        if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
            return chars[..i].iter().collect();
        }
        prev = c;
    }
    line.to_string()
}

/// The lines of `text` that name any of `needles`, as `file:line: text`.
fn mentions(file: &str, text: &str, needles: &[&str]) -> Vec<String> {
    code_lines(text)
        .into_iter()
        .filter(|(_, l)| needles.iter().any(|n| l.contains(n)))
        .map(|(n, l)| format!("{file}:{n}: {}", l.trim()))
        .collect()
}

/// Functions longer than `limit` lines (outside a file's tests), as
/// `file:line: fn name (N lines)`. Counts braces outside strings and
/// comments, from the line that declares the function.
fn long_functions(file: &str, text: &str, limit: usize) -> Vec<String> {
    let lines = code_lines(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (number, line) = &lines[i];
        let Some(name) = fn_name(line) else {
            i += 1;
            continue;
        };
        let (mut depth, mut started, mut j) = (0i64, false, i);
        while j < lines.len() {
            for c in without_literals(&lines[j].1).chars() {
                match c {
                    '{' => {
                        depth += 1;
                        started = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (started && depth <= 0) || (!started && lines[j].1.trim_end().ends_with(';')) {
                break;
            }
            j += 1;
        }
        let length = j - i + 1;
        if started && length > limit {
            out.push(format!("{file}:{number}: fn {name} ({length} lines)"));
        }
        i = if started { j + 1 } else { i + 1 };
    }
    out
}

/// The name of the function a line declares, if it does.
fn fn_name(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "fn")?;
    let before_ok = words[..at].iter().all(|w| {
        w.starts_with("pub") || matches!(*w, "async" | "const" | "unsafe" | "extern" | "\"C\"")
    });
    if !before_ok {
        return None;
    }
    let name: String = words
        .get(at + 1)?
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// A line with its string and char literals emptied, so braces in them
/// do not count.
fn without_literals(line: &str) -> String {
    let line = line.replace("'\\''", "''").replace("'\"'", "''");
    let mut out = String::new();
    let mut in_str = false;
    let mut prev = ' ';
    for c in line.chars() {
        if c == '"' && prev != '\\' {
            in_str = !in_str;
            out.push(c);
        } else if !in_str {
            out.push(c);
        }
        prev = if prev == '\\' && c == '\\' { ' ' } else { c };
    }
    out.replace("'{'", "''").replace("'}'", "''")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn assert_none(rule: &str, found: Vec<String>) {
    assert!(
        found.is_empty(),
        "{rule}:\n  {}\n(see ARCHITECTURE.md, Invariants)",
        found.join("\n  ")
    );
}

#[test]
fn kinds_and_checks_never_import_each_other() {
    let mut found = Vec::new();
    for f in rust_files("providers/src/kinds") {
        found.extend(mentions(
            &relative(&f),
            &read(&f),
            &["crate::check", "super::check"],
        ));
    }
    for f in rust_files("providers/src/check") {
        found.extend(mentions(
            &relative(&f),
            &read(&f),
            &["crate::kinds", "super::kinds"],
        ));
    }
    assert_none(
        "kinds/ and check/ import each other (move what both need below them: istio, ca, k8s, remote_secret)",
        found,
    );
}

/// What doing IO looks like in Rust source.
const IO: &[&str] = &[
    "std::fs",
    "tokio::fs",
    "std::net",
    "tokio::net",
    "std::process",
    "tokio::process",
    "kube::",
    "k8s_openapi",
    "hyper",
    "read_regular_file",
];

#[test]
fn the_engine_does_no_io() {
    let mut found = Vec::new();
    for f in rust_files("engine/src") {
        let rel = relative(&f);
        if rel == "engine/src/config/load.rs" {
            continue;
        }
        found.extend(mentions(&rel, &read(&f), IO));
    }
    assert_none(
        "the engine does IO (clusters through the providers' verbs; files only in engine/src/config/load.rs)",
        found,
    );
}

/// The production code: every crate's `src`, the simulator aside (it
/// lives with the tests).
const PRODUCTION: &[&str] = &[
    "src",
    "engine/src",
    "providers/src",
    "plans/src",
    "state/src",
];

#[test]
fn no_function_outside_tests_is_over_120_lines() {
    let mut found = Vec::new();
    for dir in PRODUCTION {
        for f in rust_files(dir) {
            found.extend(long_functions(&relative(&f), &read(&f), 120));
        }
    }
    assert_none(
        "functions over 120 lines (split them by the decisions they make)",
        found,
    );
}

#[test]
fn no_too_many_arguments_allowance() {
    let mut found = Vec::new();
    for dir in PRODUCTION {
        for f in rust_files(dir) {
            found.extend(mentions(&relative(&f), &read(&f), &["too_many_arguments"]));
        }
    }
    assert_none(
        "clippy::too_many_arguments allowed (group the arguments)",
        found,
    );
}

#[test]
fn dependencies_point_one_way() {
    // Each crate and the workspace crates it must not depend on.
    let rules: &[(&str, &[&str])] = &[
        ("engine/Cargo.toml", &["mesh"]),
        ("providers/Cargo.toml", &["engine", "mesh"]),
        (
            "plans/Cargo.toml",
            &["engine", "providers", "state", "mesh"],
        ),
        (
            "state/Cargo.toml",
            &["engine", "providers", "plans", "mesh"],
        ),
    ];
    let mut found = Vec::new();
    for (manifest, banned) in rules {
        let text = read(&repo().join(manifest));
        let deps: toml::Table = toml::from_str(&text).expect("a Cargo.toml");
        for section in ["dependencies", "dev-dependencies"] {
            let Some(table) = deps.get(section).and_then(|d| d.as_table()) else {
                continue;
            };
            for b in *banned {
                if table.contains_key(*b) {
                    found.push(format!("{manifest} [{section}] depends on `{b}`"));
                }
            }
        }
    }
    assert_none("a crate depends on a crate above it", found);
}

// The detectors themselves: each catches what it should, so a rule
// cannot pass by reading nothing.

#[test]
fn the_detectors_catch_what_they_should() {
    let kind = "use crate::access::Need;\nuse crate::check::Check; // a kind importing check\n";
    assert_eq!(
        mentions("k.rs", kind, &["crate::check"]),
        ["k.rs:2: use crate::check::Check;"]
    );
    // Comments and a file's tests do not count.
    let quiet = "// crate::check is below\n#[cfg(test)]\nmod tests { use crate::check::X; }\n";
    assert!(mentions("k.rs", quiet, &["crate::check"]).is_empty());
    let long = format!(
        "pub async fn long(x: u8) -> u8 {{\n{}    x\n}}\nfn short() {{ let s = \"}}\"; }}\n",
        "    let _ = '{';\n".repeat(130)
    );
    assert_eq!(
        long_functions("l.rs", &long, 120),
        ["l.rs:1: fn long (133 lines)"]
    );
    assert!(long_functions("l.rs", &long, 200).is_empty());
    assert_eq!(fn_name("    pub(crate) async fn go<T>("), Some("go".into()));
    assert_eq!(fn_name("    let f = |x| x; // fn in a comment"), None);
    assert_eq!(
        strip_comment("let url = \"https://x\"; // note"),
        "let url = \"https://x\"; "
    );
}
