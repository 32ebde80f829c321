"""The exceptions of the ``allocdb`` package.

They keep the Rust client's distinction between what the caller may conclude:

* ``Rejected``: the cluster refused, definitely (``.code``; for a write the refusal is
  committed too, at ``.op``);
* ``Indefinite``: a write may or may not have executed; call again with ``.operation_id``;
* ``Unavailable``: not executed (no replica could run it before the deadline);
* ``Timeout``: a read's deadline passed (reads change nothing: just retry);
* ``Invalid``: can never succeed as written; nothing changed (also a ``ValueError``);
* ``Forbidden``: this client's role may not do this; nothing changed;
* ``Closed``: the client was closed (or never connected) before the call finished.

Every one derives from ``AllocDBError``; ``error.definite`` is false only when a write's
outcome is unknown.
"""

from __future__ import annotations

from typing import Optional

from ._types import ResultCode

__all__ = [
    "AllocDBError",
    "Rejected",
    "Indefinite",
    "Unavailable",
    "Timeout",
    "Invalid",
    "Forbidden",
    "Closed",
]


class AllocDBError(Exception):
    """The base of every error a client call raises."""

    #: Whether the outcome is known (false only when a write may or may not have executed).
    definite: bool = True

    def __init__(self, message: str, *details: object) -> None:
        # ``args`` keeps every constructor argument, so the exception pickles and copies.
        super().__init__(message, *details)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Rejected(AllocDBError):
    """The core refused the command or query with ``code`` (a ``ResultCode``), decided at
    op ``op``. For a write the refusal itself is committed: a retry with the same operation
    id returns it again."""

    def __init__(self, message: str, code: int, op: int) -> None:
        super().__init__(message, code, op)
        self.code = ResultCode(code)
        self.op = op


class Indefinite(AllocDBError):
    """The write may or may not have executed: the deadline passed after it was sent without
    a definite answer (e.g. across a failover), or its session was evicted meanwhile.

    Call the same method again with ``operation_id=error.operation_id`` to learn the outcome:
    the cluster answers with the stored result (``Committed.retry`` is true) and never executes
    the write twice. A library-numbered id (session key) can be retried while this client's
    session keeps it (its next ``session_requests_max`` writes); an application key from
    ``new_operation_id()`` for the cluster's dedupe window, from any process.
    """

    definite = False

    def __init__(self, message: str, operation_id: int) -> None:
        super().__init__(message, operation_id)
        self.operation_id = operation_id


class Unavailable(AllocDBError):
    """The deadline passed before the request could be run by any replica: not executed."""


class Timeout(AllocDBError):
    """A read's deadline passed without an answer. Reads change nothing: retry."""


class Invalid(AllocDBError, ValueError):
    """The request can never succeed as written (a bundle over the limit, a negative TTL,
    operation id 0, unusable options, a replica of another cluster, every replica of the
    list answering in the other transport: TLS or plaintext). Nothing changed."""


class Forbidden(AllocDBError):
    """The cluster refused: this client's certificate role may not make this request (an
    ``application`` client creating resources, revoking or reclaiming). Nothing changed."""


class Closed(AllocDBError):
    """The client was closed, or never connected, before the call finished.

    ``operation_id`` is set when a write may have been sent (its outcome is then unknown, as
    for ``Indefinite``)."""

    def __init__(self, message: str, operation_id: Optional[int] = None) -> None:
        super().__init__(message, operation_id)
        self.operation_id = operation_id
        self.definite = operation_id is None
