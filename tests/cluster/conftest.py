from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.processes import Cluster
from tests.natsserver import NatsServer
from tests.pgserver import PostgresServer

_names = itertools.count()


@pytest.fixture(scope="module")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def cluster_name() -> str:
    """Each test's streams and buckets are its own, on the module's server."""
    return f"t{next(_names)}"


@pytest.fixture
def cluster(tmp_path: Path, nats_server: NatsServer, cluster_name: str,
            postgres: PostgresServer) -> Iterator[Cluster]:
    """A cluster of the test's own (its processes are started by the test), its runs in a
    PostgreSQL database of its own; every process started is stopped."""
    with postgres.own_database() as url:
        made = Cluster(tmp_path, nats_server.url, cluster_name, url)
        try:
            yield made
        finally:
            made.close()
