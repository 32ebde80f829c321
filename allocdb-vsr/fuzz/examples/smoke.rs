//! The std-only bounded fuzz run (CI): every target over its checked-in corpus plus seeded
//! mutations. Run from anywhere:
//! `cargo run --release --manifest-path allocdb-vsr/fuzz/Cargo.toml --no-default-features
//!  --example smoke -- [--runs N] [--seconds S] [--seed X] [target...]`
//! Defaults: 20000 runs or 30 s per target, seed 1, every target.

use std::time::Duration;

fn main() {
    let mut runs = 20_000_u64;
    let mut seconds = 30_u64;
    let mut seed = 1_u64;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .and_then(|v| v.parse().ok())
                .expect("a number after the flag")
        };
        match arg.as_str() {
            "--runs" => runs = value(),
            "--seconds" => seconds = value(),
            "--seed" => seed = value(),
            _ => only.push(arg),
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    for (name, target) in allocdb_fuzz::TARGETS {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let corpus = allocdb_fuzz::smoke::load_corpus(&root.join("corpus").join(name))
            .unwrap_or_else(|e| panic!("reading the {name} corpus: {e}"));
        let crash = std::env::temp_dir().join(format!("allocdb-fuzz-crash-{name}"));
        let report = allocdb_fuzz::smoke::run(
            target,
            &corpus,
            seed,
            runs,
            Duration::from_secs(seconds),
            &crash,
        );
        let secs = report.elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let rate = report.inputs as f64 / secs.max(1e-9);
        println!(
            "{name}: {} inputs ({} seeds) in {secs:.1} s, {rate:.0}/s, seed {seed}, no crash",
            report.inputs,
            corpus.len()
        );
        total += report.inputs;
    }
    println!("fuzz smoke: {total} inputs, no crash");
}
