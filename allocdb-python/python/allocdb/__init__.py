"""AllocDB for Python: a replicated allocation database's client, sync and asyncio.

Quick start (a cluster started with ``--insecure`` on three local ports)::

    import allocdb

    with allocdb.Client(["127.0.0.1:3000", "127.0.0.1:3001", "127.0.0.1:3002"],
                        insecure=True) as client:
        client.create_resource(7)
        grant = client.reserve(7, holder=42, ttl=30)          # seconds, or a timedelta
        client.activate(grant.lease, 42, grant.epoch)         # held until released
        print(client.get_resource(7, min_op=grant.op))        # Resource(... state=ACTIVE ...)

Errors: ``Rejected`` (definite refusal, ``.code``), ``Indefinite`` (retry with
``.operation_id``), ``Unavailable``, ``Timeout``, ``Invalid``, ``Forbidden``, ``Closed``; all
derive from ``AllocDBError``. See docs/python.md.
"""

from ._allocdb import BUNDLE_SIZE_LIMIT, ClientStats, Committed, Lease, PoolStats, Resource
from ._client import AsyncClient, Client, Duration, Resources
from ._errors import (
    AllocDBError,
    Closed,
    Forbidden,
    Indefinite,
    Invalid,
    Rejected,
    Timeout,
    Unavailable,
)
from ._types import LeaseState, ResourceState, ResultCode

__all__ = [
    "AllocDBError",
    "AsyncClient",
    "BUNDLE_SIZE_LIMIT",
    "Client",
    "ClientStats",
    "Closed",
    "Committed",
    "Duration",
    "Forbidden",
    "Indefinite",
    "Invalid",
    "Lease",
    "LeaseState",
    "PoolStats",
    "Rejected",
    "Resource",
    "ResourceState",
    "Resources",
    "ResultCode",
    "Timeout",
    "Unavailable",
]

__version__ = "0.1.0"

# Show the public classes where users import them from (tracebacks, reprs, pickling).
for _public in (
    AllocDBError, AsyncClient, Client, Closed, Forbidden, Indefinite, Invalid, LeaseState,
    Rejected, ResourceState, ResultCode, Timeout, Unavailable,
):
    _public.__module__ = __name__
del _public
