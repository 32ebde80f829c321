#!/usr/bin/env bash
# Exercises deploy/local/cluster.sh end to end on loopback (no Docker): certificates and format
# (TLS and a 60 s dedupe window, the script's defaults), start, a workload on hot resources
# (application role; resources created as operator; an application create-resource must be
# forbidden and a plaintext client refused), SIGKILL the primary, failover, restart, catch-up,
# verify, stop.
#
#   deploy/test/e2e-local.sh            (uses ALLOCDB_BIN, or builds target/release/allocdb)
#
# ALLOCDB_INSECURE=1 runs the same test on a plaintext (--insecure) cluster.
# ALLOCDB_E2E_PAUSE_MS=<ms> paces the four writers (default 0: as fast as they go).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/../.." && pwd)"
cluster="$repo_dir/deploy/local/cluster.sh"
workload="$script_dir/e2e_workload.py"
started=$SECONDS
say() { echo "[e2e-local $((SECONDS - started))s] $*"; }
fail() {
    echo "[e2e-local] FAILED: $*" >&2
    exit 1
}

if [[ -z "${ALLOCDB_BIN:-}" ]]; then
    (cd "$repo_dir" && cargo build --release -p allocdb-server --bin allocdb)
    ALLOCDB_BIN="${CARGO_TARGET_DIR:-$repo_dir/target}/release/allocdb"
fi
export ALLOCDB_BIN
ALLOCDB_CLUSTER_DIR="$(mktemp -d -t allocdb-local.XXXXXX)"
# Ports unlikely to collide with a developer's cluster or a parallel run.
ALLOCDB_BASE_PORT=$((20000 + RANDOM % 20000))
ALLOCDB_METRICS_PORT=$((ALLOCDB_BASE_PORT + 10))
ALLOCDB_CLUSTER_ID=$((RANDOM + 1))
export ALLOCDB_CLUSTER_DIR ALLOCDB_BASE_PORT ALLOCDB_METRICS_PORT ALLOCDB_CLUSTER_ID
stop_file="$ALLOCDB_CLUSTER_DIR/stop"
workload_pid=""

cleanup() {
    local rc=$?
    set +e
    [[ -n "$workload_pid" ]] && {
        touch "$stop_file"
        kill "$workload_pid" 2>/dev/null
        wait "$workload_pid" 2>/dev/null
    }
    ((rc != 0)) && ALLOCDB_LOG_LINES=30 "$cluster" logs >&2
    "$cluster" destroy >/dev/null
    echo "[e2e-local] $( ((rc == 0)) && echo PASSED || echo "FAILED (exit $rc)") in $((SECONDS - started))s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$cluster" format
"$cluster" start
addresses="$("$cluster" addresses)"
tls=(--certs "$ALLOCDB_CLUSTER_DIR/certs") # the workload's flag: it picks --role per call
[[ "${ALLOCDB_INSECURE:-0}" == 1 ]] && tls=()
say "security: $("$cluster" tls-args)"
w() { timeout 300 python3 -B "$workload" --bin "$ALLOCDB_BIN" --addresses "$addresses" "${tls[@]}" --dedupe-window 60 "$@"; }

w setup --timeout 30
timeout 600 python3 -B "$workload" --bin "$ALLOCDB_BIN" --addresses "$addresses" "${tls[@]}" --dedupe-window 60 \
    run --out "$ALLOCDB_CLUSTER_DIR" --stop-file "$stop_file" --writers 4 --pause-ms "${ALLOCDB_E2E_PAUSE_MS:-0}" &
workload_pid=$!
sleep 4

primary="$(w primary --timeout 30)"
killed_at="$(date +%s.%N)"
"$cluster" kill "$primary"
failover_s="$(w failover --since "$killed_at" --timeout 30)" || fail "no write acknowledged after the kill"
say "killed replica $primary; a write was acknowledged ${failover_s}s later"
sleep 3
"$cluster" start "$primary" >/dev/null
catch_up_s="$(w catch-up --replica "$primary" --timeout 60)" || fail "replica $primary did not catch up"
say "replica $primary caught up ${catch_up_s}s after its restart"
current_s="$(w wait-current --replica "$primary" --lag 64 --timeout 60)" ||
    fail "replica $primary never closed the gap to the primary while writes continued"
say "replica $primary is current ${current_s}s later"

touch "$stop_file"
wait "$workload_pid" || fail "the workload failed"
workload_pid=""
w verify --out "$ALLOCDB_CLUSTER_DIR" --min-acks 20
"$cluster" stop
"$cluster" status 2>/dev/null | grep -q ": running," && fail "a replica is still running after stop"
echo "[e2e-local] RESULT tls=$([[ ${#tls[@]} -gt 0 ]] && echo on || echo off) failover_s=$failover_s catch_up_s=$catch_up_s current_after_s=$current_s"
