"""The PostgreSQL fixture: one throwaway cluster for the whole session (tests/support/postgres.py).
Each test that needs a database takes its own with `postgres_cluster.create_database()`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import Cluster


@pytest.fixture(scope="session")
def postgres_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster started once per session and stopped (its folder removed) at the end. Without
    PostgreSQL's server binaries the tests that use it fail (ClusterError says how to install
    them) rather than skip: the suite is meant to prove both engines (SCALE.md)."""
    cluster = Cluster.start(tmp_path_factory.mktemp("postgres"))
    try:
        yield cluster
    finally:
        cluster.stop()
