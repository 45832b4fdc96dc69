//! Per-database-instance state: the extension's own connections, and the watchdog
//! that gives them back so the database can close.
//!
//! A C-API extension can open connections only inside its entrypoint, and every
//! connection it keeps holds the database instance alive (file lock held, WAL not
//! checkpointed, a same-process re-open spinning forever). So, per instance:
//!
//! - a fixed pool of connections opened at `LOAD`, lent to SQL functions one at a time;
//! - a watchdog thread with its own connection that polls `duckdb_connection_count()`.
//!   When, on two consecutive polls, the count is no more than our own connections,
//!   the user has closed theirs: we close ours (idle ones at once, lent ones when they
//!   come back, the watchdog's last), and DuckDB tears the instance down.
//! - a process-exit hook that asks every live watchdog to release now (bounded wait),
//!   so the CLI leaves no WAL behind.
//!
//! After release every function answers with a clear error instead of touching a
//! closed handle. `AI_BATCH_AUTO_RELEASE=0` at `LOAD` turns the watchdog's automatic
//! release off (for hosts that keep a database open with zero connections);
//! `batch_release()` releases explicitly.

use std::collections::HashSet;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duckdb::Connection;

/// How many connections the extension keeps for its own SQL.
pub const POOL_SIZE: usize = 4;
/// How often the watchdog asks DuckDB how many connections are open.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a caller waits for a free connection before giving up.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the process-exit hook waits for each instance to release.
const EXIT_WAIT: Duration = Duration::from_secs(3);

/// Why a connection could not be lent.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the database this extension was loaded into has been closed or released (close all connections, reopen the database and LOAD ai_batch again)")]
    Released,
    #[error("all {POOL_SIZE} of ai_batch's connections stayed busy for {} s (too many ai_batch calls at once; try again)", CHECKOUT_TIMEOUT.as_secs())]
    Busy,
    #[error("ai_batch has no usable connection left: each was closed after a failure left it in a state that could not be trusted (close all connections, reopen the database and LOAD ai_batch again)")]
    NoneLeft,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Connection>,
    lent: usize,
    released: bool,
}

/// Shared by every SQL function of one database instance (cloned into their extra info).
pub struct Runtime {
    pool: Mutex<PoolState>,
    returned: Condvar,
    /// Wakes the watchdog early (release requests).
    wake: Condvar,
    wake_lock: Mutex<bool>,
    auto_release: bool,
    watchdog: Mutex<Option<JoinHandle<()>>>,
    /// Serialises the extension's writers so two submits never interleave their
    /// skip check and their item inserts (see `store`).
    pub write_lock: Mutex<()>,
    /// Job ids a call of this instance is working on right now (a submit sending
    /// them, a refresh or cancel reconciling or collecting them). Only one process
    /// can open a database for writing, so a job in `created` / `uploaded` that is
    /// not claimed here was interrupted, and one that is claimed must be left alone.
    in_flight: Mutex<HashSet<String>>,
    released_flag: AtomicBool,
}

/// A claim on one job id, held while a call works on it; released on drop.
pub struct JobClaim {
    runtime: Arc<Runtime>,
    job_id: String,
}

impl Drop for JobClaim {
    fn drop(&mut self) {
        lock(&self.runtime.in_flight).remove(&self.job_id);
    }
}

/// A pool connection on loan; it goes back to the pool (or is closed, after
/// release) when dropped.
pub struct Lease {
    conn: Option<Connection>,
    runtime: Arc<Runtime>,
}

impl Deref for Lease {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // `conn` is Some from construction until drop.
        match &self.conn {
            Some(c) => c,
            None => unreachable_conn(),
        }
    }
}

#[cold]
fn unreachable_conn() -> ! {
    // Only reachable if `Lease` were used after drop, which the type system forbids.
    std::process::abort()
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A panic may have stopped anywhere, halfway through a statement or a
            // transaction: such a connection is closed, not lent again.
            let trusted = !std::thread::panicking();
            self.runtime.give_back(conn, trusted);
        }
    }
}

