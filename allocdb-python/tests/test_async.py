"""The asyncio client: every call, the loop integration, and 1,000 concurrent coroutines."""

from __future__ import annotations

import asyncio
import datetime
from typing import Callable

import pytest

import allocdb
from allocdb import LeaseState, ResourceState, ResultCode
from allocdb.testing import LocalCluster

Ids = Callable[[], int]

COROUTINES = 1_000


def test_every_call(cluster: LocalCluster, ids: Ids) -> None:
    async def main() -> None:
        async with allocdb.AsyncClient(cluster.addresses, **cluster.client_options()) as client:
            pool, holder = ids(), ids()
            seats = [ids() for _ in range(3)]
            for seat in seats:
                await client.create_resource(seat, pool)
            assert (await client.pool_stats(pool)).free == 3
            grant = await client.reserve(seats[0], holder, datetime.timedelta(seconds=30))
            active = await client.activate(grant.lease, holder, grant.epoch, 30)
            renewed = await client.renew(grant.lease, holder, active.epoch, 45)
            released = await client.release(grant.lease, holder, renewed.epoch)
            lease = await client.get_lease(grant.lease, min_op=released.op)
            assert lease.state is LeaseState.RELEASED
            picked = await client.reserve_any(pool, 2, holder, 30)
            revoked = await client.revoke(picked.lease)
            reclaimed = await client.reclaim(picked.lease)
            assert reclaimed.op > revoked.op
            member = await client.get_resource(seats[1], min_op=reclaimed.op)
            assert member.state is ResourceState.AVAILABLE
            key = await client.new_operation_id()
            keyed = await client.reserve(seats[2], holder, 30, operation_id=key)
            retried = await client.reserve(seats[2], holder, 30, operation_id=key)
            assert retried.retry and retried.lease == keyed.lease
            with pytest.raises(allocdb.Rejected) as raised:
                await client.reserve(seats[2], ids(), 30)
            assert raised.value.code is ResultCode.RESOURCE_BUSY
            assert client.slot_ms > 0 and client.cluster_id == cluster.cluster_id
            assert client.stats().frames_sent > 0
        with pytest.raises(allocdb.Closed):
            await client.get_resource(seats[0])

    asyncio.run(main())


def test_a_thousand_coroutines(cluster: LocalCluster, ids: Ids) -> None:
    """1,000 coroutines on one client: every seat created, reserved and released by its own
    coroutine, then all of them racing for ten seats: exactly ten winners."""

    async def main() -> None:
        async with allocdb.AsyncClient(cluster.addresses, **cluster.client_options()) as client:
            seats = [ids() for _ in range(COROUTINES)]
            await asyncio.gather(*(client.create_resource(seat) for seat in seats))

            async def book(seat: int, holder: int) -> int:
                grant = await client.reserve(seat, holder, 30)
                lease = await client.get_lease(grant.lease, min_op=grant.op)
                assert lease.holder == holder and lease.resources == (seat,)
                await client.release(grant.lease, holder, grant.epoch)
                return grant.lease

            before = client.stats()
            leases = await asyncio.gather(
                *(book(seat, holder) for holder, seat in enumerate(seats, start=1))
            )
            assert len(set(leases)) == COROUTINES
            after = client.stats()
            frames = after.frames_sent - before.frames_sent
            requests = after.requests_sent - before.requests_sent
            # Concurrent calls share frames: far fewer frames than requests.
            assert requests >= 3 * COROUTINES and frames * 4 < requests, (frames, requests)

            hot = seats[:10]

            async def race(holder: int) -> bool:
                try:
                    await client.reserve(hot[holder % 10], holder, 30)
                    return True
                except allocdb.Rejected as error:
                    assert error.code is ResultCode.RESOURCE_BUSY
                    return False

            wins = await asyncio.gather(*(race(holder) for holder in range(COROUTINES)))
            assert sum(wins) == 10

    asyncio.run(main())


def test_cancelling_a_call_leaves_the_client_working(cluster: LocalCluster, ids: Ids) -> None:
    async def main() -> None:
        client = await allocdb.AsyncClient(cluster.addresses, **cluster.client_options())
        seat = ids()
        await client.create_resource(seat)
        task = asyncio.ensure_future(client.reserve(seat, 1, 30))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The request itself may still commit: the client keeps working either way.
        seen = await client.get_resource(seat)
        assert seen.state in (ResourceState.AVAILABLE, ResourceState.RESERVED)
        results = await asyncio.gather(*(client.get_resource(seat) for _ in range(100)))
        assert len(results) == 100
        await client.close()
        await client.close()  # closing twice is fine

    asyncio.run(main())


def test_close_waits_for_running_calls(cluster: LocalCluster, ids: Ids) -> None:
    async def main() -> None:
        client = await allocdb.AsyncClient(cluster.addresses, **cluster.client_options())
        seats = [ids() for _ in range(200)]
        running = [asyncio.ensure_future(client.create_resource(seat)) for seat in seats]
        await asyncio.sleep(0)
        await client.close()
        outcomes = await asyncio.gather(*running, return_exceptions=True)
        # Every call that started got its answer (none is left hanging).
        assert all(isinstance(outcome, allocdb.Committed) for outcome in outcomes), outcomes

    asyncio.run(asyncio.wait_for(main(), 30))


def test_not_connected(cluster: LocalCluster) -> None:
    async def main() -> None:
        client = allocdb.AsyncClient(cluster.addresses, **cluster.client_options())
        with pytest.raises(allocdb.Closed, match="not connected"):
            await client.get_resource(1)
        assert "not connected" in repr(client)

    asyncio.run(main())


def test_unreachable_cluster_is_unavailable() -> None:
    from allocdb.testing import _free_ports

    async def main() -> None:
        port = _free_ports(1)[0]
        client = allocdb.AsyncClient([f"127.0.0.1:{port}"], insecure=True, call_timeout=0.3)
        with pytest.raises(allocdb.Unavailable):
            await client.connect()
        # A failed connect leaves nothing registered on the loop.
        with pytest.raises(allocdb.Closed):
            await client.get_resource(1)

    asyncio.run(main())
