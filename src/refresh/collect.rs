//! Collecting a terminal batch: its output and error files downloaded, parsed on every
//! core, checked against the provider's counts, staged in item order and applied in
//! one transaction (`store::apply_results`). Files that are not what the provider
//! counted are downloaded again by later refreshes; a file the provider no longer has
//! never blocks the job.

use std::sync::Arc;

use ai_batch_core::cost::{self, PriceTable};
use ai_batch_core::lifecycle::code::{self, RESULT_UNAVAILABLE, RESULT_UNREADABLE};
use ai_batch_core::lifecycle::{self, BatchErrors, ItemStatus, ResultFiles};
use ai_batch_core::processor::Processor;
use ai_batch_core::provider::{BatchView, Provider, ProviderError};
use ai_batch_core::requests::{results_owner, Owner};
use ai_batch_core::results::{self, Outcome};
use duckdb::Connection;

use super::RefreshError;
use crate::runtime::Runtime;
use crate::store::{self, LineError, StagedResult, TrackedJob};

/// A batch whose result files are unusable (cut short, fewer answers than the
/// provider counted) is collected from what can be read only after this many
/// refreshes found them so ...
const COLLECT_GIVE_UP_ATTEMPTS: i64 = 3;
/// ... and no sooner than this long after the batch finished at the provider.
const COLLECT_GIVE_UP_AFTER_SECS: i64 = 3600;

/// The batch's errors as text: the first five, then how many more.
pub(super) fn batch_errors_text(batch: &BatchView) -> Option<String> {
    let errs = &batch.errors;
    if errs.is_empty() {
        return None;
    }
    let parts: Vec<String> = errs
        .iter()
        .take(5)
        .map(|e| {
            let line = e.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            format!(
                "{}{}: {}",
                e.code.as_deref().unwrap_or("error"),
                line,
                e.message.as_deref().unwrap_or("")
            )
        })
        .collect();
    let more = if errs.len() > 5 {
        format!(" and {} more", errs.len() - 5)
    } else {
        String::new()
    };
    Some(format!("{}{more}", parts.join("; ")))
}

pub(super) struct Applied {
    pub(super) applied: i64,
    pub(super) unknown: i64,
    pub(super) duplicates: i64,
    pub(super) invalid_answers: i64,
    /// What the user must know about the files (gone, unreadable lines, given up).
    pub(super) notes: Vec<String>,
}

/// What a collect did: applied as final, or kept for the next refresh.
pub(super) enum Collected {
    Applied(Applied),
    /// The files are not final; the job is kept as it was. The row's message.
    Kept(String),
}

