//! Test-only crash points. When the environment variable `AI_BATCH_FAILPOINT` names
//! a point, the process kills itself there with SIGKILL — exactly what `kill -9`
//! does — so the crash tests can check that the next `batch_refresh()` repairs the
//! state. `AI_BATCH_FAILPOINT=error:<point>` makes the points that support it fail
//! with an ordinary error instead ([`fails`]), and `panic:<point>` makes them panic
//! ([`panic_at`]), to test what stops a panic. Unset (always, for users), a point
//! costs one environment lookup.

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

/// True if `AI_BATCH_FAILPOINT` is `error:<name>`: the caller then fails with an error.
pub fn fails(name: &str) -> bool {
    std::env::var("AI_BATCH_FAILPOINT")
        .ok()
        .and_then(|v| v.strip_prefix("error:").map(|p| p == name))
        .unwrap_or(false)
}

/// Panics if `AI_BATCH_FAILPOINT` is `panic:<name>`: tests of the last line of defence
/// (the callback turns the panic into an error, the transaction rolls back, the
/// connection is closed instead of lent again).
pub fn panic_at(name: &str) {
    let armed = std::env::var("AI_BATCH_FAILPOINT")
        .ok()
        .and_then(|v| v.strip_prefix("panic:").map(|p| p == name))
        .unwrap_or(false);
    if armed {
        panic!("injected panic at {name} (AI_BATCH_FAILPOINT)");
    }
}
