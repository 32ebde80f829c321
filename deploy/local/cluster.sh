#!/usr/bin/env bash
# A local AllocDB cluster: N replica processes of one `allocdb` binary on 127.0.0.1.
#
#   deploy/local/cluster.sh format            create the certificates and the data directories (refuses to reuse them)
#   deploy/local/cluster.sh start [i]         start every replica (or only replica i), wait for a primary
#   deploy/local/cluster.sh stop [i]          SIGTERM, then SIGKILL after ALLOCDB_STOP_WAIT seconds
#   deploy/local/cluster.sh kill <i>          SIGKILL one replica (crash test)
#   deploy/local/cluster.sh status            PID liveness + `allocdb status` (one JSON line per replica)
#   deploy/local/cluster.sh logs [i]          the last lines of every (or one) replica's log
#   deploy/local/cluster.sh addresses         the client address list, for `allocdb client --addresses`
#   deploy/local/cluster.sh tls-args          the client's TLS flags: `--certs <dir>/certs` (or `--insecure`)
#   deploy/local/cluster.sh wait-primary      wait (bounded) until one replica reports role primary
#   deploy/local/cluster.sh destroy           stop everything and delete the cluster directory
#
# Settings (environment):
#   ALLOCDB_BIN            the binary (default: $CARGO_TARGET_DIR/release/allocdb, then target/release/allocdb, then PATH)
#   ALLOCDB_CLUSTER_DIR    where data, logs and PID files live (default: ./allocdb-cluster)
#   ALLOCDB_CLUSTER_ID     cluster id given to `format` (default: 1)
#   ALLOCDB_REPLICAS       1, 3 or 5 (default: 3)
#   ALLOCDB_BASE_PORT      replica i listens on 127.0.0.1:(BASE_PORT+i) (default: 3000)
#   ALLOCDB_METRICS_PORT   replica i serves /metrics and /health on 127.0.0.1:(METRICS_PORT+i) (default: 9100)
#   ALLOCDB_START_WAIT     seconds `start` waits for a primary (default: 30)
#   ALLOCDB_STOP_WAIT      seconds `stop` waits after SIGTERM before SIGKILL (default: 10)
#   ALLOCDB_FORMAT_ARGS    extra `allocdb format` flags, word-split (default: --dedupe-window-slots 6000,
#                          a 60 s retry window as in deploy/docker; see docs/operations.md, "Capacity")
#   ALLOCDB_START_ARGS     extra `allocdb start` flags, word-split (default: none), e.g.
#                          "--runtime-threads 2 --connections-per-address-max 256"
#   ALLOCDB_INSECURE=1     at `format`: run this cluster in plaintext (`--insecure` everywhere) instead
#                          of TLS; only for tests on a machine nobody else can reach
#
# TLS is the default: `format` runs `allocdb certs` into <dir>/certs (the CA, one pair per
# replica, the operator and application pairs), and every replica, `status` and `wait-primary`
# use `--certs <dir>/certs`. A client passes the same directory and picks a role:
#   allocdb client $(cluster.sh tls-args) --role application --addresses "$(cluster.sh addresses)" ...
#
# Layout under ALLOCDB_CLUSTER_DIR: cluster.env (the settings `format` used; later commands read
# it, so they agree with the running cluster), certs/ (unless insecure), and per replica
# `replica-<i>/data/`, `replica-<i>/allocdb.log` (stderr; RUST_LOG applies) and `replica-<i>/allocdb.pid`.
set -euo pipefail

die() {
    echo "cluster.sh: $*" >&2
    exit 2
}

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/../.." && pwd)"
cluster_dir="${ALLOCDB_CLUSTER_DIR:-$PWD/allocdb-cluster}"

find_binary() {
    if [[ -n "${ALLOCDB_BIN:-}" ]]; then
        echo "$ALLOCDB_BIN"
    elif [[ -n "${CARGO_TARGET_DIR:-}" && -x "$CARGO_TARGET_DIR/release/allocdb" ]]; then
        echo "$CARGO_TARGET_DIR/release/allocdb"
    elif [[ -x "$repo_dir/target/release/allocdb" ]]; then
        echo "$repo_dir/target/release/allocdb"
    elif command -v allocdb >/dev/null; then
        command -v allocdb
    else
        die "no allocdb binary: build it (cargo build --release -p allocdb-server) or set ALLOCDB_BIN"
    fi
}
bin="$(find_binary)"
[[ -x "$bin" ]] || die "ALLOCDB_BIN=$bin is not an executable file"

