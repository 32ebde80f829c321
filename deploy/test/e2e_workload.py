#!/usr/bin/env python3
"""Workload, probes and checker for the deployment end-to-end tests (deploy/test/e2e-*.sh).

Everything goes through the real `allocdb` CLI (`allocdb client ...`, `allocdb status ...`), one
process per call, exactly as an operator's script would use it. Standard library only.

With --certs <dir> (the layout `allocdb certs` writes; ca.crt and the operator and application
pairs are enough) every call uses TLS with the role it needs: the writers and the reads of
`verify` are `application` clients, creating resources and `status` are `operator`. Without it,
every call passes --insecure (a cluster started with --insecure).

Subcommands (all waits are bounded by --timeout):
  setup      create the hot resources
  run        writers racing for the hot resources until --stop-file exists; every outcome is
             appended to <out>/history.jsonl
  primary    print the index of the primary (waits until exactly one replica of the newest view
             says primary)
  failover   poll with fresh writes until one is acknowledged; print seconds since --since
  catch-up   wait until replica --replica holds everything the others had committed when the
             wait began; print seconds
  wait-current  wait until replica --replica's log is within --lag ops of the primary's commit
  acks       print how many operations history.jsonl holds as acknowledged
  verify     check the history against the cluster: every acknowledged operation is present,
             no resource was ever granted to two live leases
"""

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time

HOT_RESOURCES = list(range(1, 13))  # 12 resources, 4 writers, bundles of 1-2: constant contention
HOLDERS_BASE = 1000
TTL = "10m"  # longer than the test: a lease ends only by an acknowledged release
CALL_TIMEOUT = "5s"  # the client's own deadline for one call
# How long one operation is retried with its operation id to learn its outcome: well inside
# the cluster's dedupe window (set by --dedupe-window), because a retry that arrives after the
# window is executed afresh instead of returning the original outcome.
OUTCOME_DEADLINE_S = 8.0

EXIT_OK, EXIT_DEFINITE, EXIT_USAGE, EXIT_INDEFINITE = 0, 1, 2, 3
# Answers with exit status 1 that say "nothing was executed" rather than a command's result:
# the same operation id is simply sent again.
NOT_EXECUTED = ("unavailable", "overloaded", "timeout")


class CheckFailed(Exception):
    """A property the test asserts does not hold."""


