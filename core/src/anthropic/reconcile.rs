//! Finding the batch of a create whose answer was lost, at a provider whose batches
//! carry no metadata (Anthropic). Pure: the client lists, these functions decide.
//!
//! OpenAI batches carry our job id as metadata, and a create can be fenced off by
//! deleting its input file. Anthropic has neither: a batch shows only its id, counts
//! and times while it runs, and the requests (and so our job id, inside every
//! `custom_id`) only come back in its results. So:
//!
//! 1. **Candidates**: batches created inside the window in which our create could have
//!    landed (from the first attempt, minus clock slack, to the last attempt plus the
//!    create window, plus slack), with exactly our number of requests, that no other
//!    job of ours owns ([`find_lost_create`]).
//! 2. One candidate: adopt it. Several: keep watching all of them (never create while
//!    one could be ours: no duplicate); when a candidate ends, its results say whose it
//!    is ([`results_owner`]) and the others are let go (no loss). None, while the
//!    create may still land: wait; none after the window: create again.
//! 3. An adopted batch is confirmed by its results: a results file whose `custom_id`s
//!    belong to another job means the guess was wrong; the job goes back to step 1
//!    with that batch excluded.

pub use crate::requests::{results_owner, Owner};

/// Seconds of clock difference tolerated between us and the provider.
pub const CLOCK_SLACK_SECS: i64 = 300;

/// What is known of a create whose answer never came.
#[derive(Debug, Clone, Copy)]
pub struct LostCreate<'a> {
    /// Our job id (inside every `custom_id` of the batch).
    pub job_id: &'a str,
    /// Requests the create carried.
    pub requests: u64,
    /// Unix seconds: the first attempt was sent no earlier.
    pub sent_from: i64,
    /// Unix seconds: a create sent by then may have landed (last attempt + create window).
    pub land_by: i64,
}

/// One listed batch, as far as the decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The provider's batch id.
    pub id: String,
    /// Unix seconds.
    pub created_at: Option<i64>,
    /// Requests in the batch.
    pub requests: Option<u64>,
}

/// What the list says about a lost create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Exactly one batch fits: adopt it (its results confirm it).
    One(String),
    /// Several fit (oldest first): watch them all; the first whose results carry our
    /// job id is ours.
    Several(Vec<String>),
    /// None fits yet, but the create may still land: look again after this (Unix s).
    WaitUntil(i64),
    /// None fits and none can land any more: the create never happened; create again.
    NotCreated,
}

/// The decision of step 1 and 2 (see the module documentation). `owned` tells whether
/// another job of ours already owns a batch id; `now` is Unix seconds.
pub fn find_lost_create(
    lost: &LostCreate<'_>,
    listed: &[Listed],
    owned: &dyn Fn(&str) -> bool,
    now: i64,
) -> Finding {
    let from = lost.sent_from.saturating_sub(CLOCK_SLACK_SECS);
    let to = lost.land_by.saturating_add(CLOCK_SLACK_SECS);
    let mut fits: Vec<&Listed> = listed
        .iter()
        .filter(|b| b.requests == Some(lost.requests))
        .filter(|b| b.created_at.is_some_and(|t| (from..=to).contains(&t)))
        .filter(|b| !owned(&b.id))
        .collect();
    fits.sort_by_key(|b| (b.created_at, b.id.clone()));
    fits.dedup_by(|a, b| a.id == b.id);
    match fits.as_slice() {
        [] if now < lost.land_by => Finding::WaitUntil(lost.land_by),
        [] => Finding::NotCreated,
        [one] => Finding::One(one.id.clone()),
        many => Finding::Several(many.iter().map(|b| b.id.clone()).collect()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn listed(id: &str, created_at: i64, requests: u64) -> Listed {
        Listed {
            id: id.into(),
            created_at: Some(created_at),
            requests: Some(requests),
        }
    }

    const LOST: LostCreate<'static> = LostCreate {
        job_id: "job7",
        requests: 3,
        sent_from: 10_000,
        land_by: 10_600,
    };

    #[test]
    fn one_batch_of_our_size_in_the_window_is_ours() {
        let l = [
            listed("other_size", 10_010, 4),
            listed("ours", 10_020, 3),
            listed("too_old", 10_000 - CLOCK_SLACK_SECS - 1, 3),
            listed("too_new", 10_600 + CLOCK_SLACK_SECS + 1, 3),
        ];
        assert_eq!(
            find_lost_create(&LOST, &l, &|_| false, 10_030),
            Finding::One("ours".into())
        );
        // Clock slack on both sides.
        let l = [listed("early", 10_000 - CLOCK_SLACK_SECS, 3)];
        assert_eq!(
            find_lost_create(&LOST, &l, &|_| false, 10_030),
            Finding::One("early".into())
        );
        // A batch another job owns is never adopted.
        let l = [listed("owned", 10_020, 3)];
        assert_eq!(
            find_lost_create(&LOST, &l, &|id| id == "owned", 99_999),
            Finding::NotCreated
        );
        // Unknown counts or times do not fit.
        let l = [
            Listed {
                id: "x".into(),
                created_at: None,
                requests: Some(3),
            },
            Listed {
                id: "y".into(),
                created_at: Some(10_020),
                requests: None,
            },
        ];
        assert_eq!(
            find_lost_create(&LOST, &l, &|_| false, 99_999),
            Finding::NotCreated
        );
    }

    #[test]
    fn several_fits_are_all_watched_none_waits_then_creates() {
        let l = [
            listed("b", 10_050, 3),
            listed("a", 10_020, 3),
            listed("a", 10_020, 3),
        ];
        assert_eq!(
            find_lost_create(&LOST, &l, &|_| false, 10_100),
            Finding::Several(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            find_lost_create(&LOST, &[], &|_| false, 10_599),
            Finding::WaitUntil(10_600)
        );
        assert_eq!(
            find_lost_create(&LOST, &[], &|_| false, 10_600),
            Finding::NotCreated
        );
    }
}
