"""``allocdb.Client`` (blocking) and ``allocdb.AsyncClient`` (asyncio).

Both are thin shells over one native handle (``_allocdb.Core``), which wraps the Rust
``allocdb-client``: leader discovery, failover, session-numbered exactly-once retries and
batching of concurrent calls all happen in Rust, on one tokio runtime per process.
"""

from __future__ import annotations

import asyncio
import datetime
import os
from typing import Any, Callable, Optional, Sequence, Union

from . import _allocdb
from ._allocdb import ClientStats, Committed, Lease, PoolStats, Resource
from ._errors import Closed

__all__ = ["Client", "AsyncClient", "Duration", "Resources"]

#: A duration: a ``datetime.timedelta`` or a number of seconds (``int`` or ``float``).
Duration = Union[datetime.timedelta, int, float]
#: One resource id, or a bundle of them (reserved all or nothing).
Resources = Union[int, Sequence[int]]

_NOT_CONNECTED = (
    "the client is not connected: use `async with AsyncClient(...) as client`, "
    "`client = await AsyncClient(...)` or `await client.connect()`"
)


def _addresses(addresses: Union[str, Sequence[str]]) -> list[str]:
    if isinstance(addresses, str):
        return [address.strip() for address in addresses.split(",") if address.strip()]
    return list(addresses)


def _not_connected() -> "asyncio.Future[Any]":
    raise Closed(_NOT_CONNECTED)


def _core(
    addresses: Union[str, Sequence[str]],
    cluster_id: int,
    insecure: bool,
    certs: Optional[Union[str, "os.PathLike[str]"]],
    role: str,
    call_timeout: Optional[Duration],
    request_timeout: Optional[Duration],
    connect_timeout: Optional[Duration],
    in_flight_max: Optional[int],
    batch_requests_max: Optional[int],
    frames_in_flight_max: Optional[int],
) -> _allocdb.Core:
    return _allocdb.Core(
        _addresses(addresses),
        cluster_id,
        insecure,
        os.fspath(certs) if certs is not None else None,
        role,
        call_timeout,
        request_timeout,
        connect_timeout,
        in_flight_max,
        batch_requests_max,
        frames_in_flight_max,
    )


