//! Building the request files of a submit, streaming.
//!
//! Issues are read from the database in id order, a batch at a time (keyset
//! pagination over the temp table `ai_batch_todo`), so memory holds one batch, not
//! the selection. Each batch's user messages are rendered and their tokens counted on
//! every core; the lines are then serialised in order and written straight to the
//! current shard's spool file. A new shard (and so a new job id) starts whenever the
//! provider's per-batch limits would be crossed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ai_batch_core::cost::{par_map, RequestTokenCounter, TokenEstimate};
use ai_batch_core::processor::{CommentInput, IssueInput, Processor};
use ai_batch_core::provider::Format;
use ai_batch_core::requests::{
    custom_id, validate_job_id, RequestOptions, ShardStep, Sharder, DEFAULT_SHARD_BYTES,
};
use duckdb::{params, Connection};

use crate::jobid::new_job_id;
use crate::store;

/// Why building the request files failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("could not build the requests: {0}")]
    Build(String),
    #[error("could not write the request file: {0}")]
    Spool(String),
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
}

/// Issues read from the database per round trip.
pub const READ_BATCH: i64 = 16_384;

/// One job's worth of requests.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltJob {
    /// The job id every custom id of this file carries.
    pub job_id: String,
    /// The spool file (None for a dry run, which writes nothing).
    pub path: Option<PathBuf>,
    /// The issues, in line order.
    pub issue_ids: Vec<i64>,
    /// Input tokens of each request, in line order.
    pub tokens: Vec<u64>,
    /// Bytes of the request file.
    pub bytes: u64,
    /// The lock on the spool file, held until the file is removed (see `spool`).
    pub lock: Option<crate::spool::SpoolLock>,
}

impl BuiltJob {
    /// Input tokens of the whole job.
    pub fn input_tokens(&self) -> u64 {
        self.tokens.iter().sum()
    }
}

fn build_err(e: impl std::fmt::Display) -> BuildError {
    BuildError::Build(e.to_string())
}

fn spool_err(path: &Path, e: std::io::Error) -> BuildError {
    BuildError::Spool(format!("{}: {e}", path.display()))
}

/// A shard being written.
struct Open {
    job: BuiltJob,
    file: Option<BufWriter<File>>,
    /// Deletes the spool file if the build stops before the shard is closed.
    _unfinished: RemoveOnDrop,
}

/// Removes a file when dropped, unless disarmed (set to None).
pub(crate) struct RemoveOnDrop(pub(crate) Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Open {
    fn new(spool: Option<&Path>) -> Result<Self, BuildError> {
        let job_id = new_job_id();
        validate_job_id(&job_id).map_err(build_err)?;
        let (path, file, lock) = match spool {
            Some(dir) => {
                let (path, f, lock) = crate::spool::create(dir, &job_id)
                    .map_err(|e| spool_err(&dir.join(format!("{job_id}.jsonl")), e))?;
                (Some(path), Some(BufWriter::with_capacity(1 << 20, f)), lock)
            }
            None => (None, None, None),
        };
        Ok(Open {
            _unfinished: RemoveOnDrop(path.clone()),
            job: BuiltJob {
                job_id,
                path,
                issue_ids: Vec::new(),
                tokens: Vec::new(),
                bytes: 0,
                lock,
            },
            file,
        })
    }

    fn write(&mut self, line: &[u8], issue_id: i64, tokens: u64) -> Result<(), BuildError> {
        if let (Some(f), Some(p)) = (self.file.as_mut(), self.job.path.as_ref()) {
            f.write_all(line).map_err(|e| spool_err(p, e))?;
        }
        self.job.issue_ids.push(issue_id);
        self.job.tokens.push(tokens);
        self.job.bytes += line.len() as u64;
        Ok(())
    }

    fn close(mut self) -> Result<BuiltJob, BuildError> {
        if let (Some(f), Some(p)) = (self.file, self.job.path.as_ref()) {
            // No fsync: a spool file lost in a crash is rebuilt by batch_retry (the job
            // is then `created`, which refresh marks interrupted).
            f.into_inner().map_err(|e| spool_err(p, e.into_error()))?;
        }
        self._unfinished.0 = None; // complete: the caller owns the file now
        Ok(self.job)
    }
}

/// Where the build's time went, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BuildTimes {
    /// Reading issues, labels and comments from the database.
    pub read: f64,
    /// Rendering user messages and counting their tokens (on every core).
    pub render_count: f64,
    /// Serialising JSONL lines and writing them to the spool files.
    pub write: f64,
}