/// Whether a connection coming back to the pool is clean: not inside a transaction
/// (a `ROLLBACK` answers "no transaction is active"). One left open by a failure is
/// rolled back here; one that cannot even answer that is not trusted.
fn is_clean(conn: &Connection) -> bool {
    match conn.execute_batch("ROLLBACK") {
        // A transaction was still open (no code path should leave one; `store::Tx`
        // rolls back on drop). Rolled back now: the connection is clean again.
        Ok(()) => true,
        Err(e) => e.to_string().contains("no transaction is active"),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of our locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runtime {
    /// Opens the pool and starts the watchdog. Must run inside the entrypoint.
    pub fn start(conn: &Connection) -> duckdb::Result<Arc<Runtime>> {
        let mut idle = Vec::with_capacity(POOL_SIZE);
        for _ in 0..POOL_SIZE {
            idle.push(conn.try_clone()?);
        }
        let watch_conn = conn.try_clone()?;
        let auto_release = !matches!(
            std::env::var("AI_BATCH_AUTO_RELEASE").as_deref(),
            Ok("0") | Ok("false") | Ok("off")
        );
        let rt = Arc::new(Runtime {
            pool: Mutex::new(PoolState {
                idle,
                lent: 0,
                released: false,
            }),
            returned: Condvar::new(),
            wake: Condvar::new(),
            wake_lock: Mutex::new(false),
            auto_release,
            watchdog: Mutex::new(None),
            write_lock: Mutex::new(()),
            in_flight: Mutex::new(HashSet::new()),
            released_flag: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&rt);
        let handle = std::thread::Builder::new()
            .name("ai_batch-watchdog".into())
            .spawn(move || watchdog(weak, watch_conn))
            .map_err(|e| duckdb::Error::ToSqlConversionFailure(Box::new(e)))?;
        *lock(&rt.watchdog) = Some(handle);
        register_for_exit(&rt);
        Ok(rt)
    }

    /// Lends a connection, waiting for one to come back if all are busy.
    pub fn lease(self: &Arc<Self>) -> Result<Lease, RuntimeError> {
        let deadline = Instant::now() + CHECKOUT_TIMEOUT;
        let mut st = lock(&self.pool);
        loop {
            if st.released {
                return Err(RuntimeError::Released);
            }
            if let Some(lease) = self.take_idle(&mut st) {
                return Ok(lease);
            }
            if st.lent == 0 {
                // Nothing idle and nothing out on loan: none will come back.
                return Err(RuntimeError::NoneLeft);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RuntimeError::Busy);
            }
            st = match self.returned.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Lends a connection if one is idle right now; `None` otherwise (never waits, so a
    /// call that already holds a lease cannot deadlock on a second one).
    pub fn try_lease(self: &Arc<Self>) -> Option<Lease> {
        let mut st = lock(&self.pool);
        if st.released {
            return None;
        }
        self.take_idle(&mut st)
    }

    /// Lends an idle connection of the (locked) pool, if there is one.
    fn take_idle(self: &Arc<Self>, st: &mut PoolState) -> Option<Lease> {
        let conn = st.idle.pop()?;
        st.lent += 1;
        Some(Lease {
            conn: Some(conn),
            runtime: Arc::clone(self),
        })
    }

    fn give_back(&self, conn: Connection, trusted: bool) {
        let keep = trusted && is_clean(&conn);
        let mut st = lock(&self.pool);
        st.lent = st.lent.saturating_sub(1);
        if st.released || !keep {
            drop(st);
            drop(conn); // closes it, outside the lock
                        // A caller waiting for a connection must learn if none is left.
            self.returned.notify_all();
        } else {
            st.idle.push(conn);
            drop(st);
            self.returned.notify_one();
        }
    }

    /// Claims `job_id` for the caller; `None` when another call holds it.
    pub fn claim_job(self: &Arc<Self>, job_id: &str) -> Option<JobClaim> {
        if !lock(&self.in_flight).insert(job_id.to_string()) {
            return None;
        }
        Some(JobClaim {
            runtime: Arc::clone(self),
            job_id: job_id.to_string(),
        })
    }

    /// True once the pool has been given back.
    pub fn is_released(&self) -> bool {
        self.released_flag.load(Ordering::SeqCst)
    }

    /// Whether the watchdog releases automatically when the user's connections close.
    pub fn auto_release(&self) -> bool {
        self.auto_release
    }

    /// Asks the watchdog to release now (explicit `batch_release()` or process exit).
    pub fn request_release(&self) {
        let mut w = lock(&self.wake_lock);
        *w = true;
        drop(w);
        self.wake.notify_all();
    }

    /// Releases now and waits (bounded) until it is done, so that the very next call
    /// already sees the released state (`batch_release()`).
    pub fn release_now(&self) {
        self.request_release();
        self.join_watchdog(EXIT_WAIT);
    }

    /// Waits (bounded) for the watchdog thread to finish.
    fn join_watchdog(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let finished = lock(&self.watchdog)
                .as_ref()
                .map(|h| h.is_finished())
                .unwrap_or(true);
            if finished {
                if let Some(h) = lock(&self.watchdog).take() {
                    let _ = h.join();
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Marks the pool released and closes the idle connections (outside the lock).
    fn release_pool(&self) {
        let idle = {
            let mut st = lock(&self.pool);
            st.released = true;
            std::mem::take(&mut st.idle)
        };
        self.released_flag.store(true, Ordering::SeqCst);
        self.returned.notify_all();
        drop(idle);
    }

    fn own_connections(&self) -> u64 {
        let st = lock(&self.pool);
        (st.idle.len() + st.lent + 1) as u64 // + the watchdog's
    }
}

fn connection_count(conn: &Connection) -> Option<u64> {
    let mut stmt = conn
        .prepare_cached("SELECT count FROM duckdb_connection_count()")
        .ok()?;
    stmt.query_row([], |r| r.get::<_, u64>(0)).ok()
}

/// The watchdog loop: polls the connection count, releases when only ours remain.
fn watchdog(rt: Weak<Runtime>, conn: Connection) {
    let mut idle_polls = 0u32;
    loop {
        let Some(rt) = rt.upgrade() else {
            break;
        };
        // Sleep, unless a release was requested.
        let requested = {
            let w = lock(&rt.wake_lock);
            let (w, _) = match rt.wake.wait_timeout_while(w, POLL_INTERVAL, |req| !*req) {
                Ok(x) => x,
                Err(e) => e.into_inner(),
            };
            *w
        };
        if requested {
            rt.release_pool();
            break;
        }
        if !rt.auto_release {
            continue;
        }
        let own = rt.own_connections();
        match connection_count(&conn) {
            Some(n) if n <= own => idle_polls += 1,
            _ => idle_polls = 0, // poll errors count as "not idle"
        }
        if idle_polls >= 2 {
            rt.release_pool();
            break;
        }
    }
    // Closing the last connection tears the instance down on this thread.
    drop(conn);
}

/// Live instances, for the process-exit hook. Weak: statics must not keep an
/// instance (or its connections) alive.
fn live() -> &'static Mutex<Vec<Weak<Runtime>>> {
    static LIVE: OnceLock<Mutex<Vec<Weak<Runtime>>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(Vec::new()))
}

extern "C" {
    fn atexit(cb: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn release_all_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let instances: Vec<Arc<Runtime>> = lock(live()).iter().filter_map(Weak::upgrade).collect();
        for rt in &instances {
            rt.request_release();
        }
        for rt in &instances {
            rt.join_watchdog(EXIT_WAIT);
        }
    });
}

fn register_for_exit(rt: &Arc<Runtime>) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registering a plain extern "C" fn with libc's atexit.
        unsafe {
            atexit(release_all_at_exit);
        }
    });
    let mut v = lock(live());
    v.retain(|w| w.strong_count() > 0);
    v.push(Arc::downgrade(rt));
}
