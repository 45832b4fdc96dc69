//! Stage timings for the benchmark: when `AI_BATCH_PROFILE` names a file, each
//! submit or refresh appends one JSON line per stage (`{"op", "stage", "seconds",
//! "items"}`). Off (and free) otherwise. Never part of a test's pass/fail.

use std::io::Write;
use std::time::Instant;

/// Collects stage durations of one operation.
pub struct Profiler {
    op: &'static str,
    enabled: bool,
    last: Instant,
    stages: Vec<(String, f64, u64)>,
}

impl Profiler {
    /// Starts timing `op` (e.g. "submit").
    pub fn new(op: &'static str) -> Self {
        Profiler {
            op,
            enabled: std::env::var_os("AI_BATCH_PROFILE").is_some(),
            last: Instant::now(),
            stages: Vec::new(),
        }
    }

    /// Records a stage timed elsewhere (parts of a loop), without moving the mark.
    pub fn add(&mut self, stage: &str, seconds: f64, items: u64) {
        if self.enabled {
            self.stages.push((stage.to_string(), seconds, items));
        }
    }

    /// Ends the current stage, named `stage`, covering `items` items.
    pub fn mark(&mut self, stage: &str, items: u64) {
        let now = Instant::now();
        if self.enabled {
            self.stages
                .push((stage.to_string(), (now - self.last).as_secs_f64(), items));
        }
        self.last = now;
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if !self.enabled || self.stages.is_empty() {
            return;
        }
        let Some(path) = std::env::var_os("AI_BATCH_PROFILE") else {
            return;
        };
        let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        else {
            return;
        };
        for (stage, secs, items) in &self.stages {
            let line =
                serde_json::json!({"op": self.op, "stage": stage, "seconds": secs, "items": items});
            let _ = writeln!(f, "{line}");
        }
    }
}
