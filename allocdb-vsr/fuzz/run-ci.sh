#!/usr/bin/env bash
# The bounded fuzz run of .ci/run: every target for FUZZ_SECONDS (default 30) under libFuzzer,
# starting from the checked-in corpus (new inputs go to a scratch directory, never into it).
# Installs cargo-fuzz if missing. libFuzzer needs nightly compiler flags: RUSTC_BOOTSTRAP=1
# lets the stable toolchain take them. If cargo-fuzz cannot be installed, falls back to the
# std-only seeded mutation loop over the same target functions and says so.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-30}"
targets=(client_frame peer_message snapshot wal_segment)

echo "-- fuzz crate: format, lints, unit test"
cargo fmt --check
cargo clippy --quiet --no-default-features --all-targets -- -D warnings
cargo test --quiet --release --no-default-features

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "-- installing cargo-fuzz (about 1.5 minutes)"
    cargo install --quiet --locked cargo-fuzz@0.13.2 || true
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "-- cargo-fuzz unavailable: std-only seeded run instead (no coverage guidance)"
    cargo run --quiet --release --no-default-features --example smoke -- \
        --runs 200000 --seconds "$seconds"
    exit 0
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export RUSTC_BOOTSTRAP=1
# -O -a: optimised with debug assertions (overflow checks, the replica's debug_check);
# no sanitizer: the fuzzed crates deny unsafe code, and ASan halves the rate.
cargo fuzz build -O -a -s none
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    log="$scratch/$target.log"
    # A crash's input is kept in artifacts/<target>/ (cargo-fuzz's default).
    if ! cargo fuzz run -O -a -s none "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target crashed: input in allocdb-vsr/fuzz/artifacts/$target/"
        exit 1
    fi
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")"
    echo "$target: $runs inputs in ${seconds} s ($rate/s), no crash"
done
