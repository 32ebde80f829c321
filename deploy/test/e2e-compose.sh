#!/usr/bin/env bash
# End-to-end test of the Compose deployment (deploy/docker/compose.yaml) on this machine's
# Docker engine. Run by .ci/run; needs docker, docker-compose (or `docker compose`) and python3.
#
#   1. build the FROM scratch image (deploy/docker/build-image.sh)
#   2. `up`: certificates (the one-shot `certs` service), format (--if-empty) and start three
#      replicas with TLS on a private network, one volume each; copy the client credentials out;
#      an `application` client's create-resource must be `forbidden`, a plaintext one refused
#   3. writers race for a few hot resources (deploy/test/e2e_workload.py, through `allocdb client`)
#   4. `docker kill` the primary; measure until a write is acknowledged again (failover time)
#   5. `docker start` it; measure until it has committed what the others had (catch-up time)
#   6. `docker network disconnect` a backup; check writes go on; reconnect; measure catch-up
#   7. rolling restart, backups first: SIGTERM (must exit 0), start, wait until current
#   8. `up` again: `certs` must reuse the CA, `format --if-empty` leave every formatted volume
#      untouched
#   9. check every acknowledged operation is present and no resource was granted to two live
#      leases; tear everything down (also when a step fails: trap)
#
# Every wait is bounded. Settings: ALLOCDB_E2E_KEEP=1 keeps the cluster after a failure for a
# post-mortem (the trap prints how to remove it); ALLOCDB_E2E_SEED replays the workload's choices;
# ALLOCDB_E2E_SKIP_BUILD=1 reuses the image and static binary of an earlier run;
# ALLOCDB_E2E_PAUSE_MS=<ms> makes each of the four writers pause between operations (default 0:
# as fast as one `allocdb client` process per operation goes, a few hundred writes/s).
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(cd "$script_dir/../.." && pwd)"
compose_file="$repo_dir/deploy/docker/compose.yaml"
workload="$script_dir/e2e_workload.py"
image="allocdb:dev"
project="allocdb-e2e-$$-$RANDOM"
work="$(mktemp -d -t allocdb-e2e.XXXXXX)"
stop_file="$work/stop"
workload_pid=""
started=$SECONDS

say() { echo "[e2e $((SECONDS - started))s] $*"; }
fail() {
    echo "[e2e] FAILED: $*" >&2
    exit 1
}

if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    command -v docker-compose >/dev/null || fail "neither 'docker compose' nor 'docker-compose' is installed"
    compose_cmd=(docker-compose)
fi
compose() { timeout 180 "${compose_cmd[@]}" --project-name "$project" --file "$compose_file" "$@"; }

# A /24 that no Docker network uses yet, so parallel runs and other projects do not collide.
pick_subnet() {
    local used candidate
    local ids
    mapfile -t ids < <(docker network ls -q)
    used="$(docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "${ids[@]}" 2>/dev/null || true)"
    for _ in $(seq 1 50); do
        candidate="172.$((RANDOM % 4 + 28)).$((RANDOM % 250 + 1))"
        grep -q "$candidate.0/" <<<"$used" || {
            echo "$candidate"
            return
        }
    done
    fail "no free 172.28-31.x.0/24 subnet"
}