class Client:
    """A blocking connection to an AllocDB cluster; connects on construction.

    ``addresses`` are the replicas' client addresses in replica-index order (a list, or one
    comma-separated string). Choose the transport explicitly: ``certs=<dir>`` (TLS 1.3 with the
    ``ca.crt``, ``<role>.crt`` and ``<role>.key`` that ``allocdb certs`` writes) with ``role``
    ``"application"`` or ``"operator"``, or ``insecure=True`` for a cluster started with
    ``--insecure``. ``cluster_id=0`` accepts any cluster.

    ``call_timeout`` (default 10 s) bounds every call, retries and failovers included;
    ``request_timeout`` and ``connect_timeout`` (0.5 s) how long one replica may stay silent.
    ``in_flight_max`` (1024) bounds calls in flight; ``batch_requests_max`` (1024) requests per
    frame; ``frames_in_flight_max`` (4) frames unanswered at once.

    Calls block the calling thread with the GIL released; the client is thread-safe, and calls
    made from several threads at once share frames. Use it as a context manager, or ``close()``.

    Raises ``Invalid`` for unusable options, ``Unavailable`` when no replica answered within
    ``call_timeout``, ``Forbidden`` when the cluster refused the certificate.
    """

    def __init__(
        self,
        addresses: Union[str, Sequence[str]],
        *,
        cluster_id: int = 0,
        insecure: bool = False,
        certs: Optional[Union[str, "os.PathLike[str]"]] = None,
        role: str = "application",
        call_timeout: Optional[Duration] = None,
        request_timeout: Optional[Duration] = None,
        connect_timeout: Optional[Duration] = None,
        in_flight_max: Optional[int] = None,
        batch_requests_max: Optional[int] = None,
        frames_in_flight_max: Optional[int] = None,
    ) -> None:
        self._core = _core(
            addresses,
            cluster_id,
            insecure,
            certs,
            role,
            call_timeout,
            request_timeout,
            connect_timeout,
            in_flight_max,
            batch_requests_max,
            frames_in_flight_max,
        )
        self._core.connect()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self._core.connected else "closed"
        return f"<allocdb.Client {state}>"

    def close(self) -> None:
        """Closes the client: later calls raise ``Closed``. Calls running in other threads
        finish normally (their deadlines bound them)."""
        self._core.close()

    @property
    def cluster_id(self) -> int:
        """The cluster's id (learned from the first replica when ``cluster_id=0``)."""
        return self._core.cluster_id

    @property
    def slot_ms(self) -> int:
        """The cluster's slot length in milliseconds: TTLs are counted in slots."""
        return self._core.slot_ms

    @property
    def ttl_slots_max(self) -> int:
        """The longest TTL the cluster accepts, in slots (``allocdb format --ttl-slots-max``);
        a longer one is refused ``TTL_OUT_OF_RANGE``."""
        return self._core.ttl_slots_max

    def slots_for(self, ttl: Duration) -> int:
        """The number of slots covering ``ttl``, rounded up; every ``ttl`` argument is
        converted this way. A zero duration is 0 slots, which the cluster refuses with
        ``TTL_OUT_OF_RANGE``."""
        return self._core.slots_for(ttl)

    def stats(self) -> ClientStats:
        """What the client has done so far (frames, requests, reconnects, session)."""
        return self._core.stats()

    def new_operation_id(self) -> int:
        """A fresh *application key*: pass it as ``operation_id=`` to a write whose retries
        must outlive this client (another process, a restart). Store it before the first
        submission; the cluster keeps its outcome for its dedupe window, and a retry after that
        is refused ``OPERATION_EXPIRED``, never executed twice."""
        return self._core.new_operation_id()  # type: ignore[no-any-return]

    def create_resource(
        self,
        resource: int,
        pool: Optional[int] = None,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        """Creates a resource, optionally as a member of ``pool`` (operator role).

        Raises ``Rejected`` (``ALREADY_EXISTS``, ``RESOURCE_TABLE_FULL``, ...); see the class
        docstring of each error for the rest."""
        return self._core.create_resource(resource, pool, operation_id, timeout)  # type: ignore[no-any-return]

    def reserve(
        self,
        resources: Resources,
        holder: int,
        ttl: Duration,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        """Reserves one resource, or a bundle of up to 16 all or nothing, for ``holder``
        until ``ttl`` from now unless activated or renewed.

        Returns the grant: ``.lease`` (the lease id, also a fencing token) and ``.epoch`` (pass
        both to ``activate``, ``renew``, ``release``). Raises ``Rejected`` with
        ``RESOURCE_BUSY`` when another live lease holds one of them, ``RESOURCE_NOT_FOUND``,
        ``TTL_OUT_OF_RANGE``, ...; ``Invalid`` for more than 16 resources."""
        bundle = [resources] if isinstance(resources, int) else resources
        return self._core.reserve(bundle, holder, ttl, operation_id, timeout)  # type: ignore[no-any-return]

    def reserve_any(
        self,
        pool: int,
        count: int,
        holder: int,
        ttl: Duration,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        """Reserves ``count`` free members of ``pool`` (chosen by the cluster) for ``holder``.
        Read the lease (``get_lease(grant.lease)``) to see which. Raises ``Rejected`` with
        ``POOL_EXHAUSTED`` or ``POOL_NOT_FOUND``, ..."""
        return self._core.reserve_any(pool, count, holder, ttl, operation_id, timeout)  # type: ignore[no-any-return]

    def activate(
        self,
        lease: int,
        holder: int,
        epoch: int,
        ttl: Optional[Duration] = None,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        """Confirms a reservation; ``ttl=None`` holds it until released or revoked. Raises
        ``Rejected`` with ``HOLDER_MISMATCH``, ``STALE_EPOCH``, ``INVALID_STATE``,
        ``LEASE_EXPIRED``, ..."""
        return self._core.activate(lease, holder, epoch, ttl, operation_id, timeout)  # type: ignore[no-any-return]

    def renew(
        self,
        lease: int,
        holder: int,
        epoch: int,
        ttl: Duration,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        """Extends a reserved or active lease to ``ttl`` from now. Renew before the deadline
        by your own clock; after it the answer is ``LEASE_EXPIRED``."""
        return self._core.renew(lease, holder, epoch, ttl, operation_id, timeout)  # type: ignore[no-any-return]

    def release(
        self,
        lease: int,
        holder: int,
        epoch: int,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        """Gives the lease's resources back."""
        return self._core.release(lease, holder, epoch, operation_id, timeout)  # type: ignore[no-any-return]

    def revoke(
        self,
        lease: int,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        """Takes a lease away from its holder (operator role): the holder is fenced off (its
        epoch is stale) but the resources stay held until ``reclaim``."""
        return self._core.revoke(lease, operation_id, timeout)  # type: ignore[no-any-return]

    def reclaim(
        self,
        lease: int,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        """Frees the resources of a revoked lease (operator role)."""
        return self._core.reclaim(lease, operation_id, timeout)  # type: ignore[no-any-return]

    def get_resource(
        self,
        resource: int,
        *,
        min_op: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Resource:
        """Reads a resource, from state at least as new as ``min_op`` (pass a write's ``op``
        to read your own write). Raises ``Rejected`` with ``RESOURCE_NOT_FOUND``; ``Timeout``
        when the deadline passed."""
        return self._core.get_resource(resource, min_op, timeout)  # type: ignore[no-any-return]

    def get_lease(
        self,
        lease: int,
        *,
        min_op: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Lease:
        """Reads a lease. Raises ``Rejected`` with ``LEASE_NOT_FOUND`` or ``LEASE_RETIRED``."""
        return self._core.get_lease(lease, min_op, timeout)  # type: ignore[no-any-return]

    def pool_stats(
        self,
        pool: int,
        *,
        min_op: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> PoolStats:
        """Reads a pool's member count and how many are free. Raises ``Rejected`` with
        ``POOL_NOT_FOUND``."""
        return self._core.pool_stats(pool, min_op, timeout)  # type: ignore[no-any-return]


class AsyncClient:
    """An asyncio connection to an AllocDB cluster.

    Takes the same arguments as ``Client``; connects when entered (``async with``), awaited
    (``client = await AsyncClient(...)``) or by ``await client.connect()``, and is then bound
    to the running event loop. Every call is a coroutine; thousands may run at once and are
    coalesced into shared frames. No thread is used per call: the calls run on the process's
    tokio runtime and their answers reach the loop through one watched descriptor
    (``loop.add_reader``, so the loop must support it: the default loop on Linux and macOS
    does, and so does uvloop).

    Cancelling a call stops the wait, not the request: a cancelled write may still commit. To
    learn its outcome later, give it an ``operation_id`` from ``new_operation_id()``.
    """

    def __init__(
        self,
        addresses: Union[str, Sequence[str]],
        *,
        cluster_id: int = 0,
        insecure: bool = False,
        certs: Optional[Union[str, "os.PathLike[str]"]] = None,
        role: str = "application",
        call_timeout: Optional[Duration] = None,
        request_timeout: Optional[Duration] = None,
        connect_timeout: Optional[Duration] = None,
        in_flight_max: Optional[int] = None,
        batch_requests_max: Optional[int] = None,
        frames_in_flight_max: Optional[int] = None,
    ) -> None:
        self._core = _core(
            addresses,
            cluster_id,
            insecure,
            certs,
            role,
            call_timeout,
            request_timeout,
            connect_timeout,
            in_flight_max,
            batch_requests_max,
            frames_in_flight_max,
        )
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        # The loop's `create_future` while connected; raises `Closed` otherwise. Every call
        # starts with it (one attribute lookup, no extra frame: calls are the hot path).
        self._create_future: Callable[[], "asyncio.Future[Any]"] = _not_connected
        self._fd: Optional[int] = None

    async def connect(self) -> "AsyncClient":
        """Connects and binds the client to the running loop; returns the client."""
        if self._loop is not None:
            return self
        loop = asyncio.get_running_loop()
        fd = self._core.open_bridge(loop.call_soon)
        loop.add_reader(fd, self._core.drain)
        self._loop, self._fd, self._create_future = loop, fd, loop.create_future
        future = loop.create_future()
        try:
            self._core.connect(future)
            await future
        except BaseException:
            # Nothing else can be pending before the connection exists.
            loop.remove_reader(fd)
            self._core.close_bridge()
            self._loop, self._fd, self._create_future = None, None, _not_connected
            raise
        return self

    def __await__(self) -> Any:
        return self.connect().__await__()

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "connected" if self._core.connected else "not connected"
        return f"<allocdb.AsyncClient {state}>"

    async def close(self) -> None:
        """Closes the client: later calls raise ``Closed``. Waits for the calls already
        running to get their answers (their deadlines bound the wait), then unbinds the loop."""
        self._core.close()
        loop, fd = self._loop, self._fd
        if loop is None or fd is None:
            return
        if self._core.pending():
            idle = loop.create_future()
            self._core.wait_idle(idle)
            await idle
        loop.remove_reader(fd)
        self._core.close_bridge()
        self._loop, self._fd, self._create_future = None, None, _not_connected

    @property
    def cluster_id(self) -> int:
        """The cluster's id (learned from the first replica when ``cluster_id=0``)."""
        return self._core.cluster_id

    @property
    def slot_ms(self) -> int:
        """The cluster's slot length in milliseconds: TTLs are counted in slots."""
        return self._core.slot_ms

    @property
    def ttl_slots_max(self) -> int:
        """The longest TTL the cluster accepts, in slots (``allocdb format --ttl-slots-max``);
        a longer one is refused ``TTL_OUT_OF_RANGE``."""
        return self._core.ttl_slots_max

    def slots_for(self, ttl: Duration) -> int:
        return self._core.slots_for(ttl)

    def stats(self) -> ClientStats:
        return self._core.stats()

    async def new_operation_id(self) -> int:
        future = self._create_future()
        self._core.new_operation_id(future)
        return await future  # type: ignore[no-any-return]

    async def create_resource(
        self,
        resource: int,
        pool: Optional[int] = None,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        future = self._create_future()
        self._core.create_resource(resource, pool, operation_id, timeout, future)
        return await future  # type: ignore[no-any-return]

    async def reserve(
        self,
        resources: Resources,
        holder: int,
        ttl: Duration,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        future = self._create_future()
        self._core.reserve(
            [resources] if isinstance(resources, int) else resources,
            holder,
            ttl,
            operation_id,
            timeout,
            future,
        )
        return await future  # type: ignore[no-any-return]

    async def reserve_any(
        self,
        pool: int,
        count: int,
        holder: int,
        ttl: Duration,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        future = self._create_future()
        self._core.reserve_any(pool, count, holder, ttl, operation_id, timeout, future)
        return await future  # type: ignore[no-any-return]

    async def activate(
        self,
        lease: int,
        holder: int,
        epoch: int,
        ttl: Optional[Duration] = None,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        future = self._create_future()
        self._core.activate(lease, holder, epoch, ttl, operation_id, timeout, future)
        return await future  # type: ignore[no-any-return]

    async def renew(
        self,
        lease: int,
        holder: int,
        epoch: int,
        ttl: Duration,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        future = self._create_future()
        self._core.renew(lease, holder, epoch, ttl, operation_id, timeout, future)
        return await future  # type: ignore[no-any-return]

    async def release(
        self,
        lease: int,
        holder: int,
        epoch: int,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        future = self._create_future()
        self._core.release(lease, holder, epoch, operation_id, timeout, future)
        return await future  # type: ignore[no-any-return]

    async def revoke(
        self,
        lease: int,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        future = self._create_future()
        self._core.revoke(lease, operation_id, timeout, future)
        return await future  # type: ignore[no-any-return]

    async def reclaim(
        self,
        lease: int,
        *,
        operation_id: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Committed:
        future = self._create_future()
        self._core.reclaim(lease, operation_id, timeout, future)
        return await future  # type: ignore[no-any-return]

    async def get_resource(
        self,
        resource: int,
        *,
        min_op: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Resource:
        future = self._create_future()
        self._core.get_resource(resource, min_op, timeout, future)
        return await future  # type: ignore[no-any-return]

    async def get_lease(
        self,
        lease: int,
        *,
        min_op: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> Lease:
        future = self._create_future()
        self._core.get_lease(lease, min_op, timeout, future)
        return await future  # type: ignore[no-any-return]

    async def pool_stats(
        self,
        pool: int,
        *,
        min_op: Optional[int] = None,
        timeout: Optional[Duration] = None,
    ) -> PoolStats:
        future = self._create_future()
        self._core.pool_stats(pool, min_op, timeout, future)
        return await future  # type: ignore[no-any-return]


def _share_docstrings() -> None:
    """The asyncio methods do what the blocking ones do: one docstring for both."""
    for name, method in vars(AsyncClient).items():
        blocking = getattr(Client, name, None)
        if name.startswith("_") or blocking is None:
            continue
        if callable(method) and method.__doc__ is None and blocking.__doc__:
            method.__doc__ = blocking.__doc__


_share_docstrings()
