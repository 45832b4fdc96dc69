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

use std::sync::Arc;

use ai_batch_core::cost::{self, ModelPrice, PriceTable};
use ai_batch_core::openai::{OpenAiClient, OpenAiError, DEFAULT_BASE_URL};
use ai_batch_core::processor::{self, Processor};
use ai_batch_core::requests::{custom_id, RequestOptions};
use ai_batch_core::text::{cap, echo, SQL_MESSAGE_CHARS};
use duckdb::{params, Connection};

use crate::runtime::Runtime;
use crate::store;

/// The default model when `model :=` is not given.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// The only provider so far.
pub const DEFAULT_PROVIDER: &str = "openai";
/// Collected items of a processor+model needed before their average output tokens
/// replace the processor's default in estimates.
pub const MIN_HISTORY_FOR_OUTPUT_AVERAGE: i64 = 20;

/// Which issues to take.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// A read-only SQL query with an `id` column.
    Sql(String),
    /// Issue ids.
    Ids(Vec<i64>),
    /// `'*'`: every issue, narrowed by the filters. Only ever written out on purpose.
    All,
    /// The selection argument was NULL: a variable that is not set, a list from a query
    /// that found no rows. Selects nothing, and the result's message says so; it never
    /// widens to "every issue the filters allow" (that is `'*'`).
    Null,
}

/// Provider names a `provider:model` prefix may carry (gh-analysis's model form).
pub const KNOWN_PROVIDERS: [&str; 2] = ["openai", "anthropic"];

/// Splits `openai:gpt-4o-mini` into (`Some("openai")`, `gpt-4o-mini`); a name without a
/// known provider prefix comes back whole.
pub fn split_model_prefix(model: &str) -> (Option<String>, &str) {
    if let Some((pre, rest)) = model.split_once(':') {
        let pre = pre.trim().to_ascii_lowercase();
        if KNOWN_PROVIDERS.contains(&pre.as_str()) {
            return (Some(pre), rest.trim());
        }
    }
    (None, model)
}

/// The selection text that means "every issue, narrowed by the filters".
pub const ALL_ISSUES: &str = "*";

/// What the result message says about a NULL selection.
pub const NULL_SELECTION_NOTE: &str = "the selection is NULL (a variable that is not set, or a list from a query that found no rows), so nothing was selected; to take every issue the filters allow, pass '*' as the selection";

/// A submit request, as parsed from SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitRequest {
    pub processor: String,
    pub selection: Selection,
    pub model: String,
    pub provider: String,
    pub base_url: Option<String>,
    pub dry_run: bool,
    pub reprocess: bool,
    pub max_issues: Option<i64>,
    pub org: Option<String>,
    pub repo: Option<String>,
    pub state: Option<String>,
    pub missing_analysis: bool,
    pub temperature: Option<f64>,
    pub max_output_tokens: Option<i64>,
    /// Sent as the provider's `reasoning_effort` (reasoning models only).
    pub reasoning_effort: Option<String>,
    /// Requests per job (tests and users who want smaller jobs); default 50,000.
    pub max_requests_per_job: Option<i64>,
    /// Set by `batch_retry`: the job this one retries.
    pub retry_of: Option<String>,
    /// Set by `batch_retry`: attempts each issue already had (the new item gets one more).
    pub prior_attempts: std::collections::HashMap<i64, i64>,
}

impl SubmitRequest {
    /// A request with defaults for everything but processor and selection.
    pub fn new(processor: &str, selection: Selection) -> Self {
        SubmitRequest {
            processor: processor.to_string(),
            selection,
            model: DEFAULT_MODEL.to_string(),
            provider: DEFAULT_PROVIDER.to_string(),
            base_url: None,
            dry_run: false,
            reprocess: false,
            max_issues: None,
            org: None,
            repo: None,
            state: None,
            missing_analysis: false,
            temperature: None,
            max_output_tokens: None,
            reasoning_effort: None,
            max_requests_per_job: None,
            retry_of: None,
            prior_attempts: std::collections::HashMap::new(),
        }
    }

    /// Applies `model :=` and `provider :=` (either may be absent). The model may carry
    /// the gh-analysis `provider:model` prefix (`openai:gpt-4o-mini`): the prefix picks the
    /// provider and is not part of the model name. Only known provider names count as a
    /// prefix, so OpenAI's fine-tuned names (`ft:gpt-4o-mini:org::id`) stay whole.
    pub fn set_model_and_provider(
        &mut self,
        model: Option<String>,
        provider: Option<String>,
    ) -> Result<(), SubmitError> {
        let provider = provider.map(|p| p.trim().to_ascii_lowercase());
        if let Some(m) = model {
            // Surrounding spaces are dropped ('  gpt-4o-mini ' is gpt-4o-mini): no model
            // name starts or ends with one.
            let m = m.trim();
            let (prefix, name) = split_model_prefix(m);
            if let (Some(pre), Some(given)) = (&prefix, &provider) {
                if pre != given {
                    return Err(SubmitError::Invalid(format!(
                        "model '{}' names provider {pre} but provider := '{}' (give one of them)",
                        echo(m),
                        echo(given)
                    )));
                }
            }
            if let Some(pre) = prefix {
                self.provider = pre;
            }
            self.model = name.to_string();
        }
        if let Some(p) = provider {
            self.provider = p;
        }
        Ok(())
    }

