//! What a selection may not do: call ai_batch's own functions.
//!
//! A selection SQL runs on one of the extension's pooled connections inside a READ ONLY
//! transaction, so DuckDB refuses every write to the database in it. But ai_batch's own
//! functions work on *other* pooled connections and call the provider: a selection
//! `SELECT submitted AS id FROM batch_submit(...)` would create jobs and batches, one
//! calling `batch_cancel(...)` would cancel a batch, and nesting them exhausts the
//! pool. Two layers keep them out:
//!
//! - a static check of the parsed statement ([`refused_function`]) names a call written
//!   in the selection itself, before anything runs;
//! - a runtime guard catches the calls the text does not show (through a view, a macro,
//!   `query_table(...)`): while a selection is being prepared and run on a thread
//!   ([`SelectionScope`]), the bind of every ai_batch function, table or scalar,
//!   refuses ([`refuse_inside_selection`]). DuckDB binds every function of a statement
//!   (views and macros expanded) on the thread that prepares it, before executing
//!   anything, so nothing of the selection has run when the refusal comes.
//!
//! DuckDB's own functions the READ ONLY transaction does not stop are refused by name
//! ([`DUCKDB_REFUSED`]).

use std::cell::Cell;

/// Every SQL function ai_batch registers. All of them are refused inside a selection:
/// most write and send, and even the read-only ones would take a second pooled
/// connection (a selection reads `batch_jobs` / `batch_items` directly instead).
pub const OWN_FUNCTIONS: [&str; 10] = [
    "batch_submit",
    "batch_refresh",
    "batch_cancel",
    "batch_retry",
    "batch_release",
    "batch_history",
    "batch_details",
    "batch_define_processor",
    "batch_processors",
    "batch_results",
];

/// DuckDB functions with effects that a READ ONLY transaction does not stop, and why
/// each is refused in a selection (measured with DuckDB 2.0.1: `nextval`, writes,
/// `force_checkpoint()` and every non-SELECT statement through `query()` are already
/// refused by the transaction or by DuckDB's parser; these are not).
pub const DUCKDB_REFUSED: [(&str, &str); 3] = [
    (
        "checkpoint",
        "checkpoint() writes the database file even in a read-only transaction",
    ),
    (
        "setseed",
        "setseed() changes the random state of the connection the selection runs on",
    ),
    (
        "query",
        "query('...') hides SQL from the check of the selection; write that query as the selection itself",
    ),
];

thread_local! {
    /// True while this thread prepares or runs a selection.
    static IN_SELECTION: Cell<bool> = const { Cell::new(false) };
    /// The first ai_batch function refused during the current selection.
    static REFUSED: Cell<Option<&'static str>> = const { Cell::new(None) };
}

/// Marks the current thread as running a selection until dropped (also when unwinding).
pub struct SelectionScope {
    outer: bool,
}

impl SelectionScope {
    /// Enters a selection on this thread.
    pub fn enter() -> SelectionScope {
        REFUSED.with(|r| r.set(None));
        SelectionScope {
            outer: IN_SELECTION.with(|c| c.replace(true)),
        }
    }

    /// The ai_batch function whose bind refused to run inside this selection, if any.
    pub fn refused(&self) -> Option<&'static str> {
        REFUSED.with(|r| r.get())
    }
}

impl Drop for SelectionScope {
    fn drop(&mut self) {
        IN_SELECTION.with(|c| c.set(self.outer));
    }
}

/// Called first in the bind of every ai_batch function: an error when the current
/// thread is preparing a selection.
pub fn refuse_inside_selection(func: &'static str) -> Result<(), String> {
    if !IN_SELECTION.with(|c| c.get()) {
        return Ok(());
    }
    REFUSED.with(|r| {
        if r.get().is_none() {
            r.set(Some(func))
        }
    });
    Err(format!(
        "{func}: cannot run inside a batch_submit selection (a selection only reads issue ids; \
         ai_batch's functions write and send, so they are refused there; run {func} on its own)"
    ))
}

/// The first function of `names` (as DuckDB's parser reports them) that a selection may
/// not call, with the reason.
pub fn refused_function<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Refused> {
    for name in names {
        let lower = name.to_ascii_lowercase();
        if let Some(own) = OWN_FUNCTIONS.iter().find(|f| **f == lower) {
            return Some(Refused::Own(own));
        }
        if let Some((f, why)) = DUCKDB_REFUSED.iter().find(|(f, _)| *f == lower) {
            return Some(Refused::DuckDb(f, why));
        }
    }
    None
}

/// A function call a selection may not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// One of ai_batch's own functions.
    Own(&'static str),
    /// A DuckDB function with an effect, and why.
    DuckDb(&'static str, &'static str),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Own(func) => write!(
                f,
                "the selection calls {func} (directly, or through a view, macro or query_table()); \
                 a selection only reads issue ids, and ai_batch's own functions write and send, so they are refused \
                 inside it (run {func} on its own; select ids from issues, batch_jobs or batch_items)"
            ),
            Refused::DuckDb(func, why) => write!(
                f,
                "the selection calls {func}(), which a selection may not do: {why}"
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_only_inside_a_scope_and_remembers_the_first() {
        assert!(refuse_inside_selection("batch_cancel").is_ok());
        {
            let scope = SelectionScope::enter();
            let e = refuse_inside_selection("batch_cancel").unwrap_err();
            assert!(e.starts_with("batch_cancel: cannot run inside a batch_submit selection"));
            refuse_inside_selection("batch_submit").unwrap_err();
            assert_eq!(scope.refused(), Some("batch_cancel"));
        }
        assert!(refuse_inside_selection("batch_cancel").is_ok());
        // A panic inside the scope leaves the thread outside it.
        let _ = std::panic::catch_unwind(|| {
            let _scope = SelectionScope::enter();
            panic!("boom");
        });
        assert!(refuse_inside_selection("batch_submit").is_ok());
    }

    #[test]
    fn every_registered_function_is_known() {
        use crate::sql::SqlTable;
        for name in [
            crate::sql::history::History::NAME,
            crate::sql::details::Details::NAME,
            crate::sql::release::Release::NAME,
            crate::sql::submit::Submit::NAME,
            crate::sql::refresh::Refresh::NAME,
            crate::sql::cancel::Cancel::NAME,
            crate::sql::retry::Retry::NAME,
        ] {
            assert!(OWN_FUNCTIONS.contains(&name), "{name}");
        }
    }

    #[test]
    fn names_are_matched_case_insensitively() {
        assert_eq!(
            refused_function(["list_value", "BATCH_Cancel"]),
            Some(Refused::Own("batch_cancel"))
        );
        assert!(matches!(
            refused_function(["checkpoint"]),
            Some(Refused::DuckDb("checkpoint", _))
        ));
        assert_eq!(refused_function(["count_star", "batch_submitted"]), None);
    }
}