# The settings recorded by `format` win over the environment, so `start`/`status` after a
# `format` with other settings cannot silently address a different cluster.
unset CLUSTER_ID REPLICAS BASE_PORT METRICS_PORT INSECURE # only cluster.env may set these
if [[ -f "$cluster_dir/cluster.env" ]]; then
    # shellcheck source=/dev/null
    source "$cluster_dir/cluster.env"
fi
cluster_id="${CLUSTER_ID:-${ALLOCDB_CLUSTER_ID:-1}}"
replicas="${REPLICAS:-${ALLOCDB_REPLICAS:-3}}"
base_port="${BASE_PORT:-${ALLOCDB_BASE_PORT:-3000}}"
metrics_port="${METRICS_PORT:-${ALLOCDB_METRICS_PORT:-9100}}"
start_wait="${ALLOCDB_START_WAIT:-30}"
stop_wait="${ALLOCDB_STOP_WAIT:-10}"
[[ "$replicas" =~ ^(1|3|5)$ ]] || die "ALLOCDB_REPLICAS must be 1, 3 or 5 (got '$replicas')"
[[ "$base_port" =~ ^[0-9]+$ && "$metrics_port" =~ ^[0-9]+$ ]] || die "ports must be numbers"
insecure="${INSECURE:-${ALLOCDB_INSECURE:-0}}"
[[ "$insecure" =~ ^(0|1)$ ]] || die "ALLOCDB_INSECURE must be 0 or 1 (got '$insecure')"
certs_dir="$cluster_dir/certs"
# The flags every command that talks to a replica gets (format checks the replica's certificate).
if [[ "$insecure" == 1 ]]; then
    tls_args=(--insecure)
else
    tls_args=(--certs "$certs_dir")
fi

addresses() {
    local list="" i
    for ((i = 0; i < replicas; i++)); do
        list+="${list:+,}127.0.0.1:$((base_port + i))"
    done
    echo "$list"
}

replica_dir() { echo "$cluster_dir/replica-$1"; }

check_index() {
    [[ "$1" =~ ^[0-9]+$ && "$1" -lt "$replicas" ]] || die "replica index '$1' is not in 0..$((replicas - 1))"
}

# Prints the PID of replica $1 when that process is alive and is really this replica's
# `allocdb start` (a stale PID file may name a reused PID).
running_pid() {
    local pid_file pid
    pid_file="$(replica_dir "$1")/allocdb.pid"
    [[ -f "$pid_file" ]] || return 1
    pid="$(<"$pid_file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(replica_dir "$1")/data" || return 1
    echo "$pid"
}