    /// Checks what can be checked without the database (bind time).
    pub fn validate(&self) -> Result<(), SubmitError> {
        processor::require_processor(&self.processor)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        if KNOWN_PROVIDERS.contains(&self.provider.as_str()) && self.provider != DEFAULT_PROVIDER {
            return Err(SubmitError::Invalid(format!(
                "provider {} is not supported yet (only openai so far: use an OpenAI model such as 'gpt-4o-mini' or 'openai:gpt-4o-mini')",
                self.provider
            )));
        }
        if self.provider != DEFAULT_PROVIDER {
            return Err(SubmitError::Invalid(format!(
                "unknown provider '{}' (supported: openai)",
                echo(&self.provider)
            )));
        }
        self.request_options()?;
        if let Some(url) = &self.base_url {
            // Checked here too (not only when the client is built) so that a dry run
            // and the bind of EXPLAIN / DESCRIBE report it. The URL itself is not
            // echoed: whatever was pasted into it stays out of error messages.
            ai_batch_core::http::validate_base_url(url).map_err(|reason| {
                SubmitError::Invalid(format!(
                    "invalid base_url: {reason} (pass e.g. 'https://api.openai.com/v1'; plain http:// only for 127.0.0.1, localhost or [::1])"
                ))
            })?;
        }
        if let Some(n) = self.max_issues {
            if n < 1 {
                return Err(SubmitError::Invalid(format!(
                    "max_issues must be at least 1, got {n} (leave it out for no cap)"
                )));
            }
        }
        if let Some(n) = self.max_requests_per_job {
            if !(1..=ai_batch_core::requests::MAX_REQUESTS_PER_BATCH as i64).contains(&n) {
                return Err(SubmitError::Invalid(format!(
                    "max_requests_per_job must be between 1 and {}, got {n}",
                    ai_batch_core::requests::MAX_REQUESTS_PER_BATCH
                )));
            }
        }
        match &self.selection {
            Selection::Sql(s) if s.trim().is_empty() => {
                return Err(SubmitError::Invalid(
                    "the selection SQL is empty (pass a SELECT with an id column)".into(),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn request_options(&self) -> Result<RequestOptions, SubmitError> {
        let max_output_tokens = match self.max_output_tokens {
            None => None,
            Some(n) if n >= 1 && n <= u32::MAX as i64 => Some(n as u32),
            Some(n) => {
                return Err(SubmitError::Invalid(format!(
                    "max_output_tokens must be a positive number of tokens, got {n}"
                )))
            }
        };
        let opts = RequestOptions {
            model: self.model.clone(),
            temperature: self.temperature,
            max_output_tokens,
            reasoning_effort: self.reasoning_effort.clone(),
        };
        opts.validate()
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        Ok(opts)
    }

    /// What is kept in `batch_jobs.selection_query`.
    fn selection_text(&self) -> String {
        let mut s = match &self.selection {
            Selection::Sql(q) => q.clone(),
            Selection::Ids(ids) => {
                let shown: Vec<String> = ids.iter().take(1000).map(|i| i.to_string()).collect();
                let more = if ids.len() > 1000 {
                    format!(", ... ({} ids in all)", ids.len())
                } else {
                    String::new()
                };
                format!("ids: [{}{more}]", shown.join(", "))
            }
            Selection::All => "all issues ('*')".to_string(),
            Selection::Null => "NULL (nothing selected)".to_string(),
        };
        let filters: Vec<String> = [
            ("org", &self.org),
            ("repo", &self.repo),
            ("state", &self.state),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} = '{v}'")))
        .chain(
            self.missing_analysis
                .then(|| "missing_analysis".to_string()),
        )
        .chain(self.max_issues.map(|n| format!("max_issues = {n}")))
        .collect();
        if !filters.is_empty() {
            s.push_str(&format!(" -- filters: {}", filters.join(", ")));
        }
        s
    }
}

/// Why a submit failed. Messages say what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(String),
    #[error("selection must be a single SELECT (or WITH / VALUES / FROM) query: {0}")]
    BadSelection(String),
    #[error("{0}")]
    SelectionCalls(crate::guard::Refused),
    #[error("OPENAI_API_KEY is not set (export it in the environment of the process that runs DuckDB; it is never read from SQL)")]
    MissingKey,
    #[error("no issues table in this database (create it with sql/schema.sql and import issues with sql/import_issues.sql)")]
    NoIssues,
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
    #[error("could not build the requests: {0}")]
    Build(String),
    #[error("could not write the request file: {0}")]
    Spool(String),
    #[error("{0}")]
    Provider(#[from] OpenAiError),
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The build failed after earlier jobs of the same submit were committed and sent.
    #[error("{error}; the job(s) recorded before the failure were sent as usual: {jobs} (see batch_history(); running the same batch_submit again submits only the issues not in them)")]
    PartlySent {
        error: Box<SubmitError>,
        jobs: String,
    },
}

/// How the selection broke down.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectionSummary {
    /// Distinct non-NULL ids the selection produced.
    pub selected: i64,
    /// Ids that are not in `issues`.
    pub unknown_ids: i64,
    /// Some of the unknown ids, for the message.
    pub unknown_sample: Vec<i64>,
    /// Known ids that the filters (org, repo, state) left out.
    pub filtered_out: i64,
    /// Skipped: this processor already analysed them (and `reprocess` is off).
    pub skipped_analysed: i64,
    /// Skipped: an item of this processor is still pending in another job.
    pub skipped_active: i64,
    /// Left for later by `max_issues`.
    pub over_max: i64,
    /// Taken into jobs.
    pub to_submit: i64,
}

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
    pub summary: SelectionSummary,
    pub jobs: Vec<JobOutcome>,
}

/// Runs a submit: see the module docs for the order of steps.
pub fn submit(rt: &Arc<Runtime>, req: &SubmitRequest) -> Result<SubmitResult, SubmitError> {
    req.validate()?;
    let proc_ = processor::require_processor(&req.processor)
        .map_err(|e| SubmitError::Invalid(e.to_string()))?;
    let opts = req.request_options()?;
    // The key and the base URL are checked before anything is written.
    let client = if req.dry_run {
        None
    } else {
        Some(make_client(req)?)
    };

    let conn = rt.lease()?;
    let conn: &Connection = &conn;
    if !store::table_exists(conn, "issues")? {
        return Err(SubmitError::NoIssues);
    }
    store::check_tables(conn, store::Reads::Issues)?;
    let mut prof = crate::profile::Profiler::new("submit");
    // The selection is checked and resolved before the tracking tables are even
    // created: a bad selection leaves the database as it was.
    load_selection(conn, req)?;
    prof.mark("selection", 0);
    let tracked = if req.dry_run {
        store::owned_tables_present(conn)? == store::OWNED_TABLES.len()
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
    let summary = classify(conn, req, tracked)?;
    prof.mark("skip_check", summary.selected as u64);
    if summary.to_submit == 0 {
        drop_temp(conn);
        return Ok(SubmitResult {
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

    let prices = price_table(conn)?;
    let history_avg = if tracked {
        output_history_average(conn, &req.processor, &req.model)?
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
    let (price, note) = price_and_note(&prices, &req.model);

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
        crate::build::build_requests(conn, proc_, &opts, max_lines, None, &mut times, &mut |b| {
            planned.push(plan(b));
            Ok(())
        })?;
        let n: u64 = planned.iter().map(|p| p.built.issue_ids.len() as u64).sum();
        let bytes = planned.iter().map(|p| p.built.bytes).sum();
        profile_build(&mut prof, &times, n, bytes);
        prof.mark("build_requests", bytes);
        drop_temp(conn);
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
        return Ok(SubmitResult { summary, jobs });
    };

    // A real submit, pipelined: each job is committed (with its pending items) as soon
    // as its file is complete, then handed to a sender thread with a connection of its
    // own, which uploads and creates it while the next job is being built. A job is
    // always committed before any network call for it. When no second connection is
    // idle (other ai_batch calls hold them), the jobs are sent after the build instead,
    // on this connection.
    let spool = crate::spool::dir()?;
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
        let (client, described, note) = (&client, &described, &note);
        // The lease moves into the thread (a connection is Send, not Sync) and goes
        // back to the pool when the thread ends.
        let sending = match sender_conn {
            Some(c) => {
                Sending::Thread(scope.spawn(move || send_jobs(&c, client, rx, described, note)))
            }
            None => Sending::AfterBuild(rx),
        };
        let built = crate::build::build_requests(
            conn,
            proc_,
            &opts,
            max_lines,
            Some(&spool),
            &mut times,
            &mut |b| {
                let p = plan(b);
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
                crate::failpoint::hit("submit_after_record");
                recorded.push(p.built.job_id.clone());
                bytes_built += p.built.bytes;
                // The receiver lives until this scope ends; a send can only fail if
                // the sender thread is gone, and then its join below reports it.
                unsent.0 = None;
                let _ = tx.send((p, pk));
                Ok(())
            },
        );
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

/// The sender thread of a submit: uploads and creates each recorded job in turn. After
/// a failure, the later jobs are marked failed without being sent (batch_retry sends
/// them again).
fn send_jobs(
    conn: &Connection,
    client: &OpenAiClient,
    jobs: std::sync::mpsc::Receiver<(PlannedJob, i64)>,
    described: &str,
    note: &Option<String>,
) -> Vec<JobOutcome> {
    let mut outcomes = Vec::new();
    let mut earlier_failure: Option<String> = None;
    for (p, job_pk) in jobs {
        let job_id = &p.built.job_id;
        let Some(path) = p.built.path.as_deref() else {
            continue;
        };
        // Sent or not, the request file is not needed after this iteration.
        let _spool_file = crate::build::RemoveOnDrop(Some(path.to_path_buf()));
        let base = JobOutcome {
            job_id: Some(job_id.clone()),
            status: String::new(),
            submitted: p.built.issue_ids.len() as i64,
            estimated_input_tokens: p.input_tokens as i64,
            estimated_output_tokens: p.output_tokens as i64,
            cost_estimate: p.cost_estimate,
            provider_batch_id: None,
            message: String::new(),
        };
        if let Some(prev) = &earlier_failure {
            let msg = format!("not sent because an earlier job of this submit failed ({prev}); batch_retry('{job_id}') sends it again");
            let status = match store::fail_job(conn, job_pk, "not_sent", &msg) {
                Ok(()) => "failed",
                // still `created`: batch_refresh() marks it interrupted
                Err(_) => "created",
            };
            outcomes.push(JobOutcome {
                status: status.into(),
                message: msg,
                ..base
            });
            continue;
        }
        match send_job(conn, client, job_pk, job_id, path) {
            Ok((status, batch_id)) => outcomes.push(JobOutcome {
                status,
                provider_batch_id: Some(batch_id),
                message: with_note(format!("submitted; {described}"), note),
                ..base
            }),
            Err((status, msg)) => {
                earlier_failure = Some(msg.clone());
                outcomes.push(JobOutcome {
                    status,
                    message: msg,
                    ..base
                });
            }
        }
    }
    outcomes
}

fn with_note(msg: String, note: &Option<String>) -> String {
    match note {
        Some(n) => format!("{msg} (estimate: {n})"),
        None => msg,
    }
}

struct PlannedJob {
    built: crate::build::BuiltJob,
    input_tokens: u64,
    output_tokens: u64,
    cost_estimate: Option<f64>,
}

fn make_client(req: &SubmitRequest) -> Result<OpenAiClient, SubmitError> {
    let key = std::env::var("OPENAI_API_KEY").unwrap_or_default();
    if key.trim().is_empty() {
        return Err(SubmitError::MissingKey);
    }
    let opts = crate::reconcile::client_options().map_err(SubmitError::Invalid)?;
    Ok(OpenAiClient::new(&effective_base_url(req), key, opts)?)
}

/// The base URL a request will use (recorded with the job).
pub fn effective_base_url(req: &SubmitRequest) -> String {
    base_url_or_default(req.base_url.clone())
}

/// `given`, else `OPENAI_BASE_URL` when set and not blank, else OpenAI's own URL.
pub fn base_url_or_default(given: Option<String>) -> String {
    given
        .or_else(|| {
            std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
}

/// Checks the selection SQL with DuckDB's own parser: exactly one statement, and a
/// SELECT (which covers WITH, VALUES and FROM-first queries).
fn check_selection_sql(conn: &Connection, sql: &str) -> Result<(), SubmitError> {
    let json: String =
        conn.query_row("SELECT json_serialize_sql(?::VARCHAR)", params![sql], |r| {
            r.get(0)
        })?;
    let v: serde_json::Value = serde_json::from_str(&json)
        .map_err(|e| SubmitError::BadSelection(format!("could not check it: {e}")))?;
    if v.get("error").and_then(|e| e.as_bool()) == Some(true) {
        let kind = v.get("error_type").and_then(|e| e.as_str()).unwrap_or("");
        let msg = v
            .get("error_message")
            .and_then(|e| e.as_str())
            .unwrap_or("")
            .to_string();
        return Err(SubmitError::BadSelection(if kind == "parser" {
            format!("invalid SQL: {}", cap(&msg, SQL_MESSAGE_CHARS))
        } else {
            "it is not a read-only query (INSERT, UPDATE, DELETE, CREATE, ATTACH, COPY, PRAGMA, SET, ... are refused)".to_string()
        }));
    }
    if let Some(refused) = crate::guard::refused_function(function_names(&v)) {
        return Err(SubmitError::SelectionCalls(refused));
    }
    let n = v
        .get("statements")
        .and_then(|s| s.as_array())
        .map(|a| a.len())
        .unwrap_or(0);
    if n != 1 {
        return Err(SubmitError::BadSelection(format!(
            "found {n} statements, expected exactly one"
        )));
    }
    Ok(())
}

/// Every `function_name` in DuckDB's serialized parse tree (scalar, table, aggregate
/// and macro calls alike).
fn function_names(v: &serde_json::Value) -> Vec<&str> {
    let mut names = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(name)) = map.get("function_name") {
                    names.push(name.as_str());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

/// True for the integer types an `id` column (or a list of ids) may have. Values of
/// the wide ones (UBIGINT, HUGEINT, UHUGEINT) must still fit in a BIGINT, see
/// [`id_out_of_range`].
pub fn is_integer_type(t: duckdb::core::LogicalTypeId) -> bool {
    use duckdb::core::LogicalTypeId::*;
    matches!(
        t,
        Tinyint
            | Smallint
            | Integer
            | Bigint
            | UTinyint
            | USmallint
            | UInteger
            | UBigint
            | Hugeint
            | UHugeint
    )
}

/// An issue id that does not fit in a BIGINT (a HUGEINT or UBIGINT beyond its range),
/// named in the message: it is refused, never wrapped into another id.
pub fn id_out_of_range(value: &str) -> SubmitError {
    SubmitError::Invalid(format!(
        "issue id {} is out of range: issue ids are BIGINT, from {} to {} (check the selection)",
        echo(value),
        i64::MIN,
        i64::MAX
    ))
}

/// Maps an error of running the selection to a message for the user.
fn selection_run_error(what: &str, e: duckdb::Error) -> SubmitError {
    // DuckDB quotes the SQL (identifiers, the line): a pasted 100,000 characters must
    // not come back whole.
    let msg = cap(&e.to_string(), SQL_MESSAGE_CHARS);
    if msg.contains("read-only mode") {
        SubmitError::BadSelection(format!(
            "it is not a read-only query, it tries to write ({msg})"
        ))
    } else {
        SubmitError::BadSelection(format!("DuckDB could not {what} it: {msg}"))
    }
}

/// Runs the selection SQL inside a READ ONLY transaction (so DuckDB itself refuses
/// any write hidden in it: a data-modifying CTE, `nextval`, ...) and returns its
/// `id` column. The ids are few (8 bytes each), so they are collected before the
/// transaction ends; the temp table is filled afterwards.
fn run_selection_sql(conn: &Connection, sql: &str) -> Result<Vec<Option<i64>>, SubmitError> {
    // Rolled back when this function returns, whatever happens (see `store::Tx`).
    let _read_only = store::Tx::begin_read_only(conn)?;
    // From here until the rows are read, every ai_batch function refuses to bind on
    // this thread (see `guard`): the check above cannot see into views or macros.
    let scope = crate::guard::SelectionScope::enter();
    let refused = |e: duckdb::Error, what: &str| match scope.refused() {
        Some(func) => SubmitError::SelectionCalls(crate::guard::Refused::Own(func)),
        None => selection_run_error(what, e),
    };
    let mut stmt = conn.prepare(sql).map_err(|e| refused(e, "prepare"))?;
    let mut rows = stmt.query([]).map_err(|e| refused(e, "run"))?;
    let (idx, ty) = rows
        .as_ref()
        .and_then(|s| {
            s.column_index("id")
                .ok()
                .map(|i| (i, s.column_logical_type(i).id()))
        })
        .ok_or_else(|| {
            SubmitError::BadSelection(
                "it has no column named id (select the issue ids as id, e.g. SELECT id FROM issues WHERE ...)".into(),
            )
        })?;
    let null_typed = ty == duckdb::core::LogicalTypeId::SqlNull;
    if !is_integer_type(ty) && !null_typed {
        return Err(SubmitError::BadSelection(format!(
            "its id column must hold integer issue ids, not {} (select issues.id, or CAST(... AS BIGINT) AS id)",
            format!("{ty:?}").to_uppercase()
        )));
    }
    crate::failpoint::panic_at("selection_read");
    let mut ids = Vec::new();
    while let Some(row) = rows.next().map_err(|e| refused(e, "run"))? {
        // A column of type NULL (`SELECT NULL AS id`) holds nothing but NULLs, and
        // duckdb-rs cannot read one (it panics): NULL ids select nothing.
        let id: Option<i64> = if null_typed {
            None
        } else {
            match row.get::<_, Option<i64>>(idx) {
                Ok(id) => id,
                Err(e) => {
                    use duckdb::types::ValueRef;
                    return Err(match row.get_ref(idx) {
                        Ok(ValueRef::HugeInt(v)) => id_out_of_range(&v.to_string()),
                        Ok(ValueRef::UHugeInt(v)) => id_out_of_range(&v.to_string()),
                        Ok(ValueRef::UBigInt(v)) => id_out_of_range(&v.to_string()),
                        _ => SubmitError::BadSelection(format!(
                            "its id column must hold integer issue ids that fit in a BIGINT ({e})"
                        )),
                    });
                }
            }
        };
        ids.push(id);
    }
    Ok(ids)
}

/// Fills the temp table `ai_batch_sel_raw(id)` from the selection.
fn load_selection(conn: &Connection, req: &SubmitRequest) -> Result<(), SubmitError> {
    // Check the SQL before touching anything.
    if let Selection::Sql(sql) = &req.selection {
        check_selection_sql(conn, sql)?;
    }
    conn.execute_batch("CREATE OR REPLACE TEMP TABLE ai_batch_sel_raw (id BIGINT)")?;
    match &req.selection {
        Selection::Sql(sql) => {
            let ids = run_selection_sql(conn, sql)?;
            let mut app = conn.appender("ai_batch_sel_raw")?;
            for id in ids {
                app.append_row(params![id])?;
            }
            app.flush()?;
        }
        Selection::Ids(ids) => {
            let mut app = conn.appender("ai_batch_sel_raw")?;
            for id in ids {
                app.append_row(params![id])?;
            }
            app.flush()?;
        }
        Selection::All => {
            conn.execute_batch("INSERT INTO ai_batch_sel_raw SELECT id FROM issues")?;
        }
        Selection::Null => {}
    }
    Ok(())
}

/// Classifies the selected ids and fills `ai_batch_todo(id)` with what to submit.
fn classify(
    conn: &Connection,
    req: &SubmitRequest,
    tracked: bool,
) -> Result<SelectionSummary, SubmitError> {
    let (analysed, active) = if tracked {
        (
            "EXISTS (SELECT 1 FROM ai_analyses a WHERE a.issue_id = r.id AND a.processor = $4)",
            "EXISTS (SELECT 1 FROM batch_items b JOIN batch_jobs j ON j.id = b.batch_job_id \
                     WHERE b.issue_id = r.id AND j.processor = $4 AND b.status = 'pending')",
        )
    } else {
        // No tracking tables yet (dry run): nothing analysed, nothing active. $4 is
        // still referenced so that the parameter count does not change.
        ("($4::VARCHAR IS NULL)", "($4::VARCHAR IS NULL)")
    };
    let sql = format!(
        "CREATE OR REPLACE TEMP TABLE ai_batch_sel AS \
         WITH r AS (SELECT DISTINCT id FROM ai_batch_sel_raw WHERE id IS NOT NULL) \
         SELECT r.id, i.id IS NULL AS unknown, \
                (i.id IS NOT NULL AND ($1::VARCHAR IS NULL OR i.org = $1::VARCHAR) \
                                  AND ($2::VARCHAR IS NULL OR i.repo = $2::VARCHAR) \
                                  AND ($3::VARCHAR IS NULL OR i.state = $3::VARCHAR)) AS matches, \
                {analysed} AS analysed, {active} AS active \
         FROM r LEFT JOIN issues i ON i.id = r.id"
    );
    conn.execute(&sql, params![req.org, req.repo, req.state, req.processor])?;
    // missing_analysis filters analysed issues out (not "skipped"); reprocess lets
    // them through; an issue in an active job is never submitted twice.
    let (skip_analysed, drop_analysed) = if req.missing_analysis {
        (false, true)
    } else {
        (!req.reprocess, false)
    };
    let (selected, unknown, filtered_out, sk_analysed, sk_active, filtered_analysed, eligible): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = conn.query_row(
        "SELECT count(*), \
                count(*) FILTER (WHERE unknown), \
                count(*) FILTER (WHERE NOT unknown AND NOT matches), \
                count(*) FILTER (WHERE matches AND analysed AND $1 AND NOT active), \
                count(*) FILTER (WHERE matches AND active), \
                count(*) FILTER (WHERE matches AND analysed AND $2 AND NOT active), \
                count(*) FILTER (WHERE matches AND NOT active AND NOT (analysed AND ($1 OR $2))) \
         FROM ai_batch_sel",
        params![skip_analysed, drop_analysed],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        },
    )?;
    let take = req.max_issues.map(|m| m.min(eligible)).unwrap_or(eligible);
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE ai_batch_todo AS \
         SELECT id FROM ai_batch_sel \
         WHERE matches AND NOT active AND NOT (analysed AND ($1 OR $2)) \
         ORDER BY id LIMIT $3",
        params![skip_analysed, drop_analysed, take],
    )?;
    let unknown_sample: Vec<i64> = {
        let mut stmt =
            conn.prepare("SELECT id FROM ai_batch_sel WHERE unknown ORDER BY id LIMIT 5")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    Ok(SelectionSummary {
        selected,
        unknown_ids: unknown,
        unknown_sample,
        filtered_out: filtered_out + filtered_analysed,
        skipped_analysed: sk_analysed,
        skipped_active: sk_active,
        over_max: eligible - take,
        to_submit: take,
    })
}

fn drop_temp(conn: &Connection) {
    let _ = conn.execute_batch(
        "DROP TABLE IF EXISTS temp.ai_batch_sel_raw; DROP TABLE IF EXISTS temp.ai_batch_sel; \
         DROP TABLE IF EXISTS temp.ai_batch_todo;",
    );
}

/// The built-in batch prices, overridden by rows of a user table `ai_batch_prices(model,
/// input_per_mtok, output_per_mtok)` when it exists.
pub fn price_table(conn: &Connection) -> Result<PriceTable, SubmitError> {
    let table = PriceTable::builtin();
    if !store::table_exists(conn, "ai_batch_prices")? {
        return Ok(table);
    }
    let mut stmt = conn.prepare(
        "SELECT model::VARCHAR, input_per_mtok::DOUBLE, output_per_mtok::DOUBLE FROM ai_batch_prices",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ModelPrice {
            model: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            input_per_mtok: r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
            output_per_mtok: r.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
        })
    })?;
    let rows: Vec<ModelPrice> = rows.collect::<Result<_, _>>()?;
    table
        .with_overrides(rows)
        .map_err(|e| SubmitError::Invalid(format!("ai_batch_prices: {e}")))
}

/// The price row for `model` and a note for the user when the estimate is partial
/// (no exact tokenizer, or no price).
fn price_and_note(prices: &PriceTable, model: &str) -> (Option<ModelPrice>, Option<String>) {
    let mut notes = Vec::new();
    let (encoding, exact) = cost::Encoding::for_model_or_approx(model);
    if !exact {
        notes.push(format!(
            "tokens counted with {} as an approximation: no tokenizer is known for model '{}'",
            encoding.name(),
            echo(model)
        ));
    }
    let price = match prices.lookup(model) {
        Ok(m) => {
            if m.kind == cost::MatchKind::Prefix {
                notes.push(format!(
                    "priced as '{}' (closest known model)",
                    m.price.model
                ));
            }
            Some(m.price.clone())
        }
        Err(no) => {
            notes.push(no.to_string());
            None
        }
    };
    (price, (!notes.is_empty()).then(|| notes.join("; ")))
}

fn output_history_average(
    conn: &Connection,
    processor: &str,
    model: &str,
) -> Result<Option<f64>, SubmitError> {
    let avg: Option<f64> = conn.query_row(
        "SELECT CASE WHEN count(output_tokens) >= ? THEN avg(output_tokens) END \
         FROM ai_analyses WHERE processor = ? AND model = ?",
        params![MIN_HISTORY_FOR_OUTPUT_AVERAGE, processor, model],
        |r| r.get(0),
    )?;
    Ok(avg)
}

/// A new human-usable job id: `job_YYYYMMDD_HHMMSS_xxxxxx`.
pub fn new_job_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, mo, d, h, mi, s) = civil_from_unix(now);
    format!("job_{y:04}{mo:02}{d:02}_{h:02}{mi:02}{s:02}_{suffix}")
}

/// UTC calendar fields of a Unix time (Howard Hinnant's days-from-civil inverse).
pub(crate) fn civil_from_unix(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, m, d, secs / 3600, (secs % 3600) / 60, secs % 60)
}

/// Commits one job and its pending items in one transaction. Returns the job's primary
/// key. `skipped`: the selection-level skipped count, recorded on the first job of a
/// submit only, so that summing skipped_count over jobs counts each issue once.
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
    let base_url = effective_base_url(req);
    store::in_transaction(conn, || -> Result<i64, SubmitError> {
        store::processors::record(conn, proc_)?;
        let pk: i64 = conn.query_row(
            "INSERT INTO batch_jobs (job_id, provider, processor, processor_version, model, status, \
                issues_count, skipped_count, cost_estimate, estimated_input_tokens, \
                estimated_output_tokens, selection_query, options, base_url, retry_of, updated_at) \
             VALUES (?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp) RETURNING id",
            params![
                p.built.job_id,
                req.provider,
                proc_.name(),
                proc_.version(),
                req.model,
                p.built.issue_ids.len() as i64,
                skipped,
                p.cost_estimate,
                p.input_tokens as i64,
                p.output_tokens as i64,
                selection,
                options,
                base_url,
                req.retry_of,
            ],
            |r| r.get(0),
        )?;
        let mut app = conn.appender_with_columns(
            "batch_items",
            &[
                "batch_job_id",
                "issue_id",
                "custom_id",
                "status",
                "estimated_input_tokens",
                "attempts",
            ],
        )?;
        for (id, tokens) in p.built.issue_ids.iter().zip(&p.built.tokens) {
            let attempts = req.prior_attempts.get(id).copied().unwrap_or(0) + 1;
            app.append_row(params![
                pk,
                id,
                custom_id(&p.built.job_id, *id),
                "pending",
                *tokens as i64,
                attempts
            ])?;
        }
        app.flush()?;
        Ok(pk)
    })
}

/// Uploads and creates one job's batch, recording each id as soon as it is known.
/// Ok: (provider status, batch id). Err: (job status now, message).
fn send_job(
    conn: &Connection,
    client: &OpenAiClient,
    job_pk: i64,
    job_id: &str,
    path: &std::path::Path,
) -> Result<(String, String), (String, String)> {
    let db = |e: duckdb::Error| {
        (
            "created".to_string(),
            format!(
                "could not record progress in batch_jobs: {e} (run batch_refresh() to reconcile)"
            ),
        )
    };
    let file = match client.upload_batch_file(path, &format!("{job_id}.jsonl")) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!(
                "upload failed, no batch was created: {e} (fix the cause, then batch_retry('{job_id}'))"
            );
            store::fail_job(conn, job_pk, "upload_failed", &msg).map_err(db)?;
            return Err(("failed".into(), msg));
        }
    };
    crate::failpoint::hit("submit_after_upload");
    store::job_uploaded(conn, job_pk, &file.id).map_err(db)?;
    crate::failpoint::hit("submit_after_upload_recorded");
    match crate::reconcile::create_batch(conn, client, job_pk, job_id, &file.id) {
        Ok(batch) => {
            crate::failpoint::hit("submit_after_create");
            let status = batch.status.to_string();
            store::job_created(conn, job_pk, &batch.id, &status).map_err(db)?;
            Ok((status, batch.id))
        }
        Err(e) if e.may_have_reached_provider() => {
            let msg = format!(
                "creating the batch may have reached OpenAI but no answer came back: {e} \
                 (batch_refresh() looks the batch up by job id and input file, and does not create \
                 it again while this create may still land; nothing is sent twice)"
            );
            store::job_error(conn, job_pk, &msg).map_err(db)?;
            Err(("uploaded".into(), msg))
        }
        Err(e) => {
            let msg = format!(
                "creating the batch failed, no batch was created: {e}; {} (fix the cause, then batch_retry('{job_id}'))",
                crate::reconcile::delete_unused_input(client, &file.id)
            );
            store::fail_job(conn, job_pk, "create_failed", &msg).map_err(db)?;
            Err(("failed".into(), msg))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_from_unix(1_767_261_600), (2026, 1, 1, 10, 0, 0));
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
    }

    #[test]
    fn job_ids_are_valid_and_distinct() {
        let a = new_job_id();
        let b = new_job_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert!(id.starts_with("job_"));
            ai_batch_core::requests::validate_job_id(id).unwrap();
            assert!(ai_batch_core::requests::is_valid_custom_id(&custom_id(
                id,
                i64::MAX
            )));
        }
    }

    #[test]
    fn validation_messages() {
        let mut r = SubmitRequest::new("nope", Selection::Ids(vec![1]));
        assert!(r.validate().unwrap_err().to_string().contains("nope"));
        r.processor = "product-labeling".into();
        r.validate().unwrap();
        // '*' is explicit: it needs no filter.
        r.selection = Selection::All;
        r.validate().unwrap();
        r.selection = Selection::Null;
        r.validate().unwrap();
        r.org = Some("acme".into());
        r.validate().unwrap();
        r.max_issues = Some(0);
        assert!(r.validate().unwrap_err().to_string().contains("max_issues"));
        r.max_issues = None;
        r.temperature = Some(5.0);
        assert!(r.validate().is_err());
        r.temperature = None;
        r.provider = "acme-ai".into();
        assert!(r.validate().unwrap_err().to_string().contains("acme-ai"));
    }

    #[test]
    fn model_prefix_picks_the_provider() {
        let mut r = SubmitRequest::new("product-labeling", Selection::All);
        r.set_model_and_provider(Some("openai:gpt-4o-mini".into()), None)
            .unwrap();
        assert_eq!(
            (r.model.as_str(), r.provider.as_str()),
            ("gpt-4o-mini", "openai")
        );
        r.validate().unwrap();
        // Fine-tuned names keep their colons.
        r.set_model_and_provider(Some("ft:gpt-4o-mini:acme::abc".into()), None)
            .unwrap();
        assert_eq!(r.model, "ft:gpt-4o-mini:acme::abc");
        r.set_model_and_provider(Some("gpt-4.1".into()), Some(" OpenAI ".into()))
            .unwrap();
        assert_eq!(
            (r.model.as_str(), r.provider.as_str()),
            ("gpt-4.1", "openai")
        );
        let mut a = SubmitRequest::new("product-labeling", Selection::All);
        a.set_model_and_provider(Some("anthropic:claude-sonnet-4-5".into()), None)
            .unwrap();
        assert_eq!(a.model, "claude-sonnet-4-5");
        let msg = a.validate().unwrap_err().to_string();
        assert!(
            msg.contains("provider anthropic is not supported yet"),
            "{msg}"
        );
        let clash = a
            .set_model_and_provider(Some("anthropic:x".into()), Some("openai".into()))
            .unwrap_err()
            .to_string();
        assert!(clash.contains("names provider anthropic"), "{clash}");
    }

    #[test]
    fn reasoning_effort_needs_a_reasoning_model() {
        let mut r = SubmitRequest::new("product-labeling", Selection::All);
        r.reasoning_effort = Some("high".into());
        let msg = r.validate().unwrap_err().to_string();
        assert!(msg.contains("only for reasoning models"), "{msg}");
        r.model = "o4-mini".into();
        r.validate().unwrap();
        r.reasoning_effort = Some("turbo".into());
        assert!(r.validate().unwrap_err().to_string().contains("turbo"));
    }

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
