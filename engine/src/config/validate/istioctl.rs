//! `[istioctl]`: which istioctl to run, and how long it may take.

use super::Checker;
use crate::config::model::IstioctlSection;
use crate::config::parse::{At, Draft};
use std::time::Duration;

impl Checker<'_> {
    pub(super) fn istioctl(&mut self, draft: &Draft) -> IstioctlSection {
        let readiness_timeout = self.duration(
            &draft.readiness_timeout,
            "readiness_timeout",
            IstioctlSection::DEFAULT_READINESS_TIMEOUT,
        );
        let timeout = self.duration(
            &draft.istioctl_timeout,
            "timeout",
            IstioctlSection::default_timeout(readiness_timeout),
        );
        if let Some(at) = &draft.istioctl_timeout
            && timeout <= readiness_timeout
        {
            self.error(
                at.span.clone(),
                format!(
                    "[istioctl] timeout ({} s) is not longer than readiness_timeout ({} s)",
                    timeout.as_secs(),
                    readiness_timeout.as_secs()
                ),
                "istioctl is stopped after `timeout`, so it must outlast the readiness wait: raise `timeout` or remove it (default: twice readiness_timeout plus 2 minutes)",
            );
        }
        IstioctlSection {
            path: self.optional_nonempty(&draft.istioctl_path, "path"),
            readiness_timeout,
            timeout,
        }
    }

    /// `key` as a duration; `default` when it is not written, and when it
    /// is zero or not a duration (reported), so later rules still run.
    fn duration(&mut self, v: &Option<At<String>>, key: &str, default: Duration) -> Duration {
        let Some(at) = v else { return default };
        match crate::config::parse_duration(&at.value) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.error(
                    at.span.clone(),
                    format!("[istioctl] {key} is zero"),
                    "give istioctl some time, e.g. \"5m\"",
                );
                default
            }
            Err(e) => {
                self.error(
                    at.span.clone(),
                    format!("[istioctl] {key}: {e}"),
                    "write e.g. \"300s\" or \"5m\"",
                );
                default
            }
        }
    }
}
