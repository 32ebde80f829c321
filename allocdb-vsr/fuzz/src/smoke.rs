//! A std-only, seeded mutation loop over the same target functions: the bounded fuzz run CI
//! does without libFuzzer (no coverage guidance, but deterministic and dependency-free).
//! Each iteration picks a corpus input, applies one to eight random edits (bit flips, byte
//! sets, interesting values, inserts, deletes, duplicated chunks, splices) and runs it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use allocdb_wal::SplitMix64;

/// What one bounded run did.
#[derive(Debug)]
pub struct Report {
    /// Inputs run (seeds included).
    pub inputs: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Loads every file of `dir` (sorted by name, so runs are reproducible).
///
/// # Errors
/// The directory or a file cannot be read.
pub fn load_corpus(dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    paths.iter().map(std::fs::read).collect()
}

fn below(rng: &mut SplitMix64, n: usize) -> usize {
    usize::try_from(rng.next_u64() % (n.max(1) as u64)).expect("below a usize")
}

/// Applies one to eight random edits to `input`.
pub fn mutate(rng: &mut SplitMix64, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    const INTERESTING: [u64; 8] = [0, 1, 0x7F, 0xFF, 0xFFFF, 0xFFFF_FFFF, 1 << 62, u64::MAX];
    let edits = 1 + below(rng, 8);
    for _ in 0..edits {
        let len = input.len();
        match below(rng, 8) {
            0 if len > 0 => {
                let at = below(rng, len * 8);
                input[at / 8] ^= 1 << (at % 8);
            }
            1 if len > 0 => {
                let at = below(rng, len);
                input[at] = rng.next_u64().to_le_bytes()[0];
            }
            2 if len > 0 => {
                let value = INTERESTING[below(rng, INTERESTING.len())].to_le_bytes();
                let width = [1, 2, 4, 8][below(rng, 4)];
                let at = below(rng, len);
                let end = (at + width).min(len);
                input[at..end].copy_from_slice(&value[..end - at]);
            }
            3 => {
                let at = below(rng, len + 1);
                input.insert(at, rng.next_u64().to_le_bytes()[0]);
            }
            4 if len > 0 => {
                let at = below(rng, len);
                let end = (at + 1 + below(rng, 16)).min(len);
                input.drain(at..end);
            }
            5 if len > 0 => {
                let at = below(rng, len);
                let end = (at + 1 + below(rng, 64)).min(len);
                let chunk = input[at..end].to_vec();
                let to = below(rng, len + 1);
                input.splice(to..to, chunk);
            }
            6 if len > 1 => input.truncate(below(rng, len)),
            7 if !corpus.is_empty() => {
                let other = &corpus[below(rng, corpus.len())];
                if !other.is_empty() {
                    let at = below(rng, other.len());
                    let cut = below(rng, len + 1);
                    input.truncate(cut);
                    input.extend_from_slice(&other[at..]);
                }
            }
            _ => {}
        }
    }
}

/// Runs every corpus input, then mutated ones until `runs` inputs ran or `time_max` passed.
/// A panic prints the seed, iteration and the input (hex), writes it to `crash_path`, and
/// propagates.
pub fn run(
    target: fn(&[u8]),
    corpus: &[Vec<u8>],
    seed: u64,
    runs: u64,
    time_max: Duration,
    crash_path: &Path,
) -> Report {
    let start = Instant::now();
    let mut rng = SplitMix64::new(seed);
    let mut input = Vec::new();
    let mut inputs = 0_u64;
    while inputs < runs && start.elapsed() < time_max {
        input.clear();
        let index = usize::try_from(inputs).ok().filter(|&i| i < corpus.len());
        if let Some(index) = index {
            input.extend_from_slice(&corpus[index]);
        } else if !corpus.is_empty() {
            input.extend_from_slice(&corpus[below(&mut rng, corpus.len())]);
            mutate(&mut rng, &mut input, corpus);
        } else {
            mutate(&mut rng, &mut input, corpus);
        }
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(&input))) {
            let hex: String = input.iter().fold(String::new(), |mut hex, b| {
                use std::fmt::Write;
                let _ = write!(hex, "{b:02x}");
                hex
            });
            eprintln!(
                "crash: seed {seed}, input {inputs}, {} bytes: {hex}",
                input.len()
            );
            if std::fs::write(crash_path, &input).is_ok() {
                eprintln!("crash input written to {}", crash_path.display());
            }
            std::panic::resume_unwind(panic);
        }
        inputs += 1;
    }
    Report {
        inputs,
        elapsed: start.elapsed(),
    }
}