cleanup() {
    local rc=$?
    set +e
    [[ -n "$workload_pid" ]] && {
        touch "$stop_file"
        kill "$workload_pid" 2>/dev/null
        wait "$workload_pid" 2>/dev/null
    }
    if ((rc != 0)); then
        echo "[e2e] --- replica logs (last 40 lines each) ---" >&2
        compose logs --no-color --tail 40 >&2 2>&1
        [[ -f "$work/history.jsonl" ]] && echo "[e2e] history: $(wc -l <"$work/history.jsonl") records in $work/history.jsonl" >&2
    fi
    if ((rc != 0)) && [[ "${ALLOCDB_E2E_KEEP:-0}" == 1 ]]; then
        echo "[e2e] kept: ${compose_cmd[*]} -p $project -f $compose_file down -v" >&2
    else
        compose --profile tools down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
        ((rc == 0)) && rm -rf "$work"
    fi
    echo "[e2e] $( ((rc == 0)) && echo PASSED || echo "FAILED (exit $rc)") in $((SECONDS - started))s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 0. the checker itself must catch broken histories (no cluster needed) ----------------------
python3 -B "$script_dir/e2e_workload_selftest.py" >/dev/null || fail "the checker's self-test"

# --- 1. image ---------------------------------------------------------------------------------
if [[ "${ALLOCDB_E2E_SKIP_BUILD:-0}" == 1 ]]; then
    say "using the existing $image (ALLOCDB_E2E_SKIP_BUILD=1)"
    docker image inspect "$image" >/dev/null || fail "no image $image to reuse"
else
    say "building $image"
    "$repo_dir/deploy/docker/build-image.sh" "$image"
fi
target_dir="${CARGO_TARGET_DIR:-$repo_dir/target}"
# The host runs the same static binary as the image for its client calls.
bin="$target_dir/x86_64-unknown-linux-gnu/${CARGO_PROFILE:-release}/allocdb"
[[ -x "$bin" ]] || fail "no static allocdb binary at $bin"
# The deployment forms that cannot run here (Kubernetes, systemd) are checked against this binary.
# It needs PyYAML: Debian's python3 has it wherever docker-compose (a Python program) is installed.
yaml_python=python3
python3 -c 'import yaml' 2>/dev/null || yaml_python=/usr/bin/python3
"$yaml_python" -B "$script_dir/check_manifests.py" --bin "$bin" || fail "deployment files disagree with the binary"

# --- 2. cluster ---------------------------------------------------------------------------------
net="$(pick_subnet)"
export ALLOCDB_IMAGE="$image" ALLOCDB_SUBNET="$net" ALLOCDB_CLUSTER_ID="$((RANDOM + 1))"
# Empty host ports: Docker picks free ones, so a developer's cluster on 3000-3002 is not in the way.
export ALLOCDB_PORT_0="" ALLOCDB_PORT_1="" ALLOCDB_PORT_2=""
export ALLOCDB_METRICS_PORT_0="" ALLOCDB_METRICS_PORT_1="" ALLOCDB_METRICS_PORT_2=""
ips=("$net.10" "$net.11" "$net.12")
addresses="${ips[0]}:3000,${ips[1]}:3000,${ips[2]}:3000"
export ALLOCDB_DEDUPE_WINDOW_SLOTS=6000 # 60 s at the default 10 ms slot
dedupe_window_s=60
certs="$work/certs" # the host's client credentials, copied out of the `certs` volume
w() { timeout 300 python3 -B "$workload" --bin "$bin" --addresses "$addresses" --certs "$certs" --dedupe-window "$dedupe_window_s" "$@"; }

say "project $project, subnet $net.0/24, cluster id $ALLOCDB_CLUSTER_ID"
# `up` runs the one-shot `certs` service, then format-<i> (format --if-empty), then the replicas.
compose up --detach
# A client outside Compose needs the CA certificate and its roles' pairs: copied out of the
# volume through the (exited) certs container; the CA key and replica keys stay in the volume.
certs_cid="$(compose ps --all -q certs)"
[[ -n "$certs_cid" ]] || fail "no container for the certs service"
[[ "$(timeout 60 docker wait "$certs_cid")" == 0 ]] || fail "the certs service failed"
docker logs "$certs_cid" 2>&1 | grep -q "created the CA" || fail "the certs service did not create a CA"
mkdir -m 0700 "$certs"
for file in ca.crt operator.crt operator.key application.crt application.key; do
    docker cp "$certs_cid:/certs/$file" "$certs/$file"
done
# Container ids, looked up once (with --all: Compose v2 hides stopped containers otherwise).
cids=()
for i in 0 1 2; do
    cids[i]="$(compose ps --all -q "replica-$i")"
    [[ -n "${cids[i]}" ]] || fail "no container for replica-$i"
done
container() { echo "${cids[$1]}"; }
network="$(docker network ls --filter "label=com.docker.compose.project=$project" --format '{{.Name}}')"
[[ -n "$network" ]] || fail "no network for project $project"

primary="$(w primary --timeout 60)" || fail "the cluster elected no primary"
say "cluster up; primary is replica $primary"
# The Compose health check (the binary probing its own port) must report every replica healthy.
wait_healthy() {
    local deadline=$((SECONDS + 60)) i health
    for i in 0 1 2; do
        while :; do
            health="$(docker inspect --format '{{.State.Health.Status}}' "$(container "$i")")"
            [[ "$health" == healthy ]] && break
            ((SECONDS < deadline)) || fail "replica $i is '$health', not healthy, after 60 s"
            sleep 1
        done
    done
}
wait_healthy
say "all three replicas report healthy"
w setup --timeout 60

# --- 3. workload ----------------------------------------------------------------------------------
seed_args=()
[[ -n "${ALLOCDB_E2E_SEED:-}" ]] && seed_args=(--seed "$ALLOCDB_E2E_SEED")
timeout 600 python3 -B "$workload" --bin "$bin" --addresses "$addresses" --certs "$certs" --dedupe-window "$dedupe_window_s" \
    run --out "$work" --stop-file "$stop_file" --writers 4 --pause-ms "${ALLOCDB_E2E_PAUSE_MS:-0}" "${seed_args[@]}" &
workload_pid=$!
acks() { w acks --out "$work"; }
wait_acks_above() { # $1: count to exceed, $2: seconds
    local deadline=$((SECONDS + $2))
    while (($(acks) <= $1)); do
        ((SECONDS < deadline)) || fail "no acknowledged write for $2 s (still $1)"
        kill -0 "$workload_pid" 2>/dev/null || fail "the workload exited early"
        sleep 0.5
    done
}
sleep 5
wait_acks_above 10 30
say "workload running: $(acks) operations acknowledged"

# --- 4. kill the primary ----------------------------------------------------------------------------
primary="$(w primary --timeout 30)"
killed_at="$(date +%s.%N)"
docker kill "$(container "$primary")" >/dev/null
say "killed replica $primary (the primary)"
failover_s="$(w failover --since "$killed_at" --timeout 30)" || fail "no new primary served a write"
new_primary="$(w primary --timeout 30)"
[[ "$new_primary" != "$primary" ]] || fail "replica $primary is reported primary while it is dead"
say "replica $new_primary is primary; first write acknowledged ${failover_s}s after the kill"
before="$(acks)"
sleep 5
wait_acks_above "$before" 30
say "writes continue on two replicas: $(acks) acknowledged"

# --- 5. restart it, catch up -------------------------------------------------------------------------
docker start "$(container "$primary")" >/dev/null
say "restarted replica $primary"
restart_catch_up_s="$(w catch-up --replica "$primary" --timeout 90)" || fail "replica $primary did not catch up after restart"
say "replica $primary caught up ${restart_catch_up_s}s after its restart"
current_s="$(w wait-current --replica "$primary" --lag 64 --timeout 60)" ||
    fail "replica $primary never closed the gap to the primary while writes continued"
say "replica $primary is current (log within 64 ops of the primary's commit) $(python3 -c "print(f'{$restart_catch_up_s + $current_s:.3f}')")s after its restart"

# --- 6. partition a backup, keep writing, heal --------------------------------------------------------
# Cut the backup that was NOT just restarted, so the quorum during the partition must include
# the restarted replica: its catch-up is only real if it can acknowledge new prepares.
restarted="$primary"
primary="$(w primary --timeout 30)"
for candidate in 0 1 2; do
    if [[ "$candidate" != "$primary" && ("$candidate" != "$restarted" || "$restarted" == "$primary") ]]; then
        cut="$candidate"
        break
    fi
done
docker network disconnect --force "$network" "$(container "$cut")"
say "disconnected replica $cut (a backup; primary $primary, restarted replica $restarted) from $network"
before="$(acks)"
for _ in 1 2 3 4; do
    sleep 2
    "$bin" status --certs "$certs" --addresses "$addresses" | sed 's/^/    /' || true
done
wait_acks_above "$before" 30
during="$(($(acks) - before))"
say "$during operations acknowledged while replica $cut was cut off"
docker network connect --ip "${ips[$cut]}" "$network" "$(container "$cut")"
say "reconnected replica $cut"
partition_catch_up_s="$(w catch-up --replica "$cut" --timeout 90)" || fail "replica $cut did not catch up after the partition"
say "replica $cut caught up ${partition_catch_up_s}s after reconnecting"

# --- 7. rolling restart (the upgrade procedure): backups first, the primary last -------------------
primary="$(w primary --timeout 30)"
order=()
for i in 0 1 2; do [[ "$i" != "$primary" ]] && order+=("$i"); done
order+=("$primary")
rolling=""
for i in "${order[@]}"; do
    docker stop --time 15 "$(container "$i")" >/dev/null # SIGTERM: graceful
    exit_code="$(docker inspect --format '{{.State.ExitCode}}' "$(container "$i")")"
    [[ "$exit_code" == 0 ]] || fail "replica $i exited with $exit_code on SIGTERM (expected a graceful 0)"
    docker start "$(container "$i")" >/dev/null
    rejoin_s="$(w wait-current --replica "$i" --lag 64 --timeout 60)" || fail "replica $i did not rejoin after its restart"
    rolling+="${rolling:+,}$i:${rejoin_s}s"
    before="$(acks)"
    wait_acks_above "$before" 30
done
say "rolling restart (SIGTERM, start, wait until current) in order ${order[*]}: $rolling"

# --- 8. `up` again: the format services must leave the formatted volumes alone ----------------------
compose up --detach >/dev/null 2>&1
certs_cid="$(compose ps --all -q certs)"
[[ "$(timeout 60 docker wait "$certs_cid")" == 0 ]] || fail "the certs service failed on the second 'up'"
docker logs "$certs_cid" 2>&1 | grep -q "reused the CA" || fail "the certs service did not reuse the CA"
for i in 0 1 2; do
    format_cid="$(compose ps --all -q "format-$i")"
    [[ "$(timeout 60 docker wait "$format_cid")" == 0 ]] || fail "format-$i (--if-empty) failed on its formatted volume"
    docker logs "$format_cid" 2>&1 | grep -q "nothing changed" || fail "format-$i did not report 'nothing changed'"
done
say "second 'up': certs reused the CA (leaves re-issued), the three format --if-empty services left the data untouched"

# --- 9. stop writers, verify -----------------------------------------------------------------------
touch "$stop_file"
deadline=$((SECONDS + 120))
while kill -0 "$workload_pid" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "the workload did not stop within 120 s"
    sleep 0.5
done
wait "$workload_pid" || fail "the workload failed"
workload_pid=""
w verify --out "$work" --min-acks 50 || fail "verification"
final="$(w primary --timeout 30)"

echo "[e2e] RESULT failover_s=$failover_s restart_catch_up_s=$restart_catch_up_s partition_catch_up_s=$partition_catch_up_s rolling_restart=$rolling acknowledged=$(acks) primary_at_end=$final"