def log(message):
    print(f"[workload {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


OPERATOR, APPLICATION = "operator", "application"


class Cli:
    """Runs the allocdb binary; every call is bounded."""

    def __init__(self, binary, addresses, certs=None):
        self.binary = binary
        self.addresses = addresses
        self.certs = certs

    def security(self, role):
        """The flags that pick TLS with `role`'s certificate, or plaintext."""
        if self.certs is None:
            return ["--insecure"]
        return ["--certs", self.certs, "--role", role]

    def run(self, args, timeout_s=30.0):
        try:
            done = subprocess.run(
                [self.binary, *args],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, "", f"allocdb {' '.join(args)}: no answer after {timeout_s}s"
        return done.returncode, done.stdout, done.stderr

    def client(self, command, operation_id=None, timeout=CALL_TIMEOUT, role=APPLICATION):
        args = ["client", *self.security(role), "--addresses", self.addresses, "--timeout", timeout]
        if operation_id is not None:
            args += ["--operation-id", str(operation_id)]
        code, out, err = self.run(args + command, timeout_s=60.0)
        reply = parse_json_line(out)
        return code, reply, err

    def status(self):
        code, out, err = self.run(["status", *self.security(OPERATOR), "--addresses", self.addresses], timeout_s=30.0)
        if code is None:
            return []
        replicas = []
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    replicas.append(json.loads(line))
                except json.JSONDecodeError:
                    log(f"status printed a line that is not JSON: {line!r}")
        return replicas


def parse_json_line(out):
    for line in reversed(out.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


class OperationIds:
    """Application keys for this run, in the layout docs/semantics.md gives: the highest op
    this run has seen in any answer (`issued_after_op`, bits 64..127) and a nonce (a random
    32-bit run prefix and a counter), as the client library makes them. A key issued after an
    op the cluster has already seen is never refused as too old while the run retries it."""

    def __init__(self):
        self.prefix = random.SystemRandom().getrandbits(32)
        self.counter = 0
        self.op_seen = 0
        self.lock = threading.Lock()

    def observe(self, reply):
        """Notes the op of an answer (every committed or refused write reports one)."""
        op = reply.get("op") if isinstance(reply, dict) else None
        if isinstance(op, int):
            with self.lock:
                self.op_seen = max(self.op_seen, op)

    def next(self):
        with self.lock:
            self.counter += 1
            assert self.counter < 1 << 32, "nonce counter exhausted"
            nonce = (self.prefix << 32) | self.counter
            return (self.op_seen << 64) | nonce


def write(cli, ids, command, deadline_s=None, role=APPLICATION):
    """One write with one operation id, retried until its outcome is definite or the deadline.

    Returns (status, reply, operation_id, attempts): status is "ok", "fail" (definite failure)
    or "unknown" (still indefinite at the deadline)."""
    operation_id = ids.next()
    deadline = time.monotonic() + (OUTCOME_DEADLINE_S if deadline_s is None else deadline_s)
    attempts = 0
    last_err = ""
    while True:
        attempts += 1
        code, reply, err = cli.client(command, operation_id=operation_id, role=role)
        ids.observe(reply)
        if code == EXIT_OK and reply is not None and reply.get("result") == "ok":
            return "ok", reply, operation_id, attempts
        if code == EXIT_DEFINITE and reply is not None and reply.get("result") not in NOT_EXECUTED:
            return "fail", reply, operation_id, attempts
        if code == EXIT_USAGE and reply is not None and reply.get("result") == "invalid":
            raise CheckFailed(f"allocdb client rejected the command line {command}: {reply}")
        # Indefinite (3), connection-setup trouble (2) or a killed/timed-out client: the write
        # may or may not have committed, so only the same operation id may be sent again.
        last_err = (err or "").strip().splitlines()[-1:] or [f"exit {code}"]
        if time.monotonic() > deadline:
            return "unknown", {"error": last_err, "exit": code}, operation_id, attempts
        time.sleep(0.2)


class History:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def append(self, record):
        record["t"] = time.time()
        with self.lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def load_history(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def position(reply):
    """(op, index) of a committed write's reply: where it sits in the log. One op is one batch
    of writes from many connections, and a batch applies in index order."""
    if "index" not in reply:
        raise CheckFailed(f"a committed write's reply has no index (allocdb too old?): {reply}")
    return int(reply["op"]), int(reply["index"])


def lease_fields(reply):
    """(lease_id, epoch, grant position (op, index)) of a reserve reply, as ints. For a reply
    with `retry: true` (the stored outcome of an earlier execution) the position is taken from
    the lease id, which is the committed position itself (op << 32 | index), so it does not
    depend on which op the retry's reply names."""
    lease_id = int(reply["lease_id"])
    if reply.get("retry"):
        granted_at = (lease_id >> 32, lease_id & 0xFFFF_FFFF)
    else:
        granted_at = position(reply)
    return lease_id, int(reply.get("epoch", 0)), granted_at


def cmd_setup(cli, args):
    ids = OperationIds()
    for resource in HOT_RESOURCES:
        status, reply, _, _ = write(cli, ids, ["create-resource", str(resource)], deadline_s=args.timeout, role=OPERATOR)
        result = (reply or {}).get("result")
        if status == "ok" or (status == "fail" and result == "already_exists"):
            continue
        raise CheckFailed(f"create-resource {resource}: {status} {reply}")
    log(f"created {len(HOT_RESOURCES)} hot resources")
    if cli.certs is not None:
        check_refusals(cli, ids)


def check_refusals(cli, ids):
    """On a TLS cluster: the application role may not create resources (a definite
    `forbidden`), and a plaintext client gets nothing done."""
    probe = random.SystemRandom().getrandbits(48) + 1_000_000
    code, reply, err = cli.client(["create-resource", str(probe)], operation_id=ids.next(), role=APPLICATION)
    if code != EXIT_DEFINITE or (reply or {}).get("result") != "forbidden":
        raise CheckFailed(f"an application client's create-resource was not forbidden: exit {code}, {reply}, {err.strip()}")
    plain = Cli(cli.binary, cli.addresses)
    code, reply, err = plain.client(["create-resource", str(probe)], operation_id=ids.next(), timeout="2s")
    if code == EXIT_OK or (reply or {}).get("result") == "ok":
        raise CheckFailed(f"a plaintext client's create-resource was executed: {reply}")
    log(f"refused as they should be: application create-resource (forbidden), plaintext client (exit {code})")


def writer(cli, ids, history, worker, stop_file, rng, errors, pause_s):
    try:
        write_loop(cli, ids, history, worker, stop_file, rng, pause_s)
    except Exception as error:  # noqa: BLE001 - reported by cmd_run, which then fails
        errors.append(f"writer {worker}: {error!r}")
        log(errors[-1])


def write_loop(cli, ids, history, worker, stop_file, rng, pause_s):
    holder = HOLDERS_BASE + worker
    held = []  # (lease_id, epoch)
    while not os.path.exists(stop_file):
        time.sleep(pause_s)
        if len(held) >= 2 or (held and rng.random() < 0.4):
            lease_id, epoch = held.pop(0)
            command = ["release", str(lease_id), "--holder", str(holder), "--epoch", str(epoch)]
            status, reply, operation_id, attempts = write(cli, ids, command)
            history.append(
                {
                    "kind": "release",
                    "lease_id": lease_id,
                    "holder": holder,
                    "status": status,
                    "reply": reply,
                    "operation_id": str(operation_id),
                    "attempts": attempts,
                }
            )
            continue
        count = 2 if rng.random() < 0.25 else 1
        resources = sorted(rng.sample(HOT_RESOURCES, count))
        command = ["reserve", *map(str, resources), "--holder", str(holder), "--ttl", TTL]
        status, reply, operation_id, attempts = write(cli, ids, command)
        history.append(
            {
                "kind": "reserve",
                "resources": resources,
                "holder": holder,
                "status": status,
                "reply": reply,
                "operation_id": str(operation_id),
                "attempts": attempts,
            }
        )
        if status == "ok":
            lease_id, epoch, _ = lease_fields(reply)
            held.append((lease_id, epoch))


def cmd_run(cli, args):
    os.makedirs(args.out, exist_ok=True)
    history = History(os.path.join(args.out, "history.jsonl"))
    ids = OperationIds()
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    log(f"{args.writers} writers, seed {seed} (replay the choices with --seed {seed})")
    threads = []
    errors = []
    for worker in range(args.writers):
        rng = random.Random(seed * 1000 + worker)
        thread = threading.Thread(
            target=writer, args=(cli, ids, history, worker, args.stop_file, rng, errors, args.pause_ms / 1000.0),
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    if errors:
        raise CheckFailed("; ".join(errors))
    log("writers stopped")


def role_of(replica):
    return replica.get("role", "unreachable")


def held_op(replica):
    """The last op this replica holds and has applied: `applied` when status reports it
    (newer servers), else `op` (the last op in its log)."""
    op = int(replica.get("op") or 0)
    applied = replica.get("applied")
    return op if applied is None else min(op, int(applied))


def find_primary(cli):
    """The primary's index when exactly one reachable replica of the newest view says primary."""
    replicas = [r for r in cli.status() if role_of(r) != "unreachable"]
    if not replicas:
        return None
    newest = max(int(r.get("view", 0)) for r in replicas)
    primaries = [r for r in replicas if role_of(r) == "primary" and int(r.get("view", -1)) == newest]
    if len(primaries) != 1:
        return None
    return int(primaries[0]["replica"])


def cmd_primary(cli, args):
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        primary = find_primary(cli)
        if primary is not None:
            print(primary)
            return
        time.sleep(0.2)
    raise CheckFailed(f"no single primary after {args.timeout}s: {cli.status()}")


def cmd_failover(cli, args):
    """Seconds from --since until a fresh write is acknowledged (by whichever replica serves)."""
    ids = OperationIds()
    deadline = time.monotonic() + args.timeout
    probe = random.SystemRandom().getrandbits(48) + 1_000_000
    while time.monotonic() < deadline:
        code, reply, _ = cli.client(["create-resource", str(probe)], operation_id=ids.next(), timeout="2s", role=OPERATOR)
        if code == EXIT_OK and reply is not None and reply.get("result") == "ok":
            print(f"{time.time() - args.since:.3f}")
            return
        time.sleep(0.05)
    raise CheckFailed(f"no write acknowledged {args.timeout}s after the primary was killed: {cli.status()}")


def cmd_catch_up(cli, args):
    """Seconds until replica --replica holds (op) and knows committed (commit) everything the
    others had committed when the wait began. `commit` alone is not enough: a replica learns
    the commit number from the primary's heartbeat long before its log has been repaired up to
    it, and until then it cannot acknowledge new prepares."""
    start = time.monotonic()
    others = [r for r in cli.status() if int(r.get("replica", -1)) != args.replica and role_of(r) != "unreachable"]
    if not others:
        raise CheckFailed("catch-up: no other replica is reachable")
    target = max(int(r.get("commit") or 0) for r in others)
    last = None
    while time.monotonic() - start < args.timeout:
        for replica in cli.status():
            if int(replica.get("replica", -1)) == args.replica:
                last = replica
        if (
            last is not None
            and role_of(last) in ("primary", "backup")
            and min(held_op(last), int(last.get("commit") or 0)) >= target
        ):
            log(
                f"replica {args.replica} caught up: op {last.get('op')}, applied {last.get('applied')}, "
                f"commit {last.get('commit')} >= {target}"
            )
            print(f"{time.monotonic() - start:.3f}")
            return
        time.sleep(0.1)
    raise CheckFailed(f"replica {args.replica} did not reach commit {target} in {args.timeout}s; last status {last}")


def cmd_wait_current(cli, args):
    """Seconds until replica --replica's log reaches the primary's commit point (within --lag
    ops) while writes go on: a replica that only reached an old target is still a weak member
    of the quorum."""
    start = time.monotonic()
    last = []
    while time.monotonic() - start < args.timeout:
        last = cli.status()
        primary = [r for r in last if role_of(r) == "primary"]
        mine = [r for r in last if int(r.get("replica", -1)) == args.replica]
        if len(primary) == 1 and mine and role_of(mine[0]) in ("primary", "backup"):
            lag = int(primary[0].get("commit") or 0) - held_op(mine[0])
            if lag <= args.lag:
                log(f"replica {args.replica} is current: its log is {max(lag, 0)} ops behind the primary's commit")
                print(f"{time.monotonic() - start:.3f}")
                return
        time.sleep(0.2)
    raise CheckFailed(
        f"replica {args.replica} did not get within {args.lag} ops of the primary's commit in "
        f"{args.timeout}s while writes continued (repair slower than writes?); last status {last}"
    )


def cmd_acks(_cli, args):
    history = load_history(os.path.join(args.out, "history.jsonl"))
    print(sum(1 for record in history if record["status"] == "ok"))


def query(cli, command, min_op):
    """A linearizable read, retried while the cluster cannot answer (bounded)."""
    deadline = time.monotonic() + 30.0
    while True:
        code, reply, err = cli.client(command + ["--min-op", str(min_op)])
        if reply is not None and code in (EXIT_OK, EXIT_DEFINITE) and reply.get("result") not in NOT_EXECUTED:
            return reply
        if time.monotonic() > deadline:
            raise CheckFailed(f"{' '.join(command)}: no answer ({err.strip()})")
        time.sleep(0.2)


def lease_resources(reply):
    resources = reply.get("resources", [])
    return sorted(int(r) for r in resources)


def check_history(history):
    """Per resource, in commit order: a lease is granted only after the previous lease's
    acknowledged release. Returns (live lease per resource, releases) and raises on overlap."""
    reserves = [r for r in history if r["kind"] == "reserve" and r["status"] == "ok"]
    released = {}
    maybe_released = set()
    for record in history:
        if record["kind"] != "release":
            continue
        if record["status"] == "ok":
            # Every answer, a retried one included, reports the op and index at which the
            # release executed.
            released[int(record["lease_id"])] = position(record["reply"])
        elif record["status"] == "unknown":
            maybe_released.add(int(record["lease_id"]))
    grants = {}
    for record in reserves:
        lease_id, _, granted_at = lease_fields(record["reply"])
        for resource in record["resources"]:
            grants.setdefault(resource, []).append((granted_at, lease_id))
    violations = []
    for resource, leases in grants.items():
        leases.sort()
        for (at_a, lease_a), (at_b, lease_b) in zip(leases, leases[1:]):
            released_at = released.get(lease_a)
            # A release and the next grant may share one committed batch (the primary batches
            # writes from many connections); a batch applies in index order, so (op, index)
            # orders them exactly: the release must come first.
            if released_at is not None and released_at < at_b:
                continue
            if lease_a in maybe_released:
                continue  # checked against the lease's final state in verify
            violations.append(
                f"resource {resource}: lease {lease_b} granted at (op, index) {at_b} while lease "
                f"{lease_a} (granted at {at_a}) was live (released at {released_at})"
            )
    if violations:
        raise CheckFailed("double allocation:\n  " + "\n  ".join(violations[:20]))
    return grants, released, maybe_released


def verify_leases(cli, reserves, released, maybe_released, min_op):
    """Every acknowledged reservation is present with its holder and resources."""
    problems = []
    lock = threading.Lock()
    work = list(reserves)

    def check_one():
        while True:
            with lock:
                if not work:
                    return
                record = work.pop()
            lease_id, _, _ = lease_fields(record["reply"])
            reply = query(cli, ["get-lease", str(lease_id)], min_op)
            result = reply.get("result")
            problem = None
            if lease_id in released and result in ("ok", "lease_retired"):
                if result == "ok" and reply.get("state") != "released":
                    problem = f"acknowledged release, but state {reply.get('state')}"
            elif lease_id in maybe_released and result in ("ok", "lease_retired"):
                pass
            elif result != "ok":
                problem = f"get-lease answered {result}"
            elif reply.get("state") != "reserved":
                problem = f"state {reply.get('state')}, expected reserved (TTL {TTL}, never released)"
            if problem is None and result == "ok":
                if int(reply.get("holder", -1)) != record["holder"]:
                    problem = f"holder {reply.get('holder')} != {record['holder']}"
                elif reply.get("resources") is not None and lease_resources(reply) != record["resources"]:
                    problem = f"resources {reply.get('resources')} != {record['resources']}"
            if problem is not None:
                with lock:
                    problems.append(f"lease {lease_id} ({record['resources']}): {problem}")

    threads = [threading.Thread(target=check_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if problems:
        raise CheckFailed("acknowledged operations lost or wrong:\n  " + "\n  ".join(problems[:20]))


def verify_resources(cli, grants, released, maybe_released, unknown_resources, min_op):
    """Each hot resource is held by exactly the lease the history says is live (or by none)."""
    problems = []
    for resource in HOT_RESOURCES:
        live = [lease for _, lease in grants.get(resource, []) if lease not in released]
        definite_live = [lease for lease in live if lease not in maybe_released]
        reply = query(cli, ["get-resource", str(resource)], min_op)
        if reply.get("result") != "ok":
            problems.append(f"resource {resource}: get-resource answered {reply.get('result')}")
            continue
        current = reply.get("lease_id")
        current = int(current) if current not in (None, "", 0, "0") else None
        if len(definite_live) > 1:
            problems.append(f"resource {resource}: leases {definite_live} are all live")
        elif definite_live and current != definite_live[0]:
            problems.append(f"resource {resource}: held by {current}, history says {definite_live[0]}")
        elif not definite_live and current is not None and current not in live and resource not in unknown_resources:
            problems.append(f"resource {resource}: held by lease {current} that no acknowledged write created")
    if problems:
        raise CheckFailed("resource state disagrees with the history:\n  " + "\n  ".join(problems))


def cmd_verify(cli, args):
    history = load_history(os.path.join(args.out, "history.jsonl"))
    reserves = [r for r in history if r["kind"] == "reserve" and r["status"] == "ok"]
    busy = sum(1 for r in history if r["kind"] == "reserve" and r["status"] == "fail")
    releases = sum(1 for r in history if r["kind"] == "release" and r["status"] == "ok")
    unknown = [r for r in history if r["status"] == "unknown"]
    retried = sum(1 for r in history if r.get("attempts", 1) > 1)
    unexpected = [
        r for r in history
        if r["status"] == "fail"
        and (r["reply"] or {}).get("result") != "resource_busy"
    ]
    log(
        f"history: {len(reserves)} reservations acknowledged, {busy} resource_busy, {releases} "
        f"releases acknowledged, {retried} operations retried after an indefinite outcome, "
        f"{len(unknown)} still unknown"
    )
    if len(reserves) < args.min_acks:
        raise CheckFailed(f"only {len(reserves)} acknowledged reservations (< {args.min_acks}): the workload did not run")
    if unexpected:
        raise CheckFailed(f"unexpected definite failures: {unexpected[:5]}")
    grants, released, maybe_released = check_history(history)
    unknown_resources = {res for r in unknown if r["kind"] == "reserve" for res in r["resources"]}
    min_op = max([int(r["reply"]["op"]) for r in history if r["status"] == "ok"] + [0])
    verify_leases(cli, reserves, released, maybe_released, min_op)
    verify_resources(cli, grants, released, maybe_released, unknown_resources, min_op)
    print(
        f"verified: {len(reserves)} acknowledged reservations and {releases} releases all present; "
        f"no resource granted to two live leases; {len(unknown)} outcomes unknown"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the allocdb binary")
    parser.add_argument("--addresses", required=True, help="replica addresses in index order")
    parser.add_argument(
        "--certs",
        help="certificate directory (ca.crt, operator and application pairs); without it every call is --insecure",
    )
    parser.add_argument(
        "--dedupe-window",
        type=float,
        default=60.0,
        help="the cluster's dedupe window in seconds (dedupe_window_slots x slot_ms); writes are retried for 80%% of it",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup").add_argument("--timeout", type=float, default=60.0)
    run = sub.add_parser("run")
    run.add_argument("--out", required=True)
    run.add_argument("--stop-file", required=True)
    run.add_argument("--writers", type=int, default=4)
    run.add_argument("--seed", type=int)
    run.add_argument("--pause-ms", type=float, default=0.0, help="each writer pauses this long between operations")
    sub.add_parser("primary").add_argument("--timeout", type=float, default=60.0)
    failover = sub.add_parser("failover")
    failover.add_argument("--since", type=float, required=True, help="Unix time of the kill")
    failover.add_argument("--timeout", type=float, default=30.0)
    catch_up = sub.add_parser("catch-up")
    catch_up.add_argument("--replica", type=int, required=True)
    catch_up.add_argument("--timeout", type=float, default=60.0)
    current = sub.add_parser("wait-current")
    current.add_argument("--replica", type=int, required=True)
    current.add_argument("--lag", type=int, default=64)
    current.add_argument("--timeout", type=float, default=60.0)
    sub.add_parser("acks").add_argument("--out", required=True)
    verify = sub.add_parser("verify")
    verify.add_argument("--out", required=True)
    verify.add_argument("--min-acks", type=int, default=20)
    args = parser.parse_args()
    global OUTCOME_DEADLINE_S
    OUTCOME_DEADLINE_S = 0.8 * args.dedupe_window
    cli = Cli(args.bin, args.addresses, args.certs)
    handlers = {
        "setup": cmd_setup,
        "run": cmd_run,
        "primary": cmd_primary,
        "failover": cmd_failover,
        "catch-up": cmd_catch_up,
        "wait-current": cmd_wait_current,
        "acks": cmd_acks,
        "verify": cmd_verify,
    }
    try:
        handlers[args.command](cli, args)
    except CheckFailed as failure:
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
