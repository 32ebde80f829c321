"""The blocking client against a real cluster: every command and query, every error."""

from __future__ import annotations

import datetime
import time
from typing import Callable

import pytest

import allocdb
from allocdb import LeaseState, Rejected, ResourceState, ResultCode
from allocdb.testing import LocalCluster

Ids = Callable[[], int]


def rejected(call: Callable[[], object]) -> Rejected:
    with pytest.raises(Rejected) as raised:
        call()
    return raised.value


def test_create_and_get_resource(client: allocdb.Client, ids: Ids) -> None:
    resource = ids()
    created = client.create_resource(resource)
    assert created.op > 0 and created.lease == 0 and not created.retry
    seen = client.get_resource(resource, min_op=created.op)
    assert seen.id == resource and seen.pool is None
    assert seen.state is ResourceState.AVAILABLE and seen.lease is None
    assert seen.version == 1 and seen.op >= created.op
    again = rejected(lambda: client.create_resource(resource))
    assert again.code is ResultCode.ALREADY_EXISTS and again.op > created.op
    assert "already_exists" in str(again) and again.definite


def test_reserve_activate_renew_release(client: allocdb.Client, ids: Ids) -> None:
    first, second, holder = ids(), ids(), ids()
    client.create_resource(first)
    client.create_resource(second)
    grant = client.reserve([first, second], holder, datetime.timedelta(seconds=30))
    assert grant.lease > 0 and grant.epoch == 1 and grant.deadline_slot is not None
    lease = client.get_lease(grant.lease, min_op=grant.op)
    assert lease.state is LeaseState.RESERVED and lease.live
    assert lease.resources == (first, second) and lease.holder == holder
    assert client.get_resource(first, min_op=grant.op).lease == grant.lease

    active = client.activate(grant.lease, holder, grant.epoch)  # no ttl: held until released
    assert active.deadline_slot is None
    assert client.get_lease(grant.lease, min_op=active.op).state is LeaseState.ACTIVE
    assert client.get_resource(second, min_op=active.op).state is ResourceState.ACTIVE

    renewed = client.renew(grant.lease, holder, active.epoch, 60.5)  # float seconds
    assert renewed.deadline_slot is not None

    released = client.release(grant.lease, holder, renewed.epoch)
    lease = client.get_lease(grant.lease, min_op=released.op)
    assert lease.state is LeaseState.RELEASED and not lease.live
    assert lease.epoch == renewed.epoch + 1 and lease.retire_slot is not None
    resource = client.get_resource(first, min_op=released.op)
    assert resource.state is ResourceState.AVAILABLE and resource.lease is None


def test_one_winner_and_fencing(client: allocdb.Client, ids: Ids) -> None:
    seat, alice, bob = ids(), ids(), ids()
    client.create_resource(seat)
    grant = client.reserve(seat, alice, 30)
    busy = rejected(lambda: client.reserve(seat, bob, 30))
    assert busy.code is ResultCode.RESOURCE_BUSY
    assert rejected(lambda: client.release(grant.lease, bob, grant.epoch)).code is (
        ResultCode.HOLDER_MISMATCH
    )
    assert rejected(lambda: client.release(grant.lease, alice, grant.epoch + 1)).code is (
        ResultCode.STALE_EPOCH
    )
    client.release(grant.lease, alice, grant.epoch)
    assert client.reserve(seat, bob, 30).lease != grant.lease


def test_pools_reserve_any_and_stats(client: allocdb.Client, ids: Ids) -> None:
    pool, holder = ids(), ids()
    members = [ids() for _ in range(3)]
    for member in members:
        client.create_resource(member, pool)
    stats = client.pool_stats(pool)
    assert (stats.pool, stats.total, stats.free) == (pool, 3, 3)
    grant = client.reserve_any(pool, 2, holder, 30)
    lease = client.get_lease(grant.lease, min_op=grant.op)
    assert len(lease.resources) == 2 and set(lease.resources) <= set(members)
    assert client.pool_stats(pool, min_op=grant.op).free == 1
    exhausted = rejected(lambda: client.reserve_any(pool, 2, holder, 30))
    assert exhausted.code is ResultCode.POOL_EXHAUSTED
    assert client.get_resource(members[0]).pool == pool


def test_revoke_and_reclaim(client: allocdb.Client, ids: Ids) -> None:
    seat, holder = ids(), ids()
    client.create_resource(seat)
    grant = client.reserve(seat, holder, 30)
    revoked = client.revoke(grant.lease)
    lease = client.get_lease(grant.lease, min_op=revoked.op)
    assert lease.state is LeaseState.REVOKING and lease.epoch == grant.epoch + 1
    assert client.get_resource(seat, min_op=revoked.op).state is ResourceState.REVOKING
    # The holder is fenced off, and nobody else gets the seat before reclaim.
    fenced = rejected(lambda: client.renew(grant.lease, holder, grant.epoch, 30))
    assert fenced.code is ResultCode.STALE_EPOCH
    assert rejected(lambda: client.reserve(seat, ids(), 30)).code is ResultCode.RESOURCE_BUSY
    reclaimed = client.reclaim(grant.lease)
    assert client.get_lease(grant.lease, min_op=reclaimed.op).state is LeaseState.REVOKED
    assert client.get_resource(seat, min_op=reclaimed.op).state is ResourceState.AVAILABLE


