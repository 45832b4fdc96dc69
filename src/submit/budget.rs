//! The budget guard of `batch_submit` (`max_cost :=`): the whole submit's estimate is
//! compared with the budget after every job is built and before anything is recorded
//! or sent. Over budget, the error gives the estimate, the budget and how many issues
//! would fit. Pure; the pipeline in `submit/mod.rs` calls it.

use ai_batch_core::cost::{self, ModelPrice};

/// What a submit over its budget is refused with: the estimate, the budget, and how
/// many issues (taken in the submit's order) fit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OverBudget {
    pub estimate: f64,
    pub max_cost: f64,
    pub issues: usize,
    pub jobs: usize,
    pub fit: usize,
}

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fix = if self.fit == 0 {
            "not even one issue fits: raise max_cost".to_string()
        } else {
            format!(
                "{} issue(s) fit: add max_issues := {}, or raise max_cost",
                self.fit, self.fit
            )
        };
        write!(
            f,
            "the estimated cost ${:.4} of {} issue(s) in {} job(s) is above max_cost := {}; \
             nothing was written or sent ({fix})",
            self.estimate, self.issues, self.jobs, self.max_cost
        )
    }
}

impl std::error::Error for OverBudget {}

/// Checks the planned jobs against `max_cost`. `jobs`: each job's estimate and the
/// input tokens of its requests in submit order; `out_each`: the output tokens
/// expected per request. `Ok` when the sum of the job estimates is at most the budget.
pub(crate) fn check<'a>(
    max_cost: f64,
    price: &ModelPrice,
    out_each: u64,
    jobs: impl IntoIterator<Item = (f64, &'a [u64])> + Clone,
) -> Result<(), OverBudget> {
    let (estimate, issues, n_jobs) = jobs
        .clone()
        .into_iter()
        .fold((0.0, 0usize, 0usize), |(e, i, j), (cost, tokens)| {
            (e + cost, i + tokens.len(), j + 1)
        });
    if estimate <= max_cost {
        return Ok(());
    }
    let mut spent = 0.0;
    let mut fit = 0usize;
    'jobs: for (_, tokens) in jobs {
        for t in tokens {
            spent += cost::cost_usd_unrounded(*t, out_each, price);
            if spent > max_cost {
                break 'jobs;
            }
            fit += 1;
        }
    }
    Err(OverBudget {
        estimate,
        max_cost,
        issues,
        jobs: n_jobs,
        fit,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn price() -> ModelPrice {
        // $1 per 1M input, $2 per 1M output: 1,000 input + 500 output = $0.002.
        ModelPrice {
            model: "m".into(),
            input_per_mtok: 1.0,
            output_per_mtok: 2.0,
        }
    }

    #[test]
    fn within_or_at_the_budget_passes() {
        let t = [1_000u64, 1_000, 1_000];
        let jobs = [(0.006, &t[..])];
        assert_eq!(check(0.006, &price(), 500, jobs), Ok(()));
        assert_eq!(check(1.0, &price(), 500, jobs), Ok(()));
    }

    #[test]
    fn over_the_budget_says_how_many_fit() {
        let a = [1_000u64, 1_000, 1_000];
        let b = [1_000u64, 1_000];
        let jobs = [(0.006, &a[..]), (0.004, &b[..])];
        let e = check(0.0079, &price(), 500, jobs).unwrap_err();
        assert_eq!(
            e,
            OverBudget {
                estimate: 0.01,
                max_cost: 0.0079,
                issues: 5,
                jobs: 2,
                fit: 3,
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("$0.0100 of 5 issue(s) in 2 job(s)"), "{msg}");
        assert!(msg.contains("max_cost := 0.0079"), "{msg}");
        assert!(msg.contains("nothing was written or sent"), "{msg}");
        assert!(msg.contains("add max_issues := 3"), "{msg}");
        // Across a job boundary: 4 fit in 0.0081.
        assert_eq!(check(0.0081, &price(), 500, jobs).unwrap_err().fit, 4);
    }

    #[test]
    fn a_budget_below_one_issue_fits_none() {
        let a = [1_000u64];
        let e = check(0.001, &price(), 500, [(0.002, &a[..])]).unwrap_err();
        assert_eq!(e.fit, 0);
        assert!(e.to_string().contains("not even one issue fits"), "{e}");
        let e = check(0.0, &price(), 500, [(0.002, &a[..])]).unwrap_err();
        assert_eq!(e.fit, 0);
    }
}
