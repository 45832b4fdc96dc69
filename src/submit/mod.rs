//! Submitting a selection of issues as provider batch jobs.
//!
//! The order of steps is what makes a crash or a provider error recoverable:
//!
//! 1. Check everything that can be checked without writing: parameters, API key,
//!    base URL, the selection SQL (one read-only statement with an `id` column).
//! 2. Resolve the selection into ids; classify them (unknown, filtered out, already
//!    analysed, in an active job) and choose what to submit — under the runtime's
//!    write lock, so two submits never put one issue into two active jobs.
//! 3. Build the JSONL request files (one per shard of at most 50,000 requests /
//!    190 MB) and count input tokens exactly; estimate the cost.
//! 4. Commit the jobs (status `created`) and their items (`pending`) in one
//!    transaction, still under the lock. Nothing has been sent yet.
//! 5. Per job: upload the file (→ `uploaded`, `input_file_id` recorded), create the
//!    batch with `metadata.ai_batch_job_id` (→ provider status, `provider_batch_id`
//!    recorded). A failure that surely did not create a batch marks the job and its
//!    items `failed` with the reason; a create that may have reached the provider
//!    leaves the job `uploaded` with the reason, for `batch_refresh()` to reconcile by
//!    job id. Nothing is repeated blindly.
//!
//! Here: the pipeline. Beside it: `request` (the request and its parameters),
//! `selection` (the selection SQL and ids), `send` (upload and create), `outcome`
//! (what a submit gives back), `error`. The tracking-table statements are in
//! `store::record`, the prices in `store::prices`.

mod budget;
mod error;
mod outcome;
pub mod request;
mod selection;
mod send;

use std::sync::Arc;

use ai_batch_core::cost;
use ai_batch_core::lifecycle;
use ai_batch_core::processor::Processor;
use duckdb::Connection;

use crate::runtime::Runtime;
use crate::store;
use crate::store::record::{ClassifyRequest, NewJob};

pub use error::SubmitError;
pub use outcome::{JobOutcome, SubmitResult};
pub use request::{Selection, SubmitRequest, ALL_ISSUES, NULL_SELECTION_NOTE};
pub(crate) use selection::{id_out_of_range, is_integer_type};

use outcome::{with_note, PlannedJob};
use selection::{drop_temp, load_selection};
pub(crate) use send::create_job;
use send::{make_provider, send_jobs};

