//! What a submit gives back: one outcome per job and the selection's summary.

use crate::build::BuiltJob;
pub use crate::store::record::SelectionSummary;

impl SelectionSummary {
    /// Everything selected but not submitted.
    pub fn skipped(&self) -> i64 {
        self.unknown_ids + self.skipped_analysed + self.skipped_active + self.over_max
    }

    /// A sentence for the user.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.skipped_analysed > 0 {
            parts.push(format!(
                "{} already analysed (reprocess := true to redo)",
                self.skipped_analysed
            ));
        }
        if self.skipped_active > 0 {
            parts.push(format!("{} in a job still running", self.skipped_active));
        }
        if self.unknown_ids > 0 {
            let sample: Vec<String> = self.unknown_sample.iter().map(|i| i.to_string()).collect();
            parts.push(format!(
                "{} not in issues (e.g. {})",
                self.unknown_ids,
                sample.join(", ")
            ));
        }
        if self.over_max > 0 {
            parts.push(format!("{} over max_issues", self.over_max));
        }
        if self.filtered_out > 0 {
            parts.push(format!("{} excluded by the filters", self.filtered_out));
        }
        let head = format!("{} selected, {} to submit", self.selected, self.to_submit);
        if parts.is_empty() {
            head
        } else {
            format!("{head}; skipped: {}", parts.join("; "))
        }
    }
}

/// One job created (or, for a dry run, that would be created).
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    pub job_id: Option<String>,
    pub status: String,
    pub submitted: i64,
    pub estimated_input_tokens: i64,
    pub estimated_output_tokens: i64,
    pub cost_estimate: Option<f64>,
    pub provider_batch_id: Option<String>,
    pub message: String,
}

/// The result of one submit: the selection summary and one outcome per job.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitResult {
    /// The model the jobs use: `model :=`, else the processor's, else the default.
    pub model: String,
    pub summary: SelectionSummary,
    pub jobs: Vec<JobOutcome>,
}

/// A built job and its estimate, on its way to be recorded and sent.
pub(crate) struct PlannedJob {
    pub(crate) built: BuiltJob,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) cost_estimate: Option<f64>,
    /// Why it waits `queued` instead of being created (the queue limit), if it does.
    pub(crate) queue: Option<String>,
}

/// `msg`, with the estimate's note when there is one.
pub(crate) fn with_note(msg: String, note: &Option<String>) -> String {
    match note {
        Some(n) => format!("{msg} (estimate: {n})"),
        None => msg,
    }
}
