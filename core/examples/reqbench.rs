//! Measures JSONL request building: 50,000 issues on one core.
//!
//! `cargo run --release -p ai_batch_core --example reqbench [issues] [avg_body_bytes]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use ai_batch_core::processor::{processor_by_name, CommentInput, IssueInput};
use ai_batch_core::requests::{custom_id, write_request_line, RequestOptions, ShardStep, Sharder};

#[allow(dead_code)]
mod mixed_text {
    include!("../testdata/mixed_text.rs");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let avg: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_200);
    let pl = processor_by_name("product-labeling").unwrap();
    let opts = RequestOptions::new("gpt-4.1-mini");

    // A pool of texts reused across issues (generating 50k distinct texts would
    // dominate the run); sizes vary from 50 bytes to 2 × avg.
    let pool = mixed_text::samples(11, 2_000, avg * 2);
    let mut rng = mixed_text::Rng::new(5);
    let issues: Vec<IssueInput> = (0..n)
        .map(|i| IssueInput {
            id: i as i64 + 1,
            org: "replicatedhq".into(),
            repo: "kots".into(),
            number: i as i64 + 1000,
            author: format!("author{}", i % 50),
            title: format!("Issue {i}: upgrade fails in airgap"),
            body: Some(pool[rng.below(pool.len())].clone()),
            state: "open".into(),
            labels: vec!["bug".into(), "product::kots".into()],
            comments: (0..rng.below(4))
                .map(|c| CommentInput {
                    author: format!("user{c}"),
                    body: pool[rng.below(pool.len())].chars().take(600).collect(),
                })
                .collect(),
        })
        .collect();

    for round in 1..=3 {
        println!("round {round}");
        // 1. The raw line writer into one buffer.
        let mut out = Vec::new();
        let t = Instant::now();
        for i in &issues {
            write_request_line(
                &mut out,
                &custom_id("job_20261129_043000_ab12", i.id),
                pl,
                i,
                &opts,
            )
            .unwrap();
        }
        let d = t.elapsed();
        let mb = out.len() as f64 / 1e6;
        println!(
        "write_request_line: {n} lines, {mb:.1} MB in {:.3} s ({:.0} MB/s, {:.0} lines/s); avg line {} B",
        d.as_secs_f64(),
        mb / d.as_secs_f64(),
        n as f64 / d.as_secs_f64(),
        out.len() / n.max(1)
    );

        // 2. Lines cut into shards by the Sharder (what batch_submit does), default limits.
        let t = Instant::now();
        let mut sharder = Sharder::new();
        let (mut shards, mut cur, mut line) = (Vec::new(), Vec::new(), Vec::new());
        let mut k = 0;
        let mut job = String::from("job_20261129_043000_0000");
        for i in &issues {
            line.clear();
            write_request_line(&mut line, &custom_id(&job, i.id), pl, i, &opts).unwrap();
            if let ShardStep::StartNew = sharder.push(i.id, line.len()).unwrap() {
                shards.push(std::mem::take(&mut cur));
                k += 1;
                job = format!("job_20261129_043000_{k:04}");
            }
            cur.extend_from_slice(&line);
        }
        shards.push(cur);
        let d = t.elapsed();
        let total: usize = shards.iter().map(Vec::len).sum();
        println!(
            "Sharder + write_request_line: {} shard(s), {:.1} MB in {:.3} s",
            shards.len(),
            total as f64 / 1e6,
            d.as_secs_f64()
        );
    }
}