/// Runs a submit: see the module docs for the order of steps.
pub fn submit(rt: &Arc<Runtime>, req: &SubmitRequest) -> Result<SubmitResult, SubmitError> {
    req.validate()?;
    let conn = rt.lease()?;
    let conn: &Connection = &conn;
    // The processor as it is now (built in, or the user's current definition); a retry
    // takes the version of the job it retries.
    let proc_ = match &req.processor_version {
        Some(v) => store::processors::resolve(conn, &req.processor, v)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?,
        None => store::processors::current(conn, &req.processor)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?,
    };
    let proc_: &Processor = &proc_;
    let with_default_model;
    let req = match proc_.default_model() {
        Some(m) if req.takes_default_model(m) => {
            let mut r = req.clone();
            r.set_model_and_provider(Some(m.to_string()), None)?;
            r.validate()?;
            with_default_model = r;
            &with_default_model
        }
        _ => req,
    };
    let opts = req.request_options()?;
    // The key and the base URL are checked before anything is written.
    let client = if req.dry_run {
        None
    } else {
        Some(make_provider(req)?)
    };

    if !store::table_exists(conn, "issues")? {
        return Err(SubmitError::NoIssues);
    }
    store::check_tables(conn, store::Reads::Issues)?;
    let mut prof = crate::profile::Profiler::new("submit");
    // The selection is checked and resolved before the tracking tables are even
    // created: a bad selection leaves the database as it was.
    load_selection(conn, req)?;
    prof.mark("selection", 0);
    let prices = store::prices::price_table(conn)?;
    let (price, note) = cost::price_and_note(&prices, &req.model);
    if let (Some(max_cost), None) = (req.max_cost, &price) {
        drop_temp(conn);
        return Err(SubmitError::Invalid(format!(
            "max_cost := {max_cost} is set but no price is known for model '{}', so the cost \
             cannot be checked; nothing was written or sent (add the model's Batch API prices to \
             ai_batch_prices, or leave max_cost out)",
            ai_batch_core::text::echo(&req.model)
        )));
    }
    let tracked = if req.dry_run {
        store::tracking_tables_present(conn)?
    } else {
        store::ensure_schema(conn)?;
        true
    };

    // From here until the jobs are committed, no other submit of this database runs.
    let guard = if req.dry_run {
        None
    } else {
        Some(rt.write_lock.lock().unwrap_or_else(|e| e.into_inner()))
    };
    let summary = store::record::classify(
        conn,
        &ClassifyRequest {
            org: req.org.as_deref(),
            repo: req.repo.as_deref(),
            state: req.state.as_deref(),
            processor: &req.processor,
            missing_analysis: req.missing_analysis,
            stale_version: req.stale.then(|| proc_.version()),
            reprocess: req.reprocess,
            max_issues: req.max_issues,
            tracked,
        },
    )?;
    prof.mark("skip_check", summary.selected as u64);
    if summary.to_submit == 0 {
        drop_temp(conn);
        return Ok(SubmitResult {
            model: req.model.clone(),
            jobs: vec![JobOutcome {
                job_id: None,
                status: "nothing_to_submit".into(),
                submitted: 0,
                estimated_input_tokens: 0,
                estimated_output_tokens: 0,
                cost_estimate: Some(0.0),
                provider_batch_id: None,
                message: if req.selection == Selection::Null {
                    format!("nothing to submit: {NULL_SELECTION_NOTE}")
                } else {
                    format!("nothing to submit: {}", summary.describe())
                },
            }],
            summary,
        });
    }

    let history_avg = if tracked {
        store::prices::output_history_average(conn, &req.processor, &req.model)?
    } else {
        None
    };
    // The model cannot bill more output than max_output_tokens allows.
    let out_each = {
        let e = cost::expected_output_tokens(proc_, &req.model, history_avg);
        match req.max_output_tokens {
            Some(cap) if cap > 0 => e.min(cap as u64),
            _ => e,
        }
    };

    // Request files: streamed from the database to the spool, counted on every core.
    let max_lines = req.max_requests_per_job.map(|n| n as usize);
    let mut times = crate::build::BuildTimes::default();
    let plan = |b: crate::build::BuiltJob| {
        let input = b.input_tokens();
        let output = out_each * b.issue_ids.len() as u64;
        PlannedJob {
            cost_estimate: price
                .as_ref()
                .map(|p| cost::estimate_cost(input, output, p)),
            input_tokens: input,
            output_tokens: output,
            built: b,
            queue: None,
        }
    };
    // The budget guard: the whole submit against max_cost, before anything is recorded.
    let within_budget = |planned: &[PlannedJob]| -> Result<(), SubmitError> {
        match (req.max_cost, &price) {
            (Some(max_cost), Some(p)) => Ok(budget::check(
                max_cost,
                p,
                out_each,
                planned
                    .iter()
                    .map(|j| (j.cost_estimate.unwrap_or(0.0), j.built.tokens.as_slice())),
            )?),
            _ => Ok(()),
        }
    };
    let profile_build = |prof: &mut crate::profile::Profiler,
                         times: &crate::build::BuildTimes,
                         n: u64,
                         bytes: u64| {
        prof.add("read_issues", times.read, n);
        prof.add("render_count_tokens", times.render_count, n);
        prof.add("build_jsonl", times.write, bytes);
    };

    let Some(client) = client else {
        // A dry run: build and count, write and send nothing.
        let mut planned = Vec::new();
        crate::build::build_requests::<SubmitError>(
            conn,
            req.known_provider().format,
            proc_,
            &opts,
            max_lines,
            None,
            &mut times,
            &mut |b| {
                planned.push(plan(b));
                Ok(())
            },
        )?;
        let n: u64 = planned.iter().map(|p| p.built.issue_ids.len() as u64).sum();
        let bytes = planned.iter().map(|p| p.built.bytes).sum();
        profile_build(&mut prof, &times, n, bytes);
        prof.mark("build_requests", bytes);
        drop_temp(conn);
        within_budget(&planned)?;
        let jobs = planned
            .into_iter()
            .map(|p| JobOutcome {
                job_id: None,
                status: "dry_run".into(),
                submitted: p.built.issue_ids.len() as i64,
                estimated_input_tokens: p.input_tokens as i64,
                estimated_output_tokens: p.output_tokens as i64,
                cost_estimate: p.cost_estimate,
                provider_batch_id: None,
                message: with_note(
                    format!("dry run, nothing written or sent: {}", summary.describe()),
                    &note,
                ),
            })
            .collect();
        return Ok(SubmitResult {
            model: req.model.clone(),
            summary,
            jobs,
        });
    };

    // A real submit, pipelined: each job is committed (with its pending items) as soon
    // as its file is complete, then handed to a sender thread with a connection of its
    // own, which uploads and creates it while the next job is being built. A job is
    // always committed before any network call for it. When no second connection is
    // idle (other ai_batch calls hold them), the jobs are sent after the build instead,
    // on this connection.
    // The account's queue limit: a job that would go over it is recorded and uploaded
    // but waits `queued`; so does every job after it, and every job behind an older
    // queued one of this model (oldest first).
    let limit = store::limits::queue_limit(conn, &req.provider, &req.model)?;
    let older = store::limits::queued_count(conn, &req.provider, &req.model, None)?;
    let mut queue_behind = (older > 0).then(|| {
        format!(
            "queued: behind {older} older queued job(s) of model {}; batch_refresh() or \
             batch_wait() sends it when room frees",
            req.model
        )
    });
    let spool = crate::spool::dir().map_err(SubmitError::Spool)?;
    // Request files of killed submits (nobody holds their lock) go first.
    crate::spool::clean_stale(&spool);
    let sender_conn = rt.try_lease();
    let described = summary.describe();
    let mut claims = Vec::new();
    let mut recorded: Vec<String> = Vec::new();
    let mut record_secs = 0.0;
    let mut bytes_built = 0u64;
    let (built, sent) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel::<(PlannedJob, i64)>();
        let (client, described, note) = (&*client, &described, &note);
        // The lease moves into the thread (a connection is Send, not Sync) and goes
        // back to the pool when the thread ends.
        let sending = match sender_conn {
            Some(c) => {
                Sending::Thread(scope.spawn(move || send_jobs(&c, client, rx, described, note)))
            }
            None => Sending::AfterBuild(rx),
        };
        // Records one built job and hands it to the sender.
        let mut record_and_send = |mut p: PlannedJob| -> Result<(), SubmitError> {
            // Until the job is handed to the sender, a failure removes its file.
            let mut unsent = crate::build::RemoveOnDrop(p.built.path.clone());
            if !recorded.is_empty() {
                crate::failpoint::hit("submit_before_next_record");
                if crate::failpoint::fails("submit_before_next_record") {
                    return Err(SubmitError::Build(
                        "injected failure (AI_BATCH_FAILPOINT)".into(),
                    ));
                }
            }
            // Claim the job before it becomes visible, so that a concurrent refresh
            // never takes a job this call is still sending for an interrupted one.
            claims.extend(rt.claim_job(&p.built.job_id));
            let skipped = if recorded.is_empty() {
                summary.skipped()
            } else {
                0
            };
            let t = std::time::Instant::now();
            let pk = record_job(conn, req, proc_, &p, skipped)?;
            record_secs += t.elapsed().as_secs_f64();
            if queue_behind.is_none() && limit != lifecycle::QueueLimit::default() {
                let held = store::limits::enqueued(conn, &req.provider, &req.model, Some(pk))?;
                let size = lifecycle::Enqueued {
                    tokens: p.input_tokens as i64,
                    requests: p.built.issue_ids.len() as i64,
                    jobs: 1,
                };
                if let lifecycle::Admission::Wait(why) = lifecycle::admit(limit, held, size) {
                    queue_behind = Some(why);
                }
            }
            p.queue = queue_behind.clone();
            crate::failpoint::hit("submit_after_record");
            recorded.push(p.built.job_id.clone());
            bytes_built += p.built.bytes;
            // The receiver lives until this scope ends; a send can only fail if
            // the sender thread is gone, and then its join below reports it.
            unsent.0 = None;
            let _ = tx.send((p, pk));
            Ok(())
        };
        // With a budget, every job is built before the first is recorded: the whole
        // estimate is checked first (see `budget`).
        let mut deferred: Vec<PlannedJob> = Vec::new();
        let built = crate::build::build_requests(
            conn,
            client.format(),
            proc_,
            &opts,
            max_lines,
            Some(&spool),
            &mut times,
            &mut |b| {
                let p = plan(b);
                if req.max_cost.is_some() {
                    deferred.push(p);
                    Ok(())
                } else {
                    record_and_send(p)
                }
            },
        )
        .and_then(|()| {
            if let Err(e) = within_budget(&deferred) {
                for p in &deferred {
                    drop(crate::build::RemoveOnDrop(p.built.path.clone()));
                }
                return Err(e);
            }
            deferred.into_iter().try_for_each(&mut record_and_send)
        });
        drop(tx);
        profile_build(&mut prof, &times, summary.to_submit as u64, bytes_built);
        prof.add("record_items", record_secs, summary.to_submit as u64);
        prof.mark("build_requests", bytes_built);
        // Every job is committed: other submits may start while the last uploads run.
        drop_temp(conn);
        drop(guard);
        let sent = match sending {
            Sending::Thread(h) => h.join().map_err(|_| ()),
            Sending::AfterBuild(rx) => Ok(send_jobs(conn, client, rx, described, note)),
        };
        (built, sent)
    });
    let outcomes = match sent {
        Ok(o) => o,
        Err(_) => {
            return Err(SubmitError::Build(format!(
                "the sender thread stopped unexpectedly; {} job(s) were recorded: run batch_refresh() to reconcile them",
                recorded.len()
            )))
        }
    };
    // What was left of the uploads after the build (the rest overlapped it).
    prof.mark("upload_create", outcomes.len() as u64);
    if let Err(e) = built {
        if recorded.is_empty() {
            return Err(e);
        }
        return Err(SubmitError::PartlySent {
            error: Box::new(e),
            jobs: recorded.join(", "),
        });
    }
    Ok(SubmitResult {
        model: req.model.clone(),
        summary,
        jobs: outcomes,
    })
}

