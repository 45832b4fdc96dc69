//! What `batch_history()` says about a job's age and health: its age as short text, and a
//! plain note for a job that looks stuck (validating or finalizing for hours, no progress
//! for long, close to the provider's 24-hour window), one that waits `queued`, or a
//! finished one whose results are not collected while the provider's result files may
//! expire. Pure: the times come in as Unix seconds.

use crate::lifecycle::JobStatus;

/// The provider's completion window.
pub const WINDOW_SECS: i64 = 24 * 3600;
/// A job this close to the end of its window gets the warning.
pub const NEAR_WINDOW_SECS: i64 = 4 * 3600;
/// `validating` longer than this looks stuck.
pub const VALIDATING_STUCK_SECS: i64 = 3600;
/// `finalizing` (all requests done, files being written) longer than this looks stuck.
pub const FINALIZING_STUCK_SECS: i64 = 2 * 3600;
/// `in_progress` without the counts moving for this long looks stuck.
pub const NO_PROGRESS_SECS: i64 = 3 * 3600;
/// A finished, uncollected job older than this gets the result-file expiry warning.
pub const UNCOLLECTED_WARN_SECS: i64 = 24 * 3600;

/// What the note is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobTimes {
    pub now: i64,
    pub created: Option<i64>,
    /// When the batch was created at the provider.
    pub submitted: Option<i64>,
    /// When the provider's counts last changed (the first poll with counts included).
    pub progress: Option<i64>,
    pub collected: bool,
}

/// `2d 3h`, `5h 12m`, `7m`, `12s`.
pub fn age_text(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m")
    } else {
        format!("{s}s")
    }
}

/// The note for a job in `status` (None: nothing to say).
pub fn note(status: &JobStatus, t: JobTimes) -> Option<String> {
    if t.collected {
        return None;
    }
    let since = |at: Option<i64>| at.map(|a| t.now - a);
    if status.is_terminal() {
        let age = since(t.submitted).filter(|a| *a >= UNCOLLECTED_WARN_SECS)?;
        return Some(format!(
            "finished at the provider but not collected ({} since it was sent): run \
             batch_refresh() now; the provider deletes result files some time after a batch \
             ends (output_expires_after), and results that expired must be paid for again",
            age_text(age)
        ));
    }
    let sent = since(t.submitted);
    if let Some(left) = sent.map(|a| WINDOW_SECS - a) {
        if left <= NEAR_WINDOW_SECS
            && matches!(
                status,
                JobStatus::Validating | JobStatus::InProgress | JobStatus::Finalizing
            )
        {
            return Some(if left > 0 {
                format!(
                    "close to the provider's 24h window ({} left): requests not done by then \
                     expire; batch_refresh() then collects what finished, and batch_retry sends \
                     the rest again",
                    age_text(left)
                )
            } else {
                "past the provider's 24h window: the batch should end as expired; \
                 batch_refresh() collects what finished, and batch_retry sends the rest again"
                    .to_string()
            });
        }
    }
    match status {
        JobStatus::Validating => sent.filter(|a| *a >= VALIDATING_STUCK_SECS).map(|a| {
            format!(
                "validating for {}: the provider has not started it; a big file can take a \
                 while, else batch_cancel and batch_retry it (or keep waiting)",
                age_text(a)
            )
        }),
        JobStatus::Finalizing => since(t.progress.or(t.submitted))
            .filter(|a| *a >= FINALIZING_STUCK_SECS)
            .map(|a| {
                format!(
                    "finalizing for about {}: every request ran and the provider is writing \
                     the result files, which can take hours for big batches; keep running \
                     batch_refresh() (nothing is lost while it waits)",
                    age_text(a)
                )
            }),
        JobStatus::InProgress => since(t.progress.or(t.submitted))
            .filter(|a| *a >= NO_PROGRESS_SECS)
            .map(|a| {
                format!(
                    "no progress for {}: the provider is busy (batches run within 24h, not at \
                     once); keep waiting, or batch_cancel it (finished requests are kept) and \
                     batch_retry the rest",
                    age_text(a)
                )
            }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;

    fn at(now: i64, submitted: Option<i64>, progress: Option<i64>) -> JobTimes {
        JobTimes {
            now,
            created: Some(0),
            submitted,
            progress,
            collected: false,
        }
    }

    #[test]
    fn ages_read_short() {
        assert_eq!(age_text(12), "12s");
        assert_eq!(age_text(7 * 60 + 5), "7m");
        assert_eq!(age_text(5 * H + 12 * 60), "5h 12m");
        assert_eq!(age_text(2 * 86_400 + 3 * H + 59), "2d 3h");
        assert_eq!(age_text(-5), "0s");
    }

    #[test]
    fn a_healthy_or_collected_job_has_no_note() {
        for s in JobStatus::KNOWN {
            let mut t = at(10 * H, Some(10 * H - 1800), Some(10 * H - 1800));
            assert_eq!(note(&s, t), None, "{s}");
            t.collected = true;
            t.now = 100 * H;
            assert_eq!(note(&s, t), None, "{s}");
        }
    }

    #[test]
    fn stuck_jobs_say_what_to_do() {
        let n = |s: JobStatus, t| note(&s, t).unwrap_or_default();
        // No progress for 3h (the last change counts, not the submit).
        let t = at(10 * H, Some(0), Some(7 * H));
        assert!(n(JobStatus::InProgress, t).starts_with("no progress for 3h 0m"));
        assert_eq!(
            note(&JobStatus::InProgress, at(10 * H, Some(0), Some(8 * H))),
            None
        );
        // Never any counts: measured from the submit.
        assert!(
            n(JobStatus::InProgress, at(4 * H, Some(0), None)).starts_with("no progress for 4h")
        );
        assert!(n(JobStatus::Finalizing, at(3 * H, Some(0), Some(H)))
            .starts_with("finalizing for about 2h"));
        assert_eq!(
            note(&JobStatus::Finalizing, at(3 * H, Some(0), Some(2 * H))),
            None
        );
        assert!(n(JobStatus::Validating, at(H, Some(0), None)).starts_with("validating for 1h"));
        assert_eq!(note(&JobStatus::Validating, at(H - 1, Some(0), None)), None);
        // Close to the window wins over the rest.
        let t = at(21 * H, Some(0), Some(20 * H));
        assert!(n(JobStatus::InProgress, t)
            .starts_with("close to the provider's 24h window (3h 0m left)"));
        assert!(n(JobStatus::Finalizing, at(25 * H, Some(0), None))
            .starts_with("past the provider's 24h window"));
        // Our own states and cancelling get none of these.
        for s in [
            JobStatus::Created,
            JobStatus::Queued,
            JobStatus::Uploaded,
            JobStatus::Cancelling,
        ] {
            assert_eq!(note(&s, at(30 * H, Some(0), None)), None, "{s}");
        }
    }

    #[test]
    fn finished_but_uncollected_warns_of_expiring_files() {
        for s in JobStatus::terminal() {
            let w = note(s, at(25 * H, Some(0), None)).unwrap_or_default();
            assert!(
                w.starts_with("finished at the provider but not collected (1d 1h since"),
                "{w}"
            );
            assert!(w.contains("output_expires_after"), "{w}");
            assert_eq!(note(s, at(23 * H, Some(0), None)), None);
            assert_eq!(note(s, at(25 * H, None, None)), None);
        }
    }
}
