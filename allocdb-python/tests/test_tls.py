"""TLS with role certificates: an operator may create resources, an application may not."""

from __future__ import annotations

from pathlib import Path

import pytest

import allocdb
from allocdb.testing import LocalCluster


def test_roles_over_tls(allocdb_binary: Path) -> None:
    with LocalCluster(3, binary=allocdb_binary, cluster_id=13, tls=True) as cluster:
        cluster.wait_for_primary()
        with allocdb.Client(cluster.addresses, **cluster.client_options("operator")) as operator:
            operator.create_resource(1)
        application_options = cluster.client_options("application")
        with allocdb.Client(cluster.addresses, **application_options) as application:
            grant = application.reserve(1, 42, 30)
            assert application.get_lease(grant.lease).holder == 42
            with pytest.raises(allocdb.Forbidden):
                application.create_resource(2)
            with pytest.raises(allocdb.Forbidden):
                application.revoke(grant.lease)
        # Without a transport chosen, nothing is sent in plaintext by accident.
        with pytest.raises(allocdb.Invalid, match="security"):
            allocdb.Client(cluster.addresses)