/// Builds the request files for the issues in `ai_batch_todo`. `spool` None: a dry
/// run (lines are built and counted, nothing is written). Each job is handed to
/// `on_job` as soon as its file is complete, so the caller can record and send it while
/// the next one is built. `on_job`'s errors stop the build and come back as they are.
#[allow(clippy::too_many_arguments)]
pub fn build_requests<E: From<BuildError>>(
    conn: &Connection,
    format: &dyn Format,
    processor: &Processor,
    opts: &RequestOptions,
    max_requests_per_job: Option<usize>,
    spool: Option<&Path>,
    times: &mut BuildTimes,
    on_job: &mut dyn FnMut(BuiltJob) -> Result<(), E>,
) -> Result<(), E> {
    let method = TokenEstimate::for_model(&opts.model);
    let counter = RequestTokenCounter::new(processor, method.encoding).map_err(build_err)?;
    let limits = format.limits();
    let mut sharder = Sharder::with_limits(
        max_requests_per_job.unwrap_or(limits.max_requests),
        limits.max_bytes.min(DEFAULT_SHARD_BYTES),
    );
    let reader = IssueReader::new(conn)?;
    let mut open = Open::new(spool)?;
    let mut line: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut after = i64::MIN;
    loop {
        let t0 = std::time::Instant::now();
        let (issues, last) = reader.read_after(conn, after)?;
        times.read += t0.elapsed().as_secs_f64();
        let Some(last) = last else {
            break;
        };
        after = last;
        // Render and count on every core; serialise in order on this thread.
        let t1 = std::time::Instant::now();
        let rendered = par_map(
            &issues,
            |i| {
                i.title.len()
                    + i.body.as_ref().map_or(0, String::len)
                    + i.comments.iter().map(|c| c.body.len()).sum::<usize>()
            },
            |i| {
                let text = processor.user_message(i).text;
                let tokens = method.scale(counter.count_user_text(&text) as u64);
                (text, tokens)
            },
        );
        let t2 = std::time::Instant::now();
        times.render_count += (t2 - t1).as_secs_f64();
        // One JSONL line for `issue` in job `job_id`, into `line`.
        let render = |line: &mut Vec<u8>, job_id: &str, issue_id: i64, text: &str| {
            line.clear();
            format
                .write_line(line, &custom_id(job_id, issue_id), processor, text, opts)
                .map(|_| ())
                .map_err(build_err)
        };
        for (issue, (text, tokens)) in issues.iter().zip(rendered) {
            render(&mut line, &open.job.job_id, issue.id, &text)?;
            if sharder.push(issue.id, line.len()).map_err(build_err)? == ShardStep::StartNew {
                let next = Open::new(spool)?;
                on_job(std::mem::replace(&mut open, next).close()?)?;
                // The custom id carries the job id: write the line again for the new job.
                render(&mut line, &open.job.job_id, issue.id, &text)?;
            }
            open.write(&line, issue.id, tokens)?;
        }
        times.write += t2.elapsed().as_secs_f64();
    }
    if !open.job.issue_ids.is_empty() {
        on_job(open.close()?)?;
    } // else: dropping the empty shard removes its file
    Ok(())
}

/// Reads the issues to submit with their labels and comments, a batch at a time.
struct IssueReader {
    issues: String,
    labels: Option<&'static str>,
    comments: Option<&'static str>,
}

