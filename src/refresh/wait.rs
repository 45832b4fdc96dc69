//! `batch_wait`: `batch_refresh` again and again, with backoff, until every job (or the
//! one named) is collected, the timeout passes, or the query is interrupted (Ctrl-C,
//! see `crate::interrupt`). Each round is a whole refresh: queued jobs are sent as room
//! frees, and between rounds nothing is held — no connection, no claim, no lock, no
//! transaction — so other connections work as usual while it sleeps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{refresh, RefreshError, RefreshRow};
use crate::runtime::Runtime;
use crate::store;

/// The first pause between rounds; it doubles up to [`MAX_PAUSE`] while no job moves.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between rounds.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// How often a pause looks at Ctrl-C and at the database being closed.
const SLICE: Duration = Duration::from_millis(50);

/// The pause after `round` rounds (0-based): 250 ms doubling, at most a minute.
fn pause(round: u32) -> Duration {
    FIRST_PAUSE
        .saturating_mul(1u32.checked_shl(round.min(16)).unwrap_or(u32::MAX))
        .min(MAX_PAUSE)
}

/// Waits as the module docs say; returns the last row of every job a round touched,
/// in the order they first came. A job still active at the timeout says so.
pub(crate) fn wait(
    rt: &Arc<Runtime>,
    job_id: Option<&str>,
    timeout: Duration,
) -> Result<Vec<RefreshRow>, RefreshError> {
    let watch = crate::interrupt::Watch::start();
    let deadline = Instant::now() + timeout;
    let mut rows: Vec<RefreshRow> = Vec::new();
    let mut round = 0u32;
    loop {
        // A round that moved a job starts the backoff again: the next step may be near.
        let mut moved = false;
        for r in refresh(rt, job_id)? {
            moved |= r.old_status != r.new_status || r.applied > 0;
            match rows.iter_mut().find(|o| o.job_id == r.job_id) {
                Some(o) => *o = r,
                None => rows.push(r),
            }
        }
        if moved {
            round = 0;
        }
        if all_collected(rt, job_id)? {
            return Ok(rows);
        }
        let now = Instant::now();
        if now >= deadline {
            let secs = timeout.as_secs_f64();
            for r in &mut rows {
                r.message = format!(
                    "{}; batch_wait: timed out after {secs} s with the job still {} (run \
                     batch_wait() again to go on waiting)",
                    r.message, r.new_status
                );
            }
            return Ok(rows);
        }
        let until = deadline.min(now + pause(round));
        while Instant::now() < until {
            if watch.fired() || rt.is_released() {
                return Err(RefreshError::Invalid(
                    "interrupted: stopped waiting; the jobs keep running at the provider \
                     (batch_refresh() or batch_wait() goes on from where they are)"
                        .into(),
                ));
            }
            std::thread::sleep(SLICE.min(until.saturating_duration_since(Instant::now())));
        }
        round += 1;
    }
}

/// Whether nothing is left to wait for: every job collected, or the named one.
fn all_collected(rt: &Arc<Runtime>, job_id: Option<&str>) -> Result<bool, RefreshError> {
    let conn = rt.lease()?;
    Ok(match job_id {
        Some(id) => store::tracked_job(&conn, id)?.collected,
        None => store::uncollected_jobs(&conn)?.is_empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_up_to_a_minute() {
        assert_eq!(pause(0), Duration::from_millis(250));
        assert_eq!(pause(1), Duration::from_millis(500));
        assert_eq!(pause(4), Duration::from_secs(4));
        assert_eq!(pause(8), Duration::from_secs(60));
        assert_eq!(pause(u32::MAX), Duration::from_secs(60));
    }
}
