"""A failover during a stream of writes: the primary is SIGKILLed while 1,000-odd reservations
are in flight. Every write must end with a definite answer (directly, or after `Indefinite` by
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
#: Short per-call deadlines, so some writes straddle the failover and come back `Indefinite`.
CALL_TIMEOUT = 0.4
#: How many times one write is retried with its operation id before the test gives up.
RESOLVE_ATTEMPTS_MAX = 100


@pytest.fixture
def own_cluster(allocdb_binary: Path) -> Iterator[LocalCluster]:
    """A cluster of its own: this test kills replicas."""
    with LocalCluster(3, binary=allocdb_binary, cluster_id=12) as local:
        local.wait_for_primary()
        yield local


def test_primary_killed_during_a_stream_of_writes(own_cluster: LocalCluster) -> None:
    grants: dict[int, list[tuple[int, int]]] = {seat: [] for seat in range(SEATS)}
    counts = {"ok": 0, "busy": 0, "indefinite": 0, "resolved_by_retry": 0, "unavailable": 0}
    done = 0

    async def write_until_definite(
        client: allocdb.AsyncClient, seat: int, holder: int
    ) -> Optional[allocdb.Committed]:
        """One reservation to a definite end; the grant, or None when the seat was busy."""
        operation_id: Optional[int] = None
        for _ in range(RESOLVE_ATTEMPTS_MAX):
            try:
                grant = await client.reserve(
                    seat, holder, 600, operation_id=operation_id, timeout=CALL_TIMEOUT
                )
                if operation_id is not None:
                    counts["resolved_by_retry"] += 1
                return grant
            except allocdb.Rejected as error:
                assert error.code is ResultCode.RESOURCE_BUSY, error
                if operation_id is not None:
                    counts["resolved_by_retry"] += 1
                return None
            except allocdb.Indefinite as error:
                counts["indefinite"] += 1
                # Learn the outcome: the same operation id is answered, never run twice.
                operation_id = error.operation_id
            except allocdb.Unavailable:
                # Definitely not executed: sending it again (same id if it has one) is safe.
                counts["unavailable"] += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"seat {seat}: no definite answer after {RESOLVE_ATTEMPTS_MAX} tries")

    async def worker(client: allocdb.AsyncClient, jobs: "asyncio.Queue[tuple[int, int]]") -> None:
        nonlocal done
        while True:
            try:
                seat, holder = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            grant = await write_until_definite(client, seat, holder)
            if grant is None:
                counts["busy"] += 1
            else:
                counts["ok"] += 1
                assert grant.lease is not None
                grants[seat].append((holder, grant.lease))
            done += 1

    async def main() -> None:
        options = own_cluster.client_options()
        async with allocdb.AsyncClient(own_cluster.addresses, **options) as client:
            for seat in range(SEATS):
                await client.create_resource(seat)
            view_before = client.stats().view_max
            jobs: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
            for round_ in range(CONTENDERS):
                for seat in range(SEATS):
                    jobs.put_nowait((seat, 1 + round_ * SEATS + seat))
            workers = [asyncio.ensure_future(worker(client, jobs)) for _ in range(WORKERS)]
            # Let the stream run, then SIGKILL the primary in the middle of it.
            while done < SEATS // 2:
                await asyncio.sleep(0.01)
            primary = own_cluster.primary()
            assert primary is not None
            own_cluster.kill(primary)
            killed_at = time.monotonic()
            await asyncio.gather(*workers)
            failover_seconds = time.monotonic() - killed_at
            stats = client.stats()
            assert stats.view_max > view_before, "the cluster never changed view"

            # No seat granted twice, and every seat's holder is the one its grant names.
            for seat, winners in grants.items():
                assert len(winners) == 1, f"seat {seat} granted {len(winners)} times: {winners}"
            assert counts["ok"] == SEATS and counts["busy"] == SEATS * (CONTENDERS - 1)
            for seat in range(SEATS):
                (holder, lease), = grants[seat]
                seen = await client.get_resource(seat, timeout=10)
                assert seen.lease == lease
                assert (await client.get_lease(lease)).holder == holder
            print(
                f"failover: killed replica {primary}, stream finished "
                f"{failover_seconds:.1f} s later; {counts}; {stats}"
            )

        # The killed replica restarts from its disk and the cluster keeps serving.
        own_cluster.restart(primary)
        with allocdb.Client(own_cluster.addresses, **options) as client:
            client.create_resource(SEATS + 1)

    asyncio.run(asyncio.wait_for(main(), 120))
