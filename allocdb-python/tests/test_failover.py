"""A failover during a stream of writes: the primary is SIGKILLed while reservations are in
flight. Every write must end with a definite answer (directly, or after `Indefinite` by
retrying its operation id) and no seat may be granted twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

import allocdb
from allocdb import ResultCode
from allocdb.testing import LocalCluster

SEATS = 400
#: Every seat is wanted by this many holders: a double grant would show as two winners.
CONTENDERS = 3
WORKERS = 60
#: Short per-call deadlines, so writes in flight at the kill come back `Indefinite`.
CALL_TIMEOUT = 0.4
#: How many times one write is retried before the test gives up on it.
RESOLVE_ATTEMPTS_MAX = 100
#: Failovers tried until one of them left some write in doubt (almost always the first).
ROUNDS_MAX = 3


@pytest.fixture
def own_cluster(allocdb_binary: Path) -> Iterator[LocalCluster]:
    """A cluster of its own: this test kills replicas."""
    with LocalCluster(3, binary=allocdb_binary, cluster_id=12) as local:
        local.wait_for_primary()
        yield local


def wait_until_caught_up(cluster: LocalCluster, timeout: float = 30.0) -> None:
    """Until every replica answers, one is primary and every backup's log and state have
    reached the primary's commit (docs/operations.md: "caught up")."""
    deadline = time.monotonic() + timeout
    while True:
        status = cluster.status()
        primaries = [entry for entry in status if entry.get("role") == "primary"]
        if len(status) == len(cluster.addresses) and len(primaries) == 1:
            commit = primaries[0]["commit"]
            if all(
                entry.get("role") in ("primary", "backup")
                and entry["op"] >= commit
                and entry["applied"] >= commit
                for entry in status
            ):
                return
        assert time.monotonic() < deadline, f"not caught up: {status}"
        time.sleep(0.1)


class Stream:
    """One round: every seat of `seats` wanted by CONTENDERS holders, WORKERS at a time."""

    def __init__(self, client: allocdb.AsyncClient, seats: range) -> None:
        self.client = client
        self.seats = seats
        self.grants: dict[int, list[tuple[int, int]]] = {seat: [] for seat in seats}
        self.counts = {"ok": 0, "busy": 0, "indefinite": 0, "resolved_by_retry": 0}
        self.counts["unavailable"] = 0
        self.done = 0

    async def reserve_until_definite(self, seat: int, holder: int) -> Optional[allocdb.Committed]:
        """One reservation to a definite end; the grant, or None when the seat was taken."""
        # Half the writes carry an application key made before the first submission, the
        # other half are numbered by the library on its session: both kinds of id must
        # resolve an indefinite outcome.
        operation_id: Optional[int] = None
        if holder % 2 == 0:
            operation_id = await self.client.new_operation_id()
        in_doubt = False
        for _ in range(RESOLVE_ATTEMPTS_MAX):
            try:
                grant = await self.client.reserve(
                    seat, holder, 600, operation_id=operation_id, timeout=CALL_TIMEOUT
                )
                self.counts["resolved_by_retry"] += in_doubt
                return grant
            except allocdb.Rejected as error:
                assert error.code is ResultCode.RESOURCE_BUSY, error
                self.counts["resolved_by_retry"] += in_doubt
                return None
            except allocdb.Indefinite as error:
                self.counts["indefinite"] += 1
                # Learn the outcome: the same operation id is answered, never run twice.
                operation_id, in_doubt = error.operation_id, True
            except allocdb.Unavailable:
                # Definitely not executed: sending it again (same id if it has one) is safe.
                self.counts["unavailable"] += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"seat {seat}: no definite answer after {RESOLVE_ATTEMPTS_MAX} tries")

    async def worker(self, jobs: "asyncio.Queue[tuple[int, int]]") -> None:
        while not jobs.empty():
            seat, holder = jobs.get_nowait()
            grant = await self.reserve_until_definite(seat, holder)
            if grant is None:
                self.counts["busy"] += 1
            else:
                self.counts["ok"] += 1
                self.grants[seat].append((holder, grant.lease))
            self.done += 1

    async def run(self, cluster: LocalCluster, primary: int) -> None:
        """Runs the round and SIGKILLs `primary` when half the seats are answered."""
        jobs: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        for contender in range(CONTENDERS):
            for seat in self.seats:
                jobs.put_nowait((seat, 1 + contender * 1_000_000 + seat))
        workers = [asyncio.ensure_future(self.worker(jobs)) for _ in range(WORKERS)]
        while self.done < len(self.seats) // 2:
            await asyncio.sleep(0.001)
        cluster.kill(primary)  # SIGKILL: writes are in flight
        await asyncio.gather(*workers)

    async def check(self) -> None:
        """No seat granted twice; every seat is held by the lease its grant names."""
        for seat, winners in self.grants.items():
            assert len(winners) == 1, f"seat {seat} granted {len(winners)} times: {winners}"
        assert self.counts["ok"] == len(self.seats)
        assert self.counts["busy"] == len(self.seats) * (CONTENDERS - 1)
        # A write may be in doubt more than once before a retry resolves it.
        assert self.counts["resolved_by_retry"] <= self.counts["indefinite"]

        async def check_seat(seat: int) -> None:
            ((holder, lease),) = self.grants[seat]
            assert (await self.client.get_resource(seat, timeout=10)).lease == lease
            assert (await self.client.get_lease(lease, timeout=10)).holder == holder

        await asyncio.gather(*(check_seat(seat) for seat in self.seats))


def test_primary_killed_during_a_stream_of_writes(own_cluster: LocalCluster) -> None:
    options = own_cluster.client_options()
    indefinite_total = 0
    for round_ in range(ROUNDS_MAX):
        # Asked before the stream starts: `allocdb status` blocks the loop for a while, and
        # the kill must land while writes are in flight.
        primary = own_cluster.primary()
        assert primary is not None
        seats = range(round_ * SEATS, (round_ + 1) * SEATS)

        async def main(seats: range = seats, primary: int = primary) -> Stream:
            async with allocdb.AsyncClient(own_cluster.addresses, **options) as client:
                await asyncio.gather(*(client.create_resource(seat) for seat in seats))
                view_before = client.stats().view_max
                stream = Stream(client, seats)
                started = time.monotonic()
                await stream.run(own_cluster, primary)
                await stream.check()
                stats = client.stats()
                assert stats.view_max > view_before, "the cluster never changed view"
                print(
                    f"round {round_}: killed replica {primary}; {stream.counts}; "
                    f"{time.monotonic() - started:.1f} s; {stats}"
                )
                return stream

        stream = asyncio.run(asyncio.wait_for(main(), 120))
        indefinite_total += stream.counts["indefinite"]
        # Each in-doubt write was resolved by a retry with its id, which the counts show.
        assert stream.counts["resolved_by_retry"] > 0 or stream.counts["indefinite"] == 0
        # The killed replica recovers from its disk and catches up before the next round.
        own_cluster.restart(primary)
        wait_until_caught_up(own_cluster)
        if indefinite_total > 0:
            break
    assert indefinite_total > 0, f"{ROUNDS_MAX} failovers and no write was ever in doubt"
    with allocdb.Client(own_cluster.addresses, **options) as client:
        client.create_resource(10 * SEATS)
