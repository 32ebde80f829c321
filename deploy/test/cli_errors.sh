#!/usr/bin/env bash
# The CLI's error cases as a script sees them: every case's exit status and the JSON line on
# stdout, against a local 3-replica plaintext cluster of the release binary.
#
#   deploy/test/cli_errors.sh            (after `cargo build --release -p allocdb-server`)
#
# Builds nothing: uses ALLOCDB_BIN, else target/release/allocdb. Exit status 0 when every
# check passed, 1 otherwise (each failure is printed). Run by .ci/run after the tests.
#
# Exit statuses checked (docs/client.md): 0 ok, 1 definite failure (a refusal, nothing
# reachable, a read that timed out), 2 usage or configuration error, 3 a write whose outcome
# is unknown; a read never exits 3.
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${ALLOCDB_BIN:-$repo_dir/target/release/allocdb}"
[[ -x "$bin" ]] || { echo "cli_errors.sh: no binary at $bin (cargo build --release -p allocdb-server)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "cli_errors.sh: python3 is needed for the JSON checks" >&2; exit 2; }

work="$(mktemp -d)"
export ALLOCDB_BIN="$bin"
export ALLOCDB_CLUSTER_DIR="$work/cluster"
export ALLOCDB_CLUSTER_ID=7
export ALLOCDB_REPLICAS=3
export ALLOCDB_START_WAIT=30
export ALLOCDB_STOP_WAIT=5
# Ports below the ephemeral range, spread by PID so parallel runs rarely collide.
base_port=$((20000 + ($$ % 400) * 20))
export ALLOCDB_BASE_PORT=$base_port
export ALLOCDB_METRICS_PORT=$((base_port + 10))
cluster() { ALLOCDB_INSECURE=1 "$repo_dir/deploy/local/cluster.sh" "$@"; }
cleanup() {
    cluster destroy >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
pass() { echo "ok: $*"; }

# check <name> <exit status> <result[|result...]> <text the JSON must contain, or ''> -- <command...>
# Runs the command with stdin closed and stdout captured (not a terminal), then checks the
# exit status and that the last stdout line is a JSON object with that `result` and, unless
# ok, a non-empty `error` message.
check() {
    local name=$1 want_status=$2 want_result=$3 want_text=$4
    shift 5
    local out status=0
    out=$(env -u ALLOCDB_ADDRESSES -u ALLOCDB_CLUSTER -u ALLOCDB_CERTS -u ALLOCDB_INSECURE \
        "$@" 2>"$work/stderr" </dev/null) || status=$?
    if [[ $status -ne $want_status ]]; then
        fail "$name: exit $status, expected $want_status; stdout: $out; stderr: $(head -c 600 "$work/stderr")"
        return
    fi
    if ! python3 - "$want_result" "$want_text" "$out" <<'PY'; then
import json, sys
want_result, want_text, out = sys.argv[1:4]
lines = [line for line in out.splitlines() if line.strip()]
if not lines:
    sys.exit("no JSON line on stdout")
try:
    line = json.loads(lines[-1])
except ValueError as error:
    sys.exit(f"not JSON ({error}): {lines[-1]}")
if not isinstance(line, dict):
    sys.exit(f"not a JSON object: {line}")
if line.get("result") not in want_result.split("|"):
    sys.exit(f"result {line.get('result')!r}, expected {want_result!r}: {line}")
if want_result != "ok" and not (isinstance(line.get("error"), str) and line["error"]):
    sys.exit(f"no error message: {line}")
if want_text and want_text not in json.dumps(line):
    sys.exit(f"{want_text!r} not in {line}")
PY
        fail "$name: stdout $out"
        return
    fi
    pass "$name"
}

echo "== starting a local 3-replica cluster (cluster 7) in $work"
cluster format >/dev/null
cluster start >/dev/null
addresses="$(cluster addresses)"
IFS=, read -r a0 a1 a2 <<<"$addresses"
client=("$bin" client --insecure --addresses "$addresses" --timeout 5s)

echo "== usage errors: exit 2, JSON on stdout"
check "bad duration unit names the accepted forms" 2 usage "1.5s" -- \
    "${client[@]}" reserve 1 --holder 5 --ttl 1.5x
check "a duration without a unit" 2 usage "unit is required" -- \
    "${client[@]}" reserve 1 --holder 5 --ttl 30
check "a missing flag (clap)" 2 usage "--holder" -- \
    "${client[@]}" reserve 1 --ttl 1s
check "an unknown flag (clap)" 2 usage "--no-such-flag" -- \
    "$bin" client --no-such-flag
check "an unknown command (clap)" 2 usage "frobnicate" -- \
    "$bin" frobnicate
check "no address anywhere names the flag and the variable" 2 usage "ALLOCDB_ADDRESSES" -- \
    "$bin" client --insecure get-resource 1
check "no security anywhere names the flags and the variables" 2 usage "ALLOCDB_INSECURE" -- \
    "$bin" client --addresses "$addresses" get-resource 1
check "a malformed ALLOCDB_CLUSTER" 2 usage "ALLOCDB_CLUSTER" -- \
    env ALLOCDB_CLUSTER=seven "$bin" client --insecure --addresses "$addresses" get-resource 1
check "status with no address" 2 usage "ALLOCDB_ADDRESSES" -- \
    "$bin" status --insecure
check "status: a bad --timeout" 2 usage "1.5s" -- \
    "$bin" status --insecure --addresses "$addresses" --timeout 2

echo "== writes and reads that succeed (fractional durations, env instead of flags)"
check "create a resource" 0 ok "" -- "${client[@]}" create-resource 1
check "a fractional TTL works and prints the remaining time" 0 ok '"deadline_in_ms": 1500' -- \
    "${client[@]}" reserve 1 --holder 5 --ttl 1.5s
check "250ms, 2m and 0.5h parse" 0 ok "" -- \
    "$bin" client --insecure --addresses "$addresses" --timeout 0.5m create-resource 2
check "0.5h TTL" 0 ok '"deadline_in_ms": 1800000' -- \
    "${client[@]}" reserve 2 --holder 5 --ttl 0.5h
check "the environment instead of flags (client)" 0 ok '"resource_id": "1"' -- \
    env ALLOCDB_ADDRESSES="$addresses" ALLOCDB_CLUSTER=7 ALLOCDB_INSECURE=1 \
    "$bin" client get-resource 1
check "a flag overrides its variable" 0 ok "" -- \
    env ALLOCDB_ADDRESSES="127.0.0.1:1" ALLOCDB_CLUSTER=8 ALLOCDB_INSECURE=1 \
    "$bin" client --addresses "$addresses" --cluster 7 get-resource 1
# status prints one line per replica, each with its role.
status_out=$(env ALLOCDB_ADDRESSES="$addresses" ALLOCDB_CLUSTER=7 ALLOCDB_INSECURE=1 \
    "$bin" status --timeout 2s </dev/null) && status_rc=0 || status_rc=$?
if [[ $status_rc -eq 0 ]] && python3 -c '
import json, sys
lines = [json.loads(line) for line in sys.stdin if line.strip()]
assert len(lines) == 3 and all(l["role"] in ("primary", "backup") for l in lines), lines
' <<<"$status_out"; then
    pass "the environment instead of flags (status)"
else
    fail "status from the environment: exit $status_rc: $status_out"
fi
if "$bin" status --help | grep -q -- "--timeout-ms"; then
    fail "status --help still lists --timeout-ms"
elif ! "$bin" status --insecure --addresses "$addresses" --timeout-ms 1000 >/dev/null; then
    fail "the deprecated status --timeout-ms is no longer accepted"
else
    pass "status --timeout-ms: hidden from help, still accepted"
fi

echo "== a reader that stops early: no panic, the command's own exit status"
# The reader may exit before or after the write; either way stderr must hold no panic.
closed_stdout() {
    local name=$1 reader=$2
    shift 2
    local statuses
    set +o pipefail
    "$@" 2>"$work/stderr" </dev/null | $reader >/dev/null
    statuses=("${PIPESTATUS[@]}")
    set -o pipefail
    if grep -q "panicked" "$work/stderr"; then
        fail "$name: panicked: $(head -c 600 "$work/stderr")"
    elif [[ ${statuses[0]} -ne 0 ]]; then
        fail "$name: exit ${statuses[0]}: $(head -c 600 "$work/stderr")"
    else
        pass "$name"
    fi
}
closed_stdout "status | head -1" "head -1" "$bin" status --insecure --addresses "$addresses" --timeout 2s
closed_stdout "status | head -c0" "head -c0" "$bin" status --insecure --addresses "$addresses" --timeout 2s
closed_stdout "client | head -c0" "head -c0" "${client[@]}" get-resource 1
closed_stdout "completions | head -1" "head -1" "$bin" completions bash

echo "== refusals by the cluster: exit 1, naming the limit"
check "ttl out of range names the maximum" 1 ttl_out_of_range "8640000 slots" -- \
    "${client[@]}" reserve 3 --holder 5 --ttl 25h
check "a zero TTL is out of range too" 1 ttl_out_of_range "at least 1 slot" -- \
    "${client[@]}" reserve 3 --holder 5 --ttl 0s
check "a read of a missing resource" 1 resource_not_found "" -- \
    "${client[@]}" get-resource 999

echo "== configuration errors: exit 2, fast"
check "wrong cluster id names the served cluster" 2 config "serves cluster 7" -- \
    "${client[@]}" --cluster 8 get-resource 1
# This cluster is plaintext, so the welcome finds the misplacement; over TLS the certificate
# check does (allocdb-server/tests/tls.rs: a_misordered_list_over_tls_is_an_address_list_error).
check "a misordered address list" 2 address_list "position 0" -- \
    "$bin" client --insecure --addresses "$a1,$a0,$a2" --timeout 10s get-resource 1
check "an incomplete address list" 2 address_list "has 3 replicas" -- \
    "$bin" client --insecure --addresses "$a0,$a1" --timeout 10s get-resource 1
check "status with a misordered list" 2 address_list "position 0" -- \
    "$bin" status --insecure --addresses "$a1,$a0,$a2" --timeout 2s
started=$(date +%s)
"$bin" client --insecure --addresses "$a2,$a1,$a0" --timeout 10s get-resource 1 >/dev/null 2>&1 || true
elapsed=$(($(date +%s) - started))
if [[ $elapsed -le 3 ]]; then pass "a misordered list fails in ${elapsed}s, not at the 10s deadline"; else fail "a misordered list took ${elapsed}s"; fi

echo "== logs: no colour escapes off a terminal, nor with NO_COLOR on one"
if grep -q $'\x1b\[' "$ALLOCDB_CLUSTER_DIR"/replica-*/allocdb.log; then
    fail "a replica's log (stderr to a file) holds ANSI escapes"
else
    pass "replica logs written to files have no ANSI escapes"
fi
if command -v script >/dev/null; then
    data="$work/single"
    "$bin" format --insecure --cluster 3 --replica 0 --replica-count 1 "$data" >/dev/null
    single="127.0.0.1:$((base_port + 5))"
    # `script` gives the replica a terminal; NO_COLOR must still turn colours off.
    script -qec "NO_COLOR=1 timeout -s INT 2 $bin start --insecure --addresses $single --replica 0 $data" \
        "$work/typescript" >/dev/null 2>&1 || true
    if ! grep -q "serving" "$work/typescript"; then
        fail "NO_COLOR: no log line captured from a terminal: $(head -c 300 "$work/typescript")"
    elif grep -q $'\x1b\[' "$work/typescript"; then
        fail "NO_COLOR=1 on a terminal still printed ANSI escapes"
    else
        pass "NO_COLOR=1 on a terminal: no ANSI escapes"
    fi
else
    echo "skip: no \`script\` to give a replica a terminal (NO_COLOR check)"
fi

echo "== completions and format --help"
for shell in bash zsh fish; do
    out="$("$bin" completions "$shell" 2>/dev/null)" || out=""
    if [[ -n "$out" && "$out" == *allocdb* ]]; then pass "completions $shell"; else fail "completions $shell: empty"; fi
done
if "$bin" completions tcsh >/dev/null 2>&1; then fail "completions tcsh accepted"; else pass "an unknown shell is a usage error"; fi
help="$("$bin" format --help 2>/dev/null)" || help=""
for flag in resources-max pools-max leases-max lease-members-max bundle-size-max operations-max \
    clients-max session-requests-max ttl-slots-max dedupe-window-slots lease-history-slots \
    slot-ms tick-ms; do
    # The flag's help paragraph (up to the next flag) must state its default.
    if python3 - "$flag" "$help" <<'PY'; then pass "format --help: --$flag has a default"; else fail "format --help: --$flag shows no default"; fi
import re, sys
flag, text = sys.argv[1:3]
match = re.search(rf"--{flag} <[^>]+>\n(.*?)(?=\n\s*(-\w, )?--|\Z)", text, re.S)
sys.exit(0 if match and "[default:" in match.group(1) else 1)
PY
done

echo "== an unreachable cluster: writes exit 3 only when sent, reads never 3"
check "nothing listening: a write was never sent (definite)" 1 unavailable "" -- \
    "$bin" client --insecure --addresses 127.0.0.1:1 --timeout 500ms create-resource 9
check "nothing listening: a read" 1 unavailable "" -- \
    "$bin" client --insecure --addresses 127.0.0.1:1 --timeout 500ms get-resource 9
# Replicas 1 and 2 gone: replica 0 still answers hello, but nothing can commit.
cluster kill 1 >/dev/null
cluster kill 2 >/dev/null
check "no quorum: a write's outcome is unknown (exit 3)" 3 indefinite "operation_id" -- \
    "$bin" client --insecure --addresses "$addresses" --timeout 2s --operation-id 777 create-resource 10
# The read is refused by a replica in view change (unavailable) or waits for its deadline
# (timeout), depending on how far replica 0 got: exit 1 either way.
check "no quorum: a read exits 1, never 3" 1 "timeout|unavailable" "" -- \
    "$bin" client --insecure --addresses "$addresses" --timeout 2s get-resource 1

if [[ $failures -ne 0 ]]; then
    echo "cli_errors.sh: $failures check(s) failed" >&2
    exit 1
fi
echo "cli_errors.sh: every check passed"
