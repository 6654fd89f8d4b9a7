from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.natsserver import NatsServer

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