indices() {
    if [[ $# -gt 0 ]]; then
        check_index "$1"
        echo "$1"
    else
        seq 0 $((replicas - 1))
    fi
}

cmd_format() {
    local i dir
    for ((i = 0; i < replicas; i++)); do
        dir="$(replica_dir "$i")/data"
        if [[ -d "$dir" && -n "$(ls -A "$dir")" ]]; then
            die "$dir is not empty: refusing to format over a replica's data (use destroy first)"
        fi
    done
    mkdir -p "$cluster_dir"
    cat >"$cluster_dir/cluster.env" <<EOF
CLUSTER_ID=$cluster_id
REPLICAS=$replicas
BASE_PORT=$base_port
METRICS_PORT=$metrics_port
INSECURE=$insecure
EOF
    if [[ "$insecure" == 0 ]]; then
        # Creates the CA (or reuses one already in certs/ for this cluster) and every pair.
        "$bin" certs --cluster "$cluster_id" --replica-count "$replicas" "$certs_dir"
    fi
    for ((i = 0; i < replicas; i++)); do
        dir="$(replica_dir "$i")"
        mkdir -p "$dir"
        # shellcheck disable=SC2086 # word-splitting the extra flags is the point
        "$bin" format "${tls_args[@]}" --cluster "$cluster_id" --replica "$i" --replica-count "$replicas" \
            ${ALLOCDB_FORMAT_ARGS---dedupe-window-slots 6000} "$dir/data"
    done
    echo "formatted $replicas replicas of cluster $cluster_id under $cluster_dir ($([[ "$insecure" == 1 ]] && echo "plaintext: --insecure" || echo "TLS: certificates in $certs_dir"))"
}

start_one() {
    local i="$1" dir pid
    dir="$(replica_dir "$i")"
    [[ -d "$dir/data" ]] || die "replica $i has no data directory: run format first"
    if pid="$(running_pid "$i")"; then
        echo "replica $i already running (pid $pid)"
        return 0
    fi
    # setsid: the replica must not die with the shell that started it (or get its Ctrl-C).
    # shellcheck disable=SC2086 # word-splitting the extra flags is the point
    setsid "$bin" start "${tls_args[@]}" --addresses "$(addresses)" --replica "$i" \
        --metrics "127.0.0.1:$((metrics_port + i))" ${ALLOCDB_START_ARGS:-} "$dir/data" \
        </dev/null >>"$dir/allocdb.log" 2>&1 &
    echo $! >"$dir/allocdb.pid"
    echo "replica $i started (pid $!, log $dir/allocdb.log)"
}

# Waits until `allocdb status` reports a primary; bounded by ALLOCDB_START_WAIT seconds.
cmd_wait_primary() {
    local deadline=$((SECONDS + start_wait)) out
    while ((SECONDS < deadline)); do
        out="$("$bin" status "${tls_args[@]}" --addresses "$(addresses)" 2>/dev/null || true)"
        if grep -Eq '"role": ?"primary"' <<<"$out"; then
            grep -E '"role": ?"primary"' <<<"$out"
            return 0
        fi
        sleep 0.2
    done
    echo "cluster.sh: no primary after ${start_wait}s; last status:" >&2
    echo "$out" >&2
    return 1
}

cmd_start() {
    local i
    for i in $(indices "$@"); do
        start_one "$i"
    done
    # A replica that exits at once (bad flags, bad data dir) must fail `start`, not the wait.
    sleep 0.3
    for i in $(indices "$@"); do
        running_pid "$i" >/dev/null || {
            tail -n 20 "$(replica_dir "$i")/allocdb.log" >&2
            die "replica $i exited right after start (log above)"
        }
    done
    cmd_wait_primary
}

signal_and_wait() {
    local i="$1" signal="$2" wait_s="$3" pid deadline
    pid="$(running_pid "$i")" || {
        echo "replica $i not running"
        return 0
    }
    kill "-$signal" "$pid"
    deadline=$((SECONDS + wait_s))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "replica $i (pid $pid) ignored SIG$signal for ${wait_s}s: SIGKILL"
        kill -KILL "$pid"
    else
        echo "replica $i (pid $pid) stopped by SIG$signal"
    fi
    rm -f "$(replica_dir "$i")/allocdb.pid"
}

cmd_stop() {
    local i
    for i in $(indices "$@"); do
        signal_and_wait "$i" TERM "$stop_wait"
    done
}

cmd_kill() {
    [[ $# -eq 1 ]] || die "kill needs one replica index"
    signal_and_wait "$(indices "$1")" KILL 5
}

cmd_status() {
    local i pid
    for ((i = 0; i < replicas; i++)); do
        if pid="$(running_pid "$i")"; then
            echo "# replica $i: running, pid $pid, 127.0.0.1:$((base_port + i)), metrics http://127.0.0.1:$((metrics_port + i))/metrics"
        else
            echo "# replica $i: not running"
        fi
    done
    "$bin" status "${tls_args[@]}" --addresses "$(addresses)"
}

cmd_logs() {
    local i
    for i in $(indices "$@"); do
        echo "==> replica $i: $(replica_dir "$i")/allocdb.log <=="
        tail -n "${ALLOCDB_LOG_LINES:-50}" "$(replica_dir "$i")/allocdb.log" 2>/dev/null || echo "(no log yet)"
    done
}

cmd_destroy() {
    cmd_stop
    rm -rf "$cluster_dir"
    echo "removed $cluster_dir"
}

command="${1:-}"
[[ $# -gt 0 ]] && shift
case "$command" in
format) cmd_format ;;
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
kill) cmd_kill "$@" ;;
status) cmd_status ;;
logs) cmd_logs "$@" ;;
addresses) addresses ;;
tls-args) echo "${tls_args[*]}" ;;
wait-primary) cmd_wait_primary ;;
destroy) cmd_destroy ;;
*)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
