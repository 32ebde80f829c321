"""Fixtures: a real three-replica cluster of the `allocdb` binary on loopback.

The binary is $ALLOCDB_BIN, else the repository's target/release/allocdb. A missing binary
fails the run (it never skips: CI must not pass by testing nothing).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

import allocdb
from allocdb.testing import LocalCluster

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def allocdb_binary() -> Path:
    configured = os.environ.get("ALLOCDB_BIN")
    path = Path(configured) if configured else REPOSITORY / "target" / "release" / "allocdb"
    if not path.is_file():
        pytest.fail(
            f"no allocdb binary at {path}: run `cargo build --release -p allocdb-server` "
            "or set ALLOCDB_BIN"
        )
    return path


@pytest.fixture(scope="session")
def cluster(allocdb_binary: Path) -> Iterator[LocalCluster]:
    """One plaintext three-replica cluster shared by the tests that do not kill replicas.
    Tests keep apart by using fresh ids (the `ids` fixture)."""
    with LocalCluster(3, binary=allocdb_binary, cluster_id=11) as local:
        local.wait_for_primary()
        yield local


_counter = itertools.count(1)


@pytest.fixture
def ids() -> Callable[[], int]:
    """A source of ids no other test uses (resources, pools, holders)."""
    return lambda: 1_000_000 + next(_counter)


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[allocdb.Client]:
    with allocdb.Client(cluster.addresses, **cluster.client_options()) as connected:
        yield connected