/// Where a submit's recorded jobs go: a sender thread running during the build, or a
/// queue sent after it on the caller's connection.
enum Sending<'s> {
    Thread(std::thread::ScopedJoinHandle<'s, Vec<JobOutcome>>),
    AfterBuild(std::sync::mpsc::Receiver<(PlannedJob, i64)>),
}

/// Commits one job and its pending items (see `store::record::record_job`). Returns
/// the job's primary key. `skipped`: the selection-level skipped count, recorded on the
/// first job of a submit only, so that summing skipped_count over jobs counts each
/// issue once.
fn record_job(
    conn: &Connection,
    req: &SubmitRequest,
    proc_: &Processor,
    p: &PlannedJob,
    skipped: i64,
) -> Result<i64, SubmitError> {
    let options = serde_json::json!({
        "temperature": req.temperature,
        "max_output_tokens": req.max_output_tokens,
        "reasoning_effort": req.reasoning_effort,
        "reprocess": req.reprocess,
        "max_issues": req.max_issues,
    })
    .to_string();
    let selection = req.selection_text();
    let base_url = req.effective_base_url();
    let estimate_method = ai_batch_core::cost::TokenEstimate::for_model(&req.model).label();
    let job = NewJob {
        job_id: &p.built.job_id,
        provider: &req.provider,
        processor: proc_,
        model: &req.model,
        skipped,
        cost_estimate: p.cost_estimate,
        estimated_input_tokens: p.input_tokens as i64,
        estimated_output_tokens: p.output_tokens as i64,
        estimate_method: &estimate_method,
        selection: &selection,
        options: &options,
        base_url: &base_url,
        retry_of: req.retry_of.as_deref(),
        issue_ids: &p.built.issue_ids,
        tokens: &p.built.tokens,
        prior_attempts: &req.prior_attempts,
    };
    Ok(store::record::record_job(conn, &job)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::outcome::SelectionSummary;

    #[test]
    fn summary_describes_skips() {
        let s = SelectionSummary {
            selected: 10,
            unknown_ids: 2,
            unknown_sample: vec![998, 999],
            skipped_analysed: 3,
            skipped_active: 1,
            to_submit: 4,
            ..Default::default()
        };
        let d = s.describe();
        assert!(d.contains("10 selected, 4 to submit"), "{d}");
        assert!(d.contains("3 already analysed"), "{d}");
        assert!(d.contains("1 in a job still running"), "{d}");
        assert!(d.contains("2 not in issues (e.g. 998, 999)"), "{d}");
        assert_eq!(s.skipped(), 6);
    }
}
