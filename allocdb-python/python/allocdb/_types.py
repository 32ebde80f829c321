"""The enums of the ``allocdb`` package: result codes and lease/resource states.

Their values are the wire values of the Rust core. At import they are checked against the
native module's tables, so a code added to the core cannot go missing here unnoticed.
"""

from __future__ import annotations

import enum

from . import _allocdb

__all__ = ["ResultCode", "ResourceState", "LeaseState"]


class ResultCode(enum.IntEnum):
    """Why the core refused a command or query (``Rejected.code``), or ``OK``.

    The value is the code's number on the wire; ``code.name.lower()`` is the name the CLI and
    the docs use (``resource_busy``). See docs/semantics.md for when each is returned.
    """

    OK = 0
    ALREADY_EXISTS = 1
    RESOURCE_TABLE_FULL = 2
    RESOURCE_NOT_FOUND = 3
    RESOURCE_BUSY = 4
    POOL_NOT_FOUND = 5
    POOL_EXHAUSTED = 6
    POOL_TABLE_FULL = 7
    BUNDLE_TOO_LARGE = 8
    BUNDLE_DUPLICATE_RESOURCE = 9
    TTL_OUT_OF_RANGE = 10
    LEASE_TABLE_FULL = 11
    MEMBER_TABLE_FULL = 12
    LEASE_NOT_FOUND = 13
    LEASE_RETIRED = 14
    OPERATION_TABLE_FULL = 15
    OPERATION_CONFLICT = 16
    INVALID_STATE = 17
    HOLDER_MISMATCH = 18
    STALE_EPOCH = 19
    SLOT_OVERFLOW = 20
    INVALID_OPERATION_ID = 21
    LEASE_EXPIRED = 22
    SESSION_EVICTED = 23
    REQUEST_STALE = 24
    OPERATION_EXPIRED = 25

    @property
    def is_key_refusal(self) -> bool:
        """Whether the operation id alone decided the answer: nothing ran now, and the answer
        says nothing about an earlier execution under the same id."""
        return self in _KEY_REFUSALS


_KEY_REFUSALS = frozenset(
    {
        ResultCode.INVALID_OPERATION_ID,
        ResultCode.OPERATION_CONFLICT,
        ResultCode.SESSION_EVICTED,
        ResultCode.REQUEST_STALE,
        ResultCode.OPERATION_EXPIRED,
    }
)


class ResourceState(enum.IntEnum):
    """A resource is ``AVAILABLE`` exactly when no live lease holds it; otherwise it is in
    its lease's state."""

    AVAILABLE = 0
    RESERVED = 1
    ACTIVE = 2
    REVOKING = 3


class LeaseState(enum.IntEnum):
    """``RESERVED``, ``ACTIVE`` and ``REVOKING`` are live (they hold resources); the others
    are terminal (the resources were freed; the lease stays readable until it retires)."""

    RESERVED = 0
    ACTIVE = 1
    REVOKING = 2
    RELEASED = 3
    EXPIRED = 4
    REVOKED = 5

    @property
    def is_live(self) -> bool:
        """Whether a lease in this state holds its resources."""
        return self in (LeaseState.RESERVED, LeaseState.ACTIVE, LeaseState.REVOKING)


def _check(enum_class: type[enum.IntEnum], native: list[tuple[str, int]]) -> None:
    ours = [(member.name.lower(), member.value) for member in enum_class]
    if ours != list(native):
        raise ImportError(
            f"allocdb.{enum_class.__name__} does not match the native module "
            f"(package and extension from different builds?): {ours} != {native}"
        )


_check(ResultCode, _allocdb.RESULT_CODES)
_check(ResourceState, _allocdb.RESOURCE_STATES)
_check(LeaseState, _allocdb.LEASE_STATES)