def test_a_reservation_expires_late_never_early(client: allocdb.Client, ids: Ids) -> None:
    seat, holder = ids(), ids()
    client.create_resource(seat)
    ttl = 0.3
    sent = time.monotonic()
    grant = client.reserve(seat, holder, ttl)
    deadline = time.monotonic() + 15
    while True:
        lease = client.get_lease(grant.lease)
        if lease.state is LeaseState.EXPIRED:
            break
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.05)
    assert time.monotonic() - sent >= ttl
    assert client.get_resource(seat, min_op=lease.op).state is ResourceState.AVAILABLE
    late = rejected(lambda: client.renew(grant.lease, holder, grant.epoch, 30))
    assert late.code is ResultCode.STALE_EPOCH  # expiry added one to the epoch


def test_ttl_conversion_uses_the_cluster_slot_length(client: allocdb.Client) -> None:
    slot_ms = client.slot_ms
    assert slot_ms > 0
    assert client.slots_for(datetime.timedelta(milliseconds=slot_ms)) == 1
    assert client.slots_for(slot_ms / 1000 + 1e-6) == 2  # rounded up
    assert client.slots_for(0) == 0
    assert client.slots_for(datetime.timedelta(seconds=30)) == -(-30_000 // slot_ms)


def test_a_ttl_beyond_the_cluster_maximum_is_refused(client: allocdb.Client, ids: Ids) -> None:
    longest = client.ttl_slots_max
    assert longest >= client.slots_for(datetime.timedelta(seconds=30))

    def slots(count: int) -> datetime.timedelta:
        return datetime.timedelta(milliseconds=count * client.slot_ms)

    assert client.slots_for(slots(longest + 1)) == longest + 1
    seat = ids()
    client.create_resource(seat)
    too_long = rejected(lambda: client.reserve(seat, 1, slots(longest + 1)))
    assert too_long.code is ResultCode.TTL_OUT_OF_RANGE
    grant = client.reserve(seat, 1, slots(longest))
    client.release(grant.lease, 1, grant.epoch)


def test_bad_arguments(client: allocdb.Client, ids: Ids) -> None:
    seat = ids()
    client.create_resource(seat)
    zero = rejected(lambda: client.reserve(seat, 1, 0))
    assert zero.code is ResultCode.TTL_OUT_OF_RANGE
    for ttl in (-1, -0.5, float("nan"), float("inf"), datetime.timedelta(seconds=-1)):
        with pytest.raises(allocdb.Invalid):
            client.reserve(seat, 1, ttl)
    with pytest.raises(ValueError):  # Invalid is a ValueError too
        client.reserve(seat, 1, -1)
    with pytest.raises(TypeError):
        client.reserve(seat, 1, True)
    with pytest.raises(TypeError):
        client.reserve(seat, 1, "30s")  # type: ignore[arg-type]
    with pytest.raises(allocdb.Invalid, match="at most 16"):
        client.reserve(list(range(allocdb.BUNDLE_SIZE_LIMIT + 1)), 1, 30)
    with pytest.raises(allocdb.Invalid, match="operation id 0"):
        client.reserve(seat, 1, 30, operation_id=0)
    with pytest.raises(OverflowError):
        client.reserve(2**128, 1, 30)
    with pytest.raises(OverflowError):
        client.reserve(seat, -1, 30)
    assert rejected(lambda: client.reserve([seat, seat], 1, 30)).code is (
        ResultCode.BUNDLE_DUPLICATE_RESOURCE
    )


def test_not_found(client: allocdb.Client, ids: Ids) -> None:
    assert rejected(lambda: client.get_resource(ids())).code is ResultCode.RESOURCE_NOT_FOUND
    assert rejected(lambda: client.get_lease(12345)).code in (
        ResultCode.LEASE_NOT_FOUND,
        ResultCode.LEASE_RETIRED,
    )
    assert rejected(lambda: client.pool_stats(ids())).code is ResultCode.POOL_NOT_FOUND
    assert rejected(lambda: client.reserve(ids(), 1, 30)).code is ResultCode.RESOURCE_NOT_FOUND


def test_128_bit_ids(client: allocdb.Client) -> None:
    resource = 2**128 - 1 - (time.time_ns() % 1000)
    holder = 2**127 + 5
    client.create_resource(resource, 2**100)
    grant = client.reserve(resource, holder, 30)
    lease = client.get_lease(grant.lease, min_op=grant.op)
    assert lease.holder == holder and lease.resources == (resource,)
    assert client.get_resource(resource).pool == 2**100


def test_application_keys_make_retries_exactly_once(client: allocdb.Client, ids: Ids) -> None:
    seat, holder = ids(), ids()
    client.create_resource(seat)
    key = client.new_operation_id()
    assert isinstance(key, int) and key > 0 and key != client.new_operation_id()
    first = client.reserve(seat, holder, 30, operation_id=key)
    assert first.operation_id == key and not first.retry
    again = client.reserve(seat, holder, 30, operation_id=key)
    assert again.retry and (again.lease, again.op, again.index) == (
        first.lease,
        first.op,
        first.index,
    )
    conflict = rejected(lambda: client.release(first.lease, holder, 1, operation_id=key))
    assert conflict.code is ResultCode.OPERATION_CONFLICT and conflict.code.is_key_refusal


def test_results_are_values(client: allocdb.Client, ids: Ids) -> None:
    seat = ids()
    created = client.create_resource(seat)
    assert repr(created).startswith(f"Committed(op={created.op}, index=")
    assert "lease=0," in repr(created) and "retry=False" in repr(created)
    first = client.get_resource(seat, min_op=created.op)
    assert repr(first) == (
        f"Resource(id={seat}, pool=None, state=ResourceState.AVAILABLE, lease=None, "
        f"version=1, op={first.op})"
    )
    assert first == first and hash(first) == hash(first)
    assert {first: 1}[first] == 1
    with pytest.raises(AttributeError):
        first.id = 3  # type: ignore[misc]
    grant = client.reserve(seat, 7, 30)
    lease = client.get_lease(grant.lease)
    assert repr(lease).startswith(f"Lease(id={grant.lease}, holder=7, state=LeaseState.RESERVED")
    assert f"resources=({seat},)" in repr(lease)
    stats = client.stats()
    assert stats.frames_sent > 0 and stats.requests_sent >= stats.frames_sent
    assert stats.session_id is not None and stats.op_max_seen >= grant.op
    assert repr(stats).startswith("ClientStats(frames_sent=")


def test_result_codes_match_the_core() -> None:
    from allocdb import _allocdb

    assert len(ResultCode) == 26
    assert [(code.name.lower(), code.value) for code in ResultCode] == _allocdb.RESULT_CODES
    assert [code.value for code in ResultCode] == list(range(26))
    assert ResultCode(4) is ResultCode.RESOURCE_BUSY


def test_errors_pickle_and_keep_their_fields() -> None:
    import pickle

    error = Rejected("resource_busy (op 3)", 4, 3)
    assert repr(type(error)) == "<class 'allocdb.Rejected'>"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.op, str(copy)) == (ResultCode.RESOURCE_BUSY, 3, str(error))
    indefinite = pickle.loads(pickle.dumps(allocdb.Indefinite("unknown", 2**100)))
    assert indefinite.operation_id == 2**100 and not indefinite.definite
    for cls in (
        allocdb.Rejected,
        allocdb.Indefinite,
        allocdb.Unavailable,
        allocdb.Timeout,
        allocdb.Invalid,
        allocdb.Forbidden,
        allocdb.Closed,
    ):
        assert issubclass(cls, allocdb.AllocDBError)


