#!/usr/bin/env bash
# A benchmark with one slow disk: three replicas on loopback, one of which has every
# `fdatasync` delayed (strace fault injection), then `allocdb benchmark` against them.
#
#   deploy/bench/slow-disk.sh [--binary PATH] [--replica I] [--delay-us N] [--clients N] [--duration D]
#
# Replica 0 is view 0's primary, so the default (--replica 0) slows the primary's disk: with
# send before sync and the sync off the replica task, the two backups commit every op without
# waiting for it (docs/performance.md). Needs `strace` (Debian: apt-get install strace) and the
# release binary (cargo build --release -p allocdb-server). Uses ports 24100..24102 and a
# temporary directory; stops its replicas and removes the directory on exit.
set -euo pipefail
binary="$(dirname "$0")/../../target/release/allocdb"
slow=0
delay_us=5000
clients=64
duration=15s
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --replica) slow="$2"; shift 2 ;;
        --delay-us) delay_us="$2"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        *) echo "slow-disk.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
command -v strace >/dev/null || { echo "slow-disk.sh: strace is not installed" >&2; exit 2; }
[[ -x "$binary" ]] || { echo "slow-disk.sh: no binary at $binary (cargo build --release -p allocdb-server)" >&2; exit 2; }
[[ "$slow" =~ ^[012]$ ]] || { echo "slow-disk.sh: --replica must be 0, 1 or 2" >&2; exit 2; }

dir="$(mktemp -d /tmp/allocdb-slow-disk.XXXXXX)"
cleanup() {
    # By their data directories: the slow replica runs under strace, whose own pid is not it.
    pkill -TERM -f -- "$dir/r" 2>/dev/null || true
    for _ in $(seq 1 50); do
        pgrep -f -- "$dir/r" >/dev/null || break
        sleep 0.1
    done
    pkill -KILL -f -- "$dir/r" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
addresses="127.0.0.1:24100,127.0.0.1:24101,127.0.0.1:24102"
"$binary" certs --cluster 5 --replica-count 3 "$dir/certs" >/dev/null
for i in 0 1 2; do
    "$binary" format --cluster 5 --replica "$i" --replica-count 3 --certs "$dir/certs" "$dir/r$i" >/dev/null
done
for i in 0 1 2; do
    start=("$binary" start --addresses "$addresses" --replica "$i" --certs "$dir/certs" "$dir/r$i")
    if [[ "$i" == "$slow" ]]; then
        # seccomp-bpf: only fdatasync stops under strace; every other system call runs untouched.
        strace --seccomp-bpf -f -qq -o /dev/null -e trace=fdatasync \
            -e inject=fdatasync:delay_enter="$delay_us" "${start[@]}" >"$dir/r$i.log" 2>&1 &
    else
        "${start[@]}" >"$dir/r$i.log" 2>&1 &
    fi
done
for _ in $(seq 1 100); do
    if "$binary" status --addresses "$addresses" --certs "$dir/certs" --timeout 1s 2>/dev/null \
        | grep -q '"role":"primary"'; then
        break
    fi
    sleep 0.2
done
echo "slow disk: replica $slow, every fdatasync delayed by ${delay_us} µs"
"$binary" benchmark --addresses "$addresses" --cluster 5 --certs "$dir/certs" --role operator \
    --clients "$clients" --duration "$duration" 2>&1 | tail -1
