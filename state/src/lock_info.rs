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
    /// `user@host`.
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
    /// remote backend keeps it): a fresh random ID, `user@host`, this
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

/// `user@host`, from the environment and the kernel's hostname.
fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|f| {
            std::fs::read_to_string(f)
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
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
