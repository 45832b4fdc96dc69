//! A/B of token counting with and without the piece cache and the hand-written
//! pre-tokenizer, one thread, same texts:
//! `cargo run --release -p ai_batch_core --example cachebench -- FILE` where FILE holds
//! texts separated by NUL bytes.
use std::time::Instant;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/bodies.bin".into());
    let data = std::fs::read(&path).unwrap_or_default();
    let texts: Vec<&str> = data
        .split(|b| *b == 0)
        .filter_map(|t| std::str::from_utf8(t).ok())
        .collect();
    let mb = data.len() as f64 / 1e6;
    let tok = bpe_openai::o200k_base();
    let _ = tok.count("warm up");
    for round in 0..2 {
        let t = Instant::now();
        let plain: usize = texts.iter().map(|t| tok.count(t)).sum();
        let a = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let cached: usize = texts
            .iter()
            .map(|t| ai_batch_core::cost::Encoding::O200kBase.count(t))
            .sum();
        let b = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let regex_pieces: usize = texts.iter().map(|t| tok.split(t).count()).sum();
        let c = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let fast_pieces: usize = texts
            .iter()
            .map(|t| ai_batch_core::pretok::split_o200k(t).map_or(0, |p| p.count()))
            .sum();
        let d = t.elapsed().as_secs_f64();
        println!(
            "round {round}: {mb:.1} MB, {} texts: bpe-openai count {:.1} MB/s, ai_batch count {:.1} MB/s, counts equal: {}; \
             split only: regex {:.1} MB/s, hand-written {:.1} MB/s, pieces equal: {}",
            texts.len(),
            mb / a,
            mb / b,
            plain == cached,
            mb / c,
            mb / d,
            regex_pieces == fast_pieces
        );
    }
}
