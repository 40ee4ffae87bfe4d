//! The lock's holder record, on its own so that the errors that name a
//! holder (`error`) and the lock that writes the record (`lock`, which
//! returns those errors) both build on it without importing each other.

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
    fn shown_escapes_control_characters_and_cuts_long_values() {
        assert_eq!(shown("alice@host"), "alice@host");
        assert_eq!(
            shown("a\u{1b}]0;t\u{7}b\nc\u{9b}"),
            "a\\u{1b}]0;t\\u{7}b\\nc\\u{9b}"
        );
        assert_eq!(shown(&"x".repeat(500)).chars().count(), 201);
    }
}
