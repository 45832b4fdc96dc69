//! Ctrl-C while `batch_wait` sleeps between polls.
//!
//! The C API gives a table function no way to see that its query was interrupted:
//! DuckDB checks between the chunks a function returns, and `batch_wait` returns its
//! rows only at the end. So while a wait runs, a SIGINT handler of ours sits in front
//! of the host's (the `duckdb` shell's, which interrupts the query; Python's, which
//! raises KeyboardInterrupt once the query returns): it counts the signal and calls
//! the host's handler as before. The wait sees the count move and returns at once;
//! the host then does what it always does with Ctrl-C. The handler is installed by
//! the first wait of the process and the host's put back by the last one (unless the
//! host replaced ours meanwhile). A host without a handler of its own (the default
//! action ends the process) gets none of ours either.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// SIGINTs seen while our handler was installed.
static SIGNALS: AtomicU64 = AtomicU64::new(0);
/// The host's handler (its `sa_sigaction`) and flags, called from ours.
static PREV_HANDLER: AtomicUsize = AtomicUsize::new(0);
static PREV_FLAGS: AtomicI32 = AtomicI32::new(0);

/// How many waits run, and the host's action to put back after the last.
struct Hook {
    users: usize,
    prev: Option<libc::sigaction>,
}

// SAFETY: `libc::sigaction` is plain data (a function address, flags and a mask).
unsafe impl Send for Hook {}

static HOOK: Mutex<Hook> = Mutex::new(Hook {
    users: 0,
    prev: None,
});

extern "C" fn on_sigint(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
    let h = PREV_HANDLER.load(Ordering::SeqCst);
    if h == libc::SIG_DFL || h == libc::SIG_IGN || h == 0 {
        return;
    }
    // SAFETY: `h` is the handler the host installed for SIGINT, called the way its
    // flags say it expects to be called.
    unsafe {
        if PREV_FLAGS.load(Ordering::SeqCst) & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(h);
            f(sig);
        }
    }
}

/// A wait's view of Ctrl-C: [`Watch::fired`] once a SIGINT came after it started.
pub(crate) struct Watch {
    start: u64,
}

impl Watch {
    /// Starts watching (installs the handler if this is the first wait).
    pub(crate) fn start() -> Watch {
        let mut hook = HOOK.lock().unwrap_or_else(|e| e.into_inner());
        if hook.users == 0 {
            // SAFETY: reading and setting the SIGINT action with valid pointers.
            unsafe {
                let mut cur: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGINT, std::ptr::null(), &mut cur) == 0
                    && cur.sa_sigaction != libc::SIG_DFL
                    && cur.sa_sigaction != libc::SIG_IGN
                {
                    PREV_HANDLER.store(cur.sa_sigaction, Ordering::SeqCst);
                    PREV_FLAGS.store(cur.sa_flags, Ordering::SeqCst);
                    let mut ours: libc::sigaction = std::mem::zeroed();
                    ours.sa_sigaction = on_sigint as *const () as usize;
                    ours.sa_flags = libc::SA_SIGINFO | (cur.sa_flags & libc::SA_ONSTACK);
                    libc::sigemptyset(&mut ours.sa_mask);
                    if libc::sigaction(libc::SIGINT, &ours, std::ptr::null_mut()) == 0 {
                        hook.prev = Some(cur);
                    }
                }
            }
        }
        hook.users += 1;
        Watch {
            start: SIGNALS.load(Ordering::SeqCst),
        }
    }

    /// Whether a SIGINT came since this watch started.
    pub(crate) fn fired(&self) -> bool {
        SIGNALS.load(Ordering::SeqCst) != self.start
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut hook = HOOK.lock().unwrap_or_else(|e| e.into_inner());
        hook.users = hook.users.saturating_sub(1);
        if hook.users > 0 {
            return;
        }
        if let Some(prev) = hook.prev.take() {
            // SAFETY: as in `start`; the host's action goes back only if ours is still
            // the one installed.
            unsafe {
                let mut cur: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGINT, std::ptr::null(), &mut cur) == 0
                    && cur.sa_sigaction == on_sigint as *const () as usize
                {
                    libc::sigaction(libc::SIGINT, &prev, std::ptr::null_mut());
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    static HOST_CALLS: AtomicU64 = AtomicU64::new(0);
    extern "C" fn host(_: libc::c_int) {
        HOST_CALLS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_sigint_is_seen_and_passed_on_and_the_host_handler_comes_back() {
        unsafe {
            let mut h: libc::sigaction = std::mem::zeroed();
            h.sa_sigaction = host as *const () as usize;
            libc::sigemptyset(&mut h.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGINT, &h, std::ptr::null_mut()), 0);
        }
        let w = Watch::start();
        let w2 = Watch::start();
        assert!(!w.fired());
        unsafe { libc::raise(libc::SIGINT) };
        assert!(w.fired() && w2.fired());
        assert_eq!(HOST_CALLS.load(Ordering::SeqCst), 1);
        drop(w);
        drop(w2);
        // The host's handler is back: a signal now reaches it alone.
        let before = SIGNALS.load(Ordering::SeqCst);
        unsafe { libc::raise(libc::SIGINT) };
        assert_eq!(HOST_CALLS.load(Ordering::SeqCst), 2);
        assert_eq!(SIGNALS.load(Ordering::SeqCst), before);
        unsafe {
            let mut cur: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGINT, std::ptr::null(), &mut cur);
            assert_eq!(cur.sa_sigaction, host as *const () as usize);
        }
        // A later watch does not see signals from before it started.
        let w = Watch::start();
        assert!(!w.fired());
    }
}
