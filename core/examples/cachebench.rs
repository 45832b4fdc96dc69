//! A/B of token counting with and without the piece cache, one thread, same texts:
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
        println!(
            "round {round}: {mb:.1} MB, {} texts: uncached {:.1} MB/s, cached {:.1} MB/s, counts equal: {}",
            texts.len(),
            mb / a,
            mb / b,
            plain == cached
        );
    }
}
