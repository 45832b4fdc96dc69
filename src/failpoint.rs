//! Test-only crash points. When the environment variable `AI_BATCH_FAILPOINT` names
//! a point, the process kills itself there with SIGKILL — exactly what `kill -9`
//! does — so the crash tests can check that the next `batch_refresh()` repairs the
//! state. Unset (always, for users), a point costs one environment lookup.

/// Dies with SIGKILL if `AI_BATCH_FAILPOINT` equals `name`.
pub fn hit(name: &str) {
    if std::env::var("AI_BATCH_FAILPOINT").as_deref() == Ok(name) {
        extern "C" {
            fn getpid() -> i32;
            fn kill(pid: i32, sig: i32) -> i32;
        }
        // SAFETY: plain libc calls; SIGKILL (9) ends this process at once.
        unsafe {
            kill(getpid(), 9);
        }
        std::process::abort();
    }
}
