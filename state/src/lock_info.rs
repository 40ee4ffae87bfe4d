//! The lock's holder record, on its own so that the errors that name a
//! holder (`error`) and the lock that writes the record (`lock`, which
//! returns those errors) both build on it without importing each other.
//! Every backend makes this process's record with [`LockInfo::new`] (the
//! local lock here, the Kubernetes backend in `providers`), and the random
//! IDs of the state (lineages, lock IDs, temporary names) come from here.

use crate::time::now_rfc3339;
use serde::{Deserialize, Serialize};

/// Who holds the lock, as recorded in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random, 32 hex characters: what `mesh force-unlock` takes.
    pub id: String,
    /// Who took it: `MESH_LOCK_OWNER`, a CI's actor, or `user@host`.
    pub who: String,
    pub pid: u32,
    /// `plan`, `apply`, `destroy`.
    pub operation: String,
    /// When the lock was taken, RFC 3339 UTC.
    pub created: String,
    /// The state file it locks.
    pub path: String,
}

impl LockInfo {
    /// This process's record for a lock it takes now, for `operation`
    /// (`plan`, `apply`…) on the state at `path` (a file, or where a
    /// remote backend keeps it): a fresh random ID, who takes it ([`who`]), this
    /// process's pid, and the time, RFC 3339 UTC.
    pub fn new(operation: &str, path: &str) -> LockInfo {
        LockInfo {
            id: random_id(),
            who: who(),
            pid: std::process::id(),
            operation: operation.to_string(),
            created: now_rfc3339(),
            path: path.to_string(),
        }
    }

    /// The holder for a message: `who (pid N) running `op` since T (lock ID
    /// I)`. The record is whatever the lock file or Lease holds, written by
    /// anyone who could write there, so each field is [`shown`]: escaped,
    /// on one line, cut when long.
    pub fn describe(&self) -> String {
        format!(
            "{} (pid {}) running `{}` since {} (lock ID {})",
            shown(&self.who),
            self.pid,
            shown(&self.operation),
            shown(&self.created),
            shown(&self.id)
        )
    }
}

/// 128 random bits as 32 hex characters (lineages, lock IDs, temp names).
pub(crate) fn random_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who takes the lock, as the record names them: `MESH_LOCK_OWNER` when
/// set (a pipeline names itself), else the CI's actor where the CI says
/// who it runs for (GitHub Actions, GitLab CI), else `user@host`.
fn who() -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    who_from(&env, &host())
}

/// [`who`] from an environment `env` and the machine's `host` name.
fn who_from(env: &dyn Fn(&str) -> Option<String>, host: &str) -> String {
    if let Some(owner) = env("MESH_LOCK_OWNER") {
        return owner;
    }
    if let Some(actor) = env("GITHUB_ACTOR") {
        let run = match (env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
            (Some(repo), Some(id)) => format!(" ({repo}, run {id})"),
            _ => String::new(),
        };
        return format!("github:{actor}{run}");
    }
    if let Some(user) = env("GITLAB_USER_LOGIN") {
        let run = match (env("CI_PROJECT_PATH"), env("CI_PIPELINE_ID")) {
            (Some(project), Some(id)) => format!(" ({project}, pipeline {id})"),
            _ => String::new(),
        };
        return format!("gitlab:{user}{run}");
    }
    let user = env("USER")
        .or_else(|| env("USERNAME"))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}")
}

/// The kernel's hostname, else the environment's, else `localhost`.
fn host() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|f| {
            std::fs::read_to_string(f)
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// A value read from a lock record, made safe to print on a terminal:
/// control characters (ESC, BEL, newline…) escaped as `\u{1b}`, `\u{7}`,
/// `\n`, and anything past 200 characters cut with `…`. The same rule as
/// `providers::rendered::shown`, copied because this crate depends on no
/// other workspace crate.
pub(crate) fn shown(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 200 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_named_by_the_pipeline_the_ci_or_the_user() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let e = with(&[("MESH_LOCK_OWNER", "nightly drift job"), ("USER", "root")]);
        assert_eq!(who_from(&e, "vm"), "nightly drift job");
        let e = with(&[
            ("GITHUB_ACTOR", "alice"),
            ("GITHUB_REPOSITORY", "org/mesh-config"),
            ("GITHUB_RUN_ID", "42"),
            ("USER", "runner"),
        ]);
        assert_eq!(who_from(&e, "vm"), "github:alice (org/mesh-config, run 42)");
        let e = with(&[("GITLAB_USER_LOGIN", "bob"), ("CI_PIPELINE_ID", "7")]);
        assert_eq!(who_from(&e, "vm"), "gitlab:bob");
        let e = with(&[("USER", "carol")]);
        assert_eq!(who_from(&e, "vm"), "carol@vm");
        assert_eq!(who_from(&with(&[]), "vm"), "unknown@vm");
    }

    #[test]
    fn who_is_user_at_host() {
        let w = who();
        let (user, host) = w.split_once('@').expect("user@host");
        assert!(!user.is_empty() && !host.is_empty(), "{w}");
    }

    #[test]
    fn new_is_this_process_now() {
        let (a, b) = (
            LockInfo::new("apply", "s.json"),
            LockInfo::new("apply", "s.json"),
        );
        assert_eq!(a.id.len(), 32);
        assert!(a.id.bytes().all(|c| c.is_ascii_hexdigit()), "{}", a.id);
        assert_ne!(a.id, b.id);
        assert_eq!(a.who, who());
        assert_eq!(a.pid, std::process::id());
        assert_eq!((a.operation.as_str(), a.path.as_str()), ("apply", "s.json"));
        assert_eq!(
            a.created.len(),
            "2026-01-01T00:00:00Z".len(),
            "{}",
            a.created
        );
    }

    #[test]
    fn shown_escapes_control_characters_and_cuts_long_values() {
        assert_eq!(shown("alice@host"), "alice@host");
        assert_eq!(
            shown("a\u{1b}]0;t\u{7}b\nc\u{9b}"),
            "a\\u{1b}]0;t\\u{7}b\\nc\\u{9b}"
        );
        assert_eq!(shown(&"x".repeat(500)).chars().count(), 201);
    }
}
