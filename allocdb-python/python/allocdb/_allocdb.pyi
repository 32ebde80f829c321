"""Type stubs for the native module ``allocdb._allocdb`` (Rust, PyO3).

The result classes are re-exported by ``allocdb``; ``Core`` is the handle behind
``allocdb.Client`` and ``allocdb.AsyncClient`` and is not meant to be used directly.
"""

import asyncio
import datetime
from typing import Any, Callable, Optional, Sequence, Union, final

from ._types import LeaseState, ResourceState

_Duration = Union[datetime.timedelta, int, float]

RESULT_CODES: list[tuple[str, int]]
RESOURCE_STATES: list[tuple[str, int]]
LEASE_STATES: list[tuple[str, int]]
#: Resources one bundle (``reserve``) may hold.
BUNDLE_SIZE_LIMIT: int

@final
class Committed:
    """A write that committed with result ``ok``."""

    @property
    def op(self) -> int:
        """The op at which the write executed: pass it as ``min_op`` to read your own write."""
    @property
    def index(self) -> int:
        """Its position inside that op's batch; ``(op, index)`` orders every write."""
    @property
    def operation_id(self) -> int:
        """The operation id it carried (a session key, or the application key given)."""
    @property
    def lease(self) -> int:
        """The lease created or touched (also a fencing token); 0 for ``create_resource``."""
    @property
    def epoch(self) -> int:
        """The lease's epoch afterwards: pass it to ``activate``, ``renew``, ``release``."""
    @property
    def deadline_slot(self) -> Optional[int]:
        """The lease's deadline slot afterwards; ``None`` when held until released or when
        the command has no lease."""
    @property
    def retry(self) -> bool:
        """True when the cluster had already executed this operation id and answered with
        the stored outcome."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Resource:
    """One resource, as read at ``op``."""

    @property
    def id(self) -> int: ...
    @property
    def pool(self) -> Optional[int]: ...
    @property
    def state(self) -> ResourceState: ...
    @property
    def lease(self) -> Optional[int]:
        """The live lease holding it; ``None`` when available."""
    @property
    def version(self) -> int:
        """Starts at 1 and grows by one on every change of state or holder."""
    @property
    def op(self) -> int:
        """The applied op this answer reflects."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Lease:
    """One lease, as read at ``op``."""

    @property
    def id(self) -> int:
        """Its id: also its fencing token (ids grow with the log)."""
    @property
    def holder(self) -> int: ...
    @property
    def state(self) -> LeaseState: ...
    @property
    def epoch(self) -> int:
        """Starts at 1; ``release``, ``revoke`` and expiry add one."""
    @property
    def resources(self) -> tuple[int, ...]:
        """Its resources, in the order reserved."""
    @property
    def deadline_slot(self) -> Optional[int]:
        """Live: its deadline slot, or ``None`` when held until released. Terminal: ``None``."""
    @property
    def retire_slot(self) -> Optional[int]:
        """Terminal: the slot from which it is retired. Live: ``None``."""
    @property
    def live(self) -> bool:
        """Whether it still holds its resources (reserved, active or revoking)."""
    @property
    def op(self) -> int:
        """The applied op this answer reflects."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

@final
class PoolStats:
    """A pool's size and availability, as read at ``op``."""

    @property
    def pool(self) -> int: ...
    @property
    def total(self) -> int:
        """Members ever created in it."""
    @property
    def free(self) -> int:
        """Members currently available."""
    @property
    def op(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...

@final
class ClientStats:
    """What a client has done so far."""

    @property
    def frames_sent(self) -> int: ...
    @property
    def requests_sent(self) -> int:
        """Requests sent, resends included: ``requests_sent / frames_sent`` is the mean batch."""
    @property
    def reconnects(self) -> int:
        """Sessions opened after the first (failovers, redirects, reconnects)."""
    @property
    def view_max(self) -> int: ...
    @property
    def session_id(self) -> Optional[int]: ...
    @property
    def registrations(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def op_max_seen(self) -> int: ...
    def __eq__(self, other: object) -> bool: ...

_Future = Optional["asyncio.Future[Any]"]

@final
class Core:
    def __init__(
        self,
        addresses: list[str],
        cluster_id: int = 0,
        insecure: bool = False,
        certs: Optional[str] = None,
        role: str = "application",
        call_timeout: Optional[_Duration] = None,
        request_timeout: Optional[_Duration] = None,
        connect_timeout: Optional[_Duration] = None,
        in_flight_max: Optional[int] = None,
        batch_requests_max: Optional[int] = None,
        frames_in_flight_max: Optional[int] = None,
    ) -> None: ...
    def connect(self, future: _Future = None) -> None: ...
    def close(self) -> None: ...
    @property
    def connected(self) -> bool: ...
    @property
    def cluster_id(self) -> int: ...
    @property
    def slot_ms(self) -> int: ...
    @property
    def ttl_slots_max(self) -> int: ...
    def slots_for(self, ttl: _Duration) -> int: ...
    def stats(self) -> ClientStats: ...
    def open_bridge(self, call_soon: Callable[..., Any]) -> int: ...
    def close_bridge(self) -> None: ...
    def pending(self) -> int: ...
    def drain(self) -> None: ...
    def wait_idle(self, future: "asyncio.Future[Any]") -> None: ...
    # Without a future each call blocks and returns its result; with one it returns None and
    # the result (or exception) is set on the future.
    def create_resource(
        self,
        resource: int,
        pool: Optional[int] = None,
        operation_id: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def reserve(
        self,
        resources: Sequence[int],
        holder: int,
        ttl: _Duration,
        operation_id: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def reserve_any(
        self,
        pool: int,
        count: int,
        holder: int,
        ttl: _Duration,
        operation_id: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def activate(
        self,
        lease: int,
        holder: int,
        epoch: int,
        ttl: Optional[_Duration] = None,
        operation_id: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def renew(
        self,
        lease: int,
        holder: int,
        epoch: int,
        ttl: _Duration,
        operation_id: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def release(
        self,
        lease: int,
        holder: int,
        epoch: int,
        operation_id: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def revoke(
        self,
        lease: int,
        operation_id: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def reclaim(
        self,
        lease: int,
        operation_id: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def get_resource(
        self,
        resource: int,
        min_op: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def get_lease(
        self,
        lease: int,
        min_op: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def pool_stats(
        self,
        pool: int,
        min_op: Optional[int] = None,
        timeout: Optional[_Duration] = None,
        future: _Future = None,
    ) -> Any: ...
    def new_operation_id(self, future: _Future = None) -> Any: ...
