"""The cluster's JetStream plumbing against a real nats-server: the lease, the work queue's
de-duplication and redelivery, and the loop watch."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.natsserver import NatsServer
from tsq.cluster.bus import Bus, BusNames
from tsq.errors import ConfigError


@pytest.fixture
def bus(nats_server: NatsServer, cluster_name: str) -> Any:
    made = Bus(nats_server.url, BusNames(cluster_name), ack_wait_s=1.0, max_deliver=3,
               lease_ttl_s=1.0)
    yield made
    made.close()


def test_only_one_holder_has_the_lease_until_it_expires(bus: Bus) -> None:
    first = bus.take_lease("a", None)
    assert first is not None
    assert bus.take_lease("b", None) is None  # held
    renewed = bus.take_lease("a", first)
    assert renewed is not None and renewed > first
    assert bus.take_lease("b", first) is None  # an old revision renews nothing
    time.sleep(1.6)  # the TTL passes without a renewal
    assert bus.take_lease("b", None) is not None
    assert bus.take_lease("a", renewed) is None  # the old holder cannot renew any more


def test_a_holder_that_gives_the_lease_up_hands_it_over_at_once(bus: Bus) -> None:
    held = bus.take_lease("a", None)
    assert held is not None
    bus.give_up_lease(held)
    assert bus.take_lease("b", None) is not None


def test_a_run_published_twice_is_delivered_once(bus: Bus) -> None:
    bus.publish_runs([("r1", "p/loop:e:1000", 1, b'{"id": "r1"}'),
                      ("r2", "p/loop:e:2000", 1, b"")])
    bus.publish_runs([("r1", "p/loop:e:1000", 1, b"")])  # a second scheduler, a restart
    bus.publish_runs([("r1", "p/loop:e:1000", 2, b"")])  # its retry is another message
    got = bus.pull(10, 1.0)
    assert sorted((d.run_id, d.attempt, d.delivered) for d in got) == [
        ("r1", 1, 1), ("r1", 2, 1), ("r2", 1, 1)]
    carried = {(d.run_id, d.attempt): d.record for d in got}
    assert carried[("r1", 1)] == {"id": "r1"} and carried[("r2", 1)] is None
    for delivery in got:
        delivery.ack()
    time.sleep(0.1)
    assert bus.pull(10, 1.2) == []  # acknowledged: never again


def test_a_new_run_of_a_key_seen_before_is_delivered(bus: Bus) -> None:
    """A run store made afresh (or restored) beside the same NATS streams gives a scheduled
    time a new run: its message is not the old run's duplicate."""
    bus.publish_runs([("old", "p/loop:e:1000", 1, b"")])
    bus.publish_runs([("new", "p/loop:e:1000", 1, b"")])
    got = bus.pull(10, 1.0)
    assert sorted(d.run_id for d in got) == ["new", "old"]
    for delivery in got:
        delivery.ack()


def test_an_unanswered_run_comes_back_after_ack_wait_and_in_progress_holds_it(bus: Bus) -> None:
    bus.publish_runs([("held", "p/held", 1, b""), ("dropped", "p/dropped", 1, b"")])
    first = {d.run_id: d for d in bus.pull(10, 1.0)}
    assert set(first) == {"held", "dropped"}
    deadline = time.monotonic() + 1.8
    while time.monotonic() < deadline:  # the holder says it still works on "held"
        first["held"].in_progress()
        time.sleep(0.3)
    again = bus.pull(10, 1.0)
    assert [(d.run_id, d.delivered) for d in again] == [("dropped", 2)]
    again[0].ack()
    first["held"].ack()


def test_every_process_hears_of_a_loop_change(nats_server: NatsServer, cluster_name: str,
                                              bus: Bus) -> None:
    other = Bus(nats_server.url, BusNames(cluster_name))
    heard: list[dict[str, Any]] = []
    arrived = threading.Event()

    def listener(change: dict[str, Any]) -> None:
        heard.append(change)
        arrived.set()

    try:
        other.watch_loops(listener)
        bus.loop_changed("p", "rollup", {"id": "v1", "number": 1}, origin="node-a")
        assert arrived.wait(5)
        assert heard[0]["project"] == "p" and heard[0]["loop"] == "rollup"
        assert heard[0]["version"] == "v1" and heard[0]["origin"] == "node-a"
        arrived.clear()
        bus.loop_changed("p", "rollup", None, origin="node-a")  # deleted
        assert arrived.wait(5)
        assert heard[-1]["version"] is None
    finally:
        other.close()


def test_a_listener_hears_notices_only_while_it_wants_them(bus: Bus) -> None:
    wanted = threading.Event()
    heard: list[list[Any]] = []
    arrived = threading.Event()

    def listener(notice: list[Any]) -> None:
        heard.append(notice)
        arrived.set()

    subject = bus.names.ended_subject
    bus.listen(subject, listener, wanted=wanted.is_set)
    bus.tell(subject, ["unwanted"])
    time.sleep(0.3)  # the notice came and went: nobody here wanted it
    wanted.set()
    bus.tell(subject, ["r1", {"id": "r2"}])
    assert arrived.wait(5)
    time.sleep(0.1)
    assert heard == [["r1", {"id": "r2"}]]


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"cannot reach NATS at nats://127.0.0.1:1 "
                                          r"\(--cluster\).*nats-server -js"):
        Bus("nats://127.0.0.1:1")
