//! Token counting speed: bpe-openai (what `cost` uses) against tiktoken-rs, on the
//! mixed issue-like text of `testdata/mixed_text.rs`, and the parallel helpers.
//!
//! `cargo run --release -p ai_batch_core --example tokbench [samples] [max_bytes]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use ai_batch_core::cost::{count_many, Encoding, RequestTokenCounter};
use ai_batch_core::processor::{processor_by_name, IssueInput};

#[allow(dead_code)]
mod mixed_text {
    include!("../testdata/mixed_text.rs");
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn best_of<T>(rounds: usize, mut f: impl FnMut() -> T) -> (T, f64) {
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(r);
    }
    (out.unwrap(), best)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4_000);
    let max: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let texts = mixed_text::samples(7, n, max);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    println!(
        "{} texts, {:.1} MB, {} cores",
        n,
        bytes as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let t = Instant::now();
    let bpe = bpe_openai::o200k_base();
    let _ = bpe.count("warm up");
    println!("build o200k_base: bpe-openai {:?}", t.elapsed());
    let t = Instant::now();
    let tk = tiktoken_rs::o200k_base_singleton();
    println!("build o200k_base: tiktoken-rs {:?}", t.elapsed());

    let (a, s) = best_of(3, || refs.iter().map(|t| bpe.count(t)).sum::<usize>());
    println!(
        "bpe-openai, 1 thread:  {a} tokens, {:.1} MB/s",
        mbps(bytes, s)
    );
    let (b, s) = best_of(3, || {
        refs.iter()
            .map(|t| tk.encode_ordinary(t).len())
            .sum::<usize>()
    });
    println!(
        "tiktoken-rs, 1 thread: {b} tokens, {:.1} MB/s",
        mbps(bytes, s)
    );
    let mismatches = refs
        .iter()
        .filter(|t| bpe.count(t) != tk.encode_ordinary(t).len())
        .count();
    println!("texts whose counts differ: {mismatches}");

    // Worst case for BPE: one long pre-token (a base64 blob, a minified line), here
    // 24,000 lowercase letters (one pre-token), the body budget.
    let mut rng = mixed_text::Rng::new(1);
    let alphabet: Vec<char> = ('a'..='z').collect();
    let blob: String = (0..24_000)
        .map(|_| alphabet[rng.below(alphabet.len())])
        .collect();
    let (x, s1) = best_of(3, || bpe.count(&blob));
    let (y, s2) = best_of(3, || tk.encode_ordinary(&blob).len());
    assert_eq!(x, y);
    println!(
        "one 24,000-letter lowercase run ({x} tokens): bpe-openai {:.2} ms, tiktoken-rs {:.2} ms",
        s1 * 1e3,
        s2 * 1e3
    );

    let (c, s) = best_of(3, || count_many(&refs).into_iter().sum::<usize>());
    assert_eq!(a, c);
    println!("cost::count_many (all cores): {:.1} MB/s", mbps(bytes, s));

    let pl = processor_by_name("product-labeling").unwrap();
    let counter = RequestTokenCounter::new(pl, Encoding::O200kBase).unwrap();
    let issues: Vec<IssueInput> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| IssueInput {
            id: i as i64,
            org: "replicatedhq".into(),
            repo: "kots".into(),
            number: i as i64,
            title: "Upgrade fails".into(),
            body: Some(t.clone()),
            state: "open".into(),
            ..Default::default()
        })
        .collect();
    let (tokens, s) = best_of(3, || {
        counter.count_issues(&issues).into_iter().sum::<usize>()
    });
    println!(
        "RequestTokenCounter::count_issues (render + count, all cores): {} issues/s, {:.1} MB/s of issue text, {tokens} tokens (fixed part {} per request)",
        (n as f64 / s) as u64,
        mbps(bytes, s),
        counter.fixed_tokens()
    );
}
