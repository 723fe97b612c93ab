"""The PostgreSQL fixture: the suite's one throwaway cluster (tests/support/engine.py starts it on
first use, whichever engine the run is on, and stops it when the run ends). Each test that needs a
database takes its own with `postgres_cluster.create_database()`."""

from __future__ import annotations

import pytest

from tests.support.engine import cluster
from tests.support.postgres import Cluster


@pytest.fixture(scope="session")
def postgres_cluster() -> Cluster:
    """Without PostgreSQL's server binaries the tests that use it fail (ClusterError says how to
    install them) rather than skip: the suite is meant to prove both engines (SCALE.md)."""
    return cluster()
