//! The job and item lifecycle: every status a job or an item can be in, in one place.
//!
//! The statuses stored in `batch_jobs.status` and `batch_items.status` are the text of
//! these enums and nothing else. A provider maps its own statuses onto [`JobStatus`] in its
//! wire module; everything else speaks the enums. SQL that needs a set of statuses gets
//! its text from here ([`sql_list`]).

use std::fmt;

/// Where a job is. `Created` and `Uploaded` are ours (nothing or only the input file is at
/// the provider); the rest follow the provider's batch. A status ai_batch does not know
/// (a provider may add `paused`) is kept verbatim in `Other` and is active.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Recorded; nothing sent yet.
    Created,
    /// The request file is at the provider; a create may or may not have reached it.
    Uploaded,
    /// The provider is validating the input.
    Validating,
    /// Requests are being processed.
    InProgress,
    /// The provider is preparing the result files.
    Finalizing,
    /// A cancel was asked for; in-flight requests are finishing.
    Cancelling,
    /// Done; results are in the result files.
    Completed,
    /// The batch (or our attempt to create it) failed as a whole.
    Failed,
    /// The completion window passed; partial results may exist.
    Expired,
    /// Cancelled; partial results may exist.
    Cancelled,
    /// A status ai_batch does not know. Active until it turns terminal.
    Other(String),
}

impl JobStatus {
    /// Every known status, in lifecycle order.
    pub const KNOWN: [JobStatus; 10] = [
        JobStatus::Created,
        JobStatus::Uploaded,
        JobStatus::Validating,
        JobStatus::InProgress,
        JobStatus::Finalizing,
        JobStatus::Cancelling,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Expired,
        JobStatus::Cancelled,
    ];

    /// The stored text.
    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Created => "created",
            JobStatus::Uploaded => "uploaded",
            JobStatus::Validating => "validating",
            JobStatus::InProgress => "in_progress",
            JobStatus::Finalizing => "finalizing",
            JobStatus::Cancelling => "cancelling",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Expired => "expired",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Other(s) => s,
        }
    }

    /// The status stored as `text`; unknown text is kept as [`JobStatus::Other`].
    pub fn parse(text: &str) -> JobStatus {
        Self::KNOWN
            .iter()
            .find(|s| s.as_str() == text)
            .cloned()
            .unwrap_or_else(|| JobStatus::Other(text.to_string()))
    }

    /// The batch changes no more (`completed`, `failed`, `expired`, `cancelled`). A
    /// terminal job is still active until it is collected.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Expired | JobStatus::Cancelled
        )
    }

    /// The known statuses that are not terminal.
    pub fn active_known() -> impl Iterator<Item = &'static JobStatus> {
        Self::KNOWN.iter().filter(|s| !s.is_terminal())
    }

    /// The known terminal statuses.
    pub fn terminal() -> impl Iterator<Item = &'static JobStatus> {
        Self::KNOWN.iter().filter(|s| s.is_terminal())
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one item (one issue in one job) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemStatus {
    /// Sent (or about to be); no result yet.
    Pending,
    /// A schema-valid answer is in `ai_analyses`.
    Completed,
    /// No usable answer; `error_code` says why.
    Failed,
    /// The batch expired before the request ran.
    Expired,
    /// The batch was cancelled before the request ran.
    Cancelled,
}

impl ItemStatus {
    /// Every status.
    pub const ALL: [ItemStatus; 5] = [
        ItemStatus::Pending,
        ItemStatus::Completed,
        ItemStatus::Failed,
        ItemStatus::Expired,
        ItemStatus::Cancelled,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Pending => "pending",
            ItemStatus::Completed => "completed",
            ItemStatus::Failed => "failed",
            ItemStatus::Expired => "expired",
            ItemStatus::Cancelled => "cancelled",
        }
    }

    /// The status stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<ItemStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `'a', 'b', ...`: the statuses as SQL string literals, for `status IN (...)`. The
/// texts are our own constants (no quotes in them), never user input.
pub fn sql_list<'a>(statuses: impl IntoIterator<Item = &'a str>) -> String {
    statuses
        .into_iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_status_text_round_trips_and_unknown_is_kept() {
        for s in JobStatus::KNOWN {
            assert_eq!(JobStatus::parse(s.as_str()), s);
        }
        assert_eq!(
            JobStatus::parse("paused"),
            JobStatus::Other("paused".into())
        );
        assert!(!JobStatus::parse("paused").is_terminal());
    }

    #[test]
    fn active_and_terminal_split_the_known_statuses() {
        let active: Vec<&str> = JobStatus::active_known().map(|s| s.as_str()).collect();
        assert_eq!(
            active,
            [
                "created",
                "uploaded",
                "validating",
                "in_progress",
                "finalizing",
                "cancelling"
            ]
        );
        let terminal: Vec<&str> = JobStatus::terminal().map(|s| s.as_str()).collect();
        assert_eq!(terminal, ["completed", "failed", "expired", "cancelled"]);
    }

    #[test]
    fn item_status_round_trips() {
        for s in ItemStatus::ALL {
            assert_eq!(ItemStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ItemStatus::parse("done"), None);
    }

    #[test]
    fn sql_list_quotes_each() {
        assert_eq!(
            sql_list(JobStatus::terminal().map(|s| s.as_str())),
            "'completed', 'failed', 'expired', 'cancelled'"
        );
    }
}