impl IssueReader {
    /// Prepares the batch queries: the next `READ_BATCH` ids of `ai_batch_todo` joined
    /// to their issue, then the labels and the comments of just those ids as flat
    /// streams in (issue id, order) order, merged here. Flat streams cost DuckDB a
    /// fraction of aggregating each issue's comments into JSON (0.2 s against 0.7 s for
    /// 50,000 issues) and need no JSON parsing afterwards. Never a correlated subquery
    /// per issue: it would rescan the comments for every batch.
    fn new(conn: &Connection) -> Result<Self, BuildError> {
        let labels = store::table_exists(conn, "labels")?.then_some(
            "SELECT l.issue_id, coalesce(l.name, '') FROM labels l \
             SEMI JOIN (SELECT id FROM ai_batch_todo WHERE id > ? AND id <= ?) t ON t.id = l.issue_id \
             ORDER BY l.issue_id, l.name",
        );
        let comments = store::table_exists(conn, "comments")?.then_some(
            "SELECT c.issue_id, coalesce(c.author_login, ''), coalesce(c.body, '') FROM comments c \
             SEMI JOIN (SELECT id FROM ai_batch_todo WHERE id > ? AND id <= ?) t ON t.id = c.issue_id \
             ORDER BY c.issue_id, c.position",
        );
        // `author_login` is optional: an issues table made before it was read (or by hand)
        // still submits, with an empty `{{author}}`. Decided once per build.
        let author = if store::column_exists(conn, "issues", "author_login")? {
            "coalesce(i.author_login, '')"
        } else {
            "''"
        };
        Ok(IssueReader {
            issues: format!(
                "WITH t AS (SELECT id FROM ai_batch_todo WHERE id > ? ORDER BY id LIMIT {READ_BATCH}) \
                 SELECT t.id, coalesce(i.org, ''), coalesce(i.repo, ''), coalesce(i.number, 0)::BIGINT, \
                        coalesce(i.title, ''), i.body, coalesce(i.state, ''), i.id IS NULL AS gone, \
                        {author} \
                 FROM t LEFT JOIN issues i ON i.id = t.id \
                 ORDER BY t.id"
            ),
            labels,
            comments,
        })
    }

    /// The next batch after issue id `after`, and the last id of the batch (None when
    /// done). An issue deleted since it was selected is passed over.
    fn read_after(
        &self,
        conn: &Connection,
        after: i64,
    ) -> Result<(Vec<IssueInput>, Option<i64>), BuildError> {
        let mut out: Vec<IssueInput> = Vec::with_capacity(READ_BATCH as usize);
        let mut last = None;
        {
            let mut stmt = conn.prepare_cached(&self.issues)?;
            let mut rows = stmt.query(params![after])?;
            while let Some(r) = rows.next()? {
                last = Some(r.get::<_, i64>(0)?);
                if r.get::<_, bool>(7)? {
                    continue;
                }
                out.push(IssueInput {
                    id: r.get(0)?,
                    org: r.get(1)?,
                    repo: r.get(2)?,
                    number: r.get(3)?,
                    author: r.get(8)?,
                    title: r.get(4)?,
                    body: r.get(5)?,
                    state: r.get(6)?,
                    labels: Vec::new(),
                    comments: Vec::new(),
                });
            }
        }
        let Some(last) = last else {
            return Ok((out, None));
        };
        if let Some(sql) = self.labels {
            merge_rows(conn, sql, (after, last), &mut out, |issue, r| {
                issue.labels.push(r.get(1)?);
                Ok(())
            })?;
        }
        if let Some(sql) = self.comments {
            merge_rows(conn, sql, (after, last), &mut out, |issue, r| {
                issue.comments.push(CommentInput {
                    author: r.get(1)?,
                    body: r.get(2)?,
                });
                Ok(())
            })?;
        }
        Ok((out, Some(last)))
    }
}

/// Runs `sql` for the ids in `(after, last]`, whose rows start with an issue id and come
/// in issue id order, and hands each row to `add` with its issue: `issues` is in id
/// order too, so both are walked together. Rows of an issue that is not in `issues`
/// (deleted since it was selected) are passed over.
fn merge_rows(
    conn: &Connection,
    sql: &str,
    (after, last): (i64, i64),
    issues: &mut [IssueInput],
    mut add: impl FnMut(&mut IssueInput, &duckdb::Row<'_>) -> duckdb::Result<()>,
) -> Result<(), BuildError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params![after, last])?;
    let mut at = 0;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        while issues.get(at).is_some_and(|i| i.id < id) {
            at += 1;
        }
        if let Some(issue) = issues.get_mut(at).filter(|i| i.id == id) {
            add(issue, r)?;
        }
    }
    Ok(())
}