/// The downloaded result files of a batch, and what kept the others from being read.
#[derive(Default)]
struct Downloads {
    /// (`output` / `error`, file id, bytes), in that order.
    files: Vec<(&'static str, String, Vec<u8>)>,
    /// Files the provider no longer has: (kind, file id).
    gone: Vec<(&'static str, String)>,
    /// Why the downloaded files cannot be taken as final (a download cut short).
    bad: Vec<String>,
}

/// Downloads the output and error files. A file that answers 404 or 410 is gone
/// (providers delete result files some time after a batch ends); a download that stays
/// shorter than its `Content-Length` through the client's retries is bad; any other
/// failure fails the collect, leaving the job as it was.
fn download_results(client: &dyn Provider, batch: &BatchView) -> Result<Downloads, RefreshError> {
    let mut d = Downloads::default();
    for (kind, id) in [
        ("output", &batch.output_file_id),
        ("error", &batch.error_file_id),
    ] {
        let Some(id) = id else { continue };
        match client.fetch_results(id, 2 * 1024 * 1024 * 1024) {
            Ok(bytes) => d.files.push((kind, id.clone(), bytes)),
            Err(e) if matches!(e.status(), Some(404 | 410)) => d.gone.push((kind, id.clone())),
            Err(e @ ProviderError::Truncated { .. }) => d.bad.push(format!("the {kind} file: {e}")),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(d)
}

/// `output file line 3: <html>…; error file line 7: {"custom_id…` for the first
/// unreadable lines, with how many there are in all.
fn describe_unreadable(
    parsed: &results::ParsedResults,
    files: &[(&'static str, String, Vec<u8>)],
) -> Option<String> {
    if parsed.unreadable_lines == 0 {
        return None;
    }
    let shown: Vec<String> = parsed
        .unreadable
        .iter()
        .map(|u| {
            let kind = files.get(u.file).map_or("result", |f| f.0);
            format!("{kind} file line {}: {}", u.line, u.excerpt)
        })
        .collect();
    let more = parsed.unreadable_lines.saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(format!(
        "{} unreadable line(s) ({}{more})",
        parsed.unreadable_lines,
        shown.join("; ")
    ))
}

/// Downloads the result files of a terminal batch and applies them atomically.
///
/// The files are applied as final only when they are whole: every download complete
/// (no shorter than its `Content-Length`), and at least as many answers read as the
/// provider counted `completed` (or, without counts, every line readable). Otherwise
/// the job is kept as it was, the reason goes into its `error_message`, and the next
/// refresh downloads the files again. After [`COLLECT_GIVE_UP_ATTEMPTS`] such
/// refreshes, and no sooner than [`COLLECT_GIVE_UP_AFTER_SECS`] after the batch
/// finished, what can be read is applied and the items without a result end `failed`
/// with [`RESULT_UNREADABLE`]. A file the provider no longer has (404, 410) is
/// not waited for: the other file is applied and the items without a result end
/// `failed` with [`RESULT_UNAVAILABLE`]. Both codes are retried by `batch_retry`.
pub(super) fn collect(
    rt: &Arc<Runtime>,
    conn: &Connection,
    client: &dyn Provider,
    prices: &PriceTable,
    job: &TrackedJob,
    batch: &BatchView,
    prof: &mut crate::profile::Profiler,
) -> Result<Collected, RefreshError> {
    // The processor of the job's own version, not today's of that name.
    let resolved = store::processors::resolve(conn, &job.processor, &job.processor_version)
        .map_err(|e| RefreshError::Invalid(e.to_string()))?;
    let proc_: &Processor = &resolved;
    // Download first (no lock held, nothing written): a failure leaves the job as is.
    let mut dl = download_results(client, batch)?;
    prof.mark("download", dl.files.iter().map(|f| f.2.len() as u64).sum());
    crate::failpoint::hit("refresh_after_download");
    let slices: Vec<&[u8]> = dl.files.iter().map(|f| f.2.as_slice()).collect();
    let parsed = client.format().parse_results(&slices, proc_);
    prof.mark("parse_validate", parsed.outcomes.len() as u64);
    // A batch whose provider does not say whose it is (Anthropic's carry no metadata)
    // was adopted for a lost create by its size and time: its results decide. Not one
    // of ours: it is another program's, and the job looks again.
    if batch.job_id.is_none()
        && results_owner(
            &job.job_id,
            parsed.outcomes.iter().map(|o| o.custom_id.as_str()),
        ) == Owner::Theirs
    {
        let msg = format!(
            "batch {} was taken for this job's lost create by its size and time, but its \
             results carry none of this job's custom_ids: it is another program's; it is let \
             go, nothing of it is applied, and the job looks for its batch again",
            batch.id
        );
        store::job_unadopted(conn, job.pk, &msg)?;
        return Ok(Collected::Kept(msg));
    }
    let unreadable = describe_unreadable(&parsed, &dl.files);
    let output_read = dl.files.iter().any(|f| f.0 == "output");
    drop(slices);
    dl.files = Vec::new(); // the bytes are parsed: free them before applying
    if output_read && dl.bad.is_empty() {
        let answered = parsed
            .outcomes
            .iter()
            .filter(|o| {
                o.answered
                    && ai_batch_core::requests::parse_custom_id(&job.job_id, &o.custom_id).is_ok()
            })
            .count() as u64;
        match batch.request_counts {
            Some(c) if answered < c.completed => dl.bad.push(format!(
                "the provider counted {} completed, {answered} answers read",
                c.completed
            )),
            None if unreadable.is_some() => dl
                .bad
                .push("the provider gave no request counts to check".into()),
            _ => {}
        }
    }
    let mut notes: Vec<String> = Vec::new();
    let give_up = if dl.bad.is_empty() {
        false
    } else {
        let attempts = store::collect_attempts(conn, job.pk)? + 1;
        let waited = batch.finished_at.is_none_or(|t| {
            crate::jobid::now_ms().div_euclid(1000) - t >= COLLECT_GIVE_UP_AFTER_SECS
        });
        let why = format!(
            "{}{}",
            dl.bad.join("; "),
            unreadable
                .as_deref()
                .map(|u| format!("; {u}"))
                .unwrap_or_default()
        );
        if attempts < COLLECT_GIVE_UP_ATTEMPTS || !waited {
            let msg = format!(
                "not collected: the result files are not what the provider counted ({why}); the job \
                 is kept as it was and its files are downloaded again on the next refresh (attempt \
                 {attempts} of {COLLECT_GIVE_UP_ATTEMPTS}: after {COLLECT_GIVE_UP_ATTEMPTS} \
                 attempts, and no sooner than 1 hour after the batch finished, what can be read is \
                 collected and the rest ends {RESULT_UNREADABLE}, for batch_retry)"
            );
            store::record_collect_attempt(conn, job.pk, attempts, &msg)?;
            return Ok(Collected::Kept(msg));
        }
        notes.push(format!(
            "given up after {attempts} attempts: {why}; the items without a result end \
             {RESULT_UNREADABLE} (batch_retry sends them again)"
        ));
        true
    };
    if !give_up {
        notes.extend(unreadable.clone());
    }
    // "the output file file-… or the error file file-…"
    let gone = (!dl.gone.is_empty()).then(|| {
        let names: Vec<String> = dl
            .gone
            .iter()
            .map(|(k, id)| format!("the {k} file {id}"))
            .collect();
        names.join(" or ")
    });
    if let Some(gone) = &gone {
        notes.push(format!(
            "{gone} answered 404: no longer at the provider (providers delete result files some \
             time after a batch ends); the items whose result was in it end \
             {RESULT_UNAVAILABLE} (batch_retry sends them again)"
        ));
    }
    let price = prices.lookup(&job.model).ok().map(|m| m.price.clone());

    // What happens to items the files do not mention (the rule: `lifecycle`).
    let batch_error = batch_errors_text(batch);
    let errors = BatchErrors {
        first_code: batch.errors.first().and_then(|e| e.code.as_deref()),
        text: batch_error.as_deref(),
        names_lines: batch.errors.iter().any(|d| d.line.is_some()),
    };
    let given_up_why = give_up.then(|| dl.bad.join("; "));
    let files = match (&gone, &given_up_why) {
        (Some(gone), _) => ResultFiles::Gone(gone),
        (None, Some(why)) => ResultFiles::GivenUp(why),
        (None, None) => ResultFiles::Whole,
    };
    let polled = batch.status.clone();
    let unmentioned = lifecycle::unmentioned_items(&polled, errors, files);
    let job_error = {
        let parts: Vec<String> = batch_error
            .iter()
            .cloned()
            .chain(notes.iter().cloned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    };
    // Validation errors that name a line of our input file name an item: line N is
    // the Nth item of the job in id order (the order the file was written in).
    // Several errors on one line make one entry (the first code, every message), so
    // each item gets exactly one staged row.
    let mut line_errors: Vec<LineError> = Vec::new();
    for d in &batch.errors {
        let Some(line) = d.line else { continue };
        let code = d
            .code
            .clone()
            .unwrap_or_else(|| code::INVALID_REQUEST.into());
        let text = format!("{code}: {}", d.message.as_deref().unwrap_or(""));
        match line_errors.iter_mut().find(|e| e.line == line as i64) {
            Some(e) => {
                e.message.push_str("; ");
                e.message.push_str(&text);
            }
            None => line_errors.push(LineError {
                line: line as i64,
                code,
                message: text,
            }),
        }
    }

    let _guard = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
    // Staged in item order (items were written in issue id order, which the custom id
    // carries): DuckDB applies an UPDATE ... FROM whose source is in the target's row
    // order ~100x faster than one in the provider's shuffled order (26k rows: 0.02 s
    // instead of 2.3 s).
    let mut in_item_order: Vec<&results::LineOutcome> = parsed.outcomes.iter().collect();
    // (each key once: parsing a custom id checks its job-id prefix)
    in_item_order.sort_by_cached_key(|o| {
        ai_batch_core::requests::parse_custom_id(&job.job_id, &o.custom_id).unwrap_or(i64::MAX)
    });
    let staged = in_item_order.into_iter().map(|o| {
        let cost = match (&price, o.input_tokens, o.output_tokens) {
            (Some(p), Some(i), Some(out)) => Some(cost::cost_usd_unrounded(
                i.max(0) as u64,
                out.max(0) as u64,
                p,
            )),
            _ => None,
        };
        let (status, error_code, error_message, result) = match &o.outcome {
            Outcome::Completed { result } => (
                ItemStatus::Completed.as_str(),
                None,
                None,
                Some(result.as_str()),
            ),
            Outcome::Failed {
                status,
                code,
                message,
            } => (*status, Some(code.as_str()), Some(message.as_str()), None),
        };
        StagedResult {
            custom_id: &o.custom_id,
            status,
            error_code,
            error_message,
            input_tokens: o.input_tokens,
            output_tokens: o.output_tokens,
            cost,
            result,
        }
    });
    store::stage_results(conn, job.pk, staged, &line_errors)?;
    prof.mark("stage_results", parsed.outcomes.len() as u64);
    let applied = store::apply_results(conn, job, &polled, &unmentioned, job_error.as_deref())?;
    store::drop_staged(conn);
    prof.mark("apply", applied.applied as u64);
    crate::failpoint::hit("refresh_after_commit");
    Ok(Collected::Applied(Applied {
        applied: applied.applied,
        unknown: applied.unknown,
        duplicates: parsed.duplicate_lines as i64,
        invalid_answers: applied.invalid_answers,
        notes,
    }))
}