def test_context_manager_closes(cluster: LocalCluster, ids: Ids) -> None:
    with allocdb.Client(",".join(cluster.addresses), **cluster.client_options()) as client:
        client.create_resource(ids())
        assert "connected" in repr(client)
    with pytest.raises(allocdb.Closed) as raised:
        client.create_resource(ids())
    assert raised.value.operation_id is None and raised.value.definite


def test_options_are_checked(cluster: LocalCluster) -> None:
    with pytest.raises(allocdb.Invalid, match="security"):
        allocdb.Client(cluster.addresses)
    with pytest.raises(allocdb.Invalid, match="not both"):
        allocdb.Client(cluster.addresses, insecure=True, certs="/nonexistent")
    with pytest.raises(allocdb.Invalid, match="role"):
        allocdb.Client(cluster.addresses, insecure=True, role="root")
    with pytest.raises(allocdb.Invalid, match="cannot read"):
        allocdb.Client(cluster.addresses, certs="/nonexistent")
    with pytest.raises(allocdb.Invalid, match="at least one"):
        allocdb.Client([], insecure=True)
    with pytest.raises(allocdb.Invalid):
        allocdb.Client(cluster.addresses, insecure=True, cluster_id=999)  # another cluster


def test_unreachable_cluster_is_unavailable() -> None:
    from allocdb.testing import _free_ports

    port = _free_ports(1)[0]
    started = time.monotonic()
    with pytest.raises(allocdb.Unavailable):
        allocdb.Client([f"127.0.0.1:{port}"], insecure=True, call_timeout=0.5)
    assert time.monotonic() - started < 5


def test_threads_share_one_client(client: allocdb.Client, ids: Ids) -> None:
    from concurrent.futures import ThreadPoolExecutor

    seats = [ids() for _ in range(64)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(client.create_resource, seats))
        grants = list(pool.map(lambda seat: client.reserve(seat, 5, 30), seats))
    assert len({grant.lease for grant in grants}) == len(seats)


def test_a_blocking_call_lets_signal_handlers_run() -> None:
    """Ctrl-C reaches Python during a blocking call (here: connecting to nobody for 10 s)."""
    import os
    import signal
    import threading

    from allocdb.testing import _free_ports

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGINT, handler)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    try:
        timer.start()
        with pytest.raises(Interrupted):
            allocdb.Client([f"127.0.0.1:{_free_ports(1)[0]}"], insecure=True, call_timeout=10)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 3
