"""LoopStore reads that the service's start relies on."""

from __future__ import annotations

import pytest

from tsq.service import Service

LOOPS = "functions:\n  vo-a: {handler: a.js}\n  vo-b: {handler: a.js}\n"
HANDLER = "export default async () => 1;"


def test_versions_of_reads_the_versions_named_and_leaves_unknown_ids_out(
        service: Service) -> None:
    service.deploy(LOOPS, "loops.yml", {"a.js": HANDLER}.get)
    service.deploy(LOOPS.replace("vo-b", "vo-c"), "other.yml", {"a.js": HANDLER + " "}.get)
    wanted = [service.loops.get("default", name).latest for name in ("vo-a", "vo-b", "vo-c")]
    found = service.loops.versions_of([v.id for v in wanted] + ["no-such-version"] * 2)
    assert sorted(v.id for v in found) == sorted(v.id for v in wanted)
    assert {v.id: v.spec for v in found} == {v.id: v.spec for v in wanted}


def test_live_loops_follow_deploys_and_deletes_and_parse_each_version_once(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deploy reads every live loop twice, and so does each cluster process at each change:
    parsing every version's spec each time was most of a deploy beside 2,000 loops."""
    loops = service.loops
    parsed: list[str] = []
    real = loops._to_version
    monkeypatch.setattr(loops, "_to_version", lambda row: parsed.append(row.id) or real(row))
    service.deploy(LOOPS.replace("vo-", "lv-"), "loops.yml", {"a.js": HANDLER}.get)
    mine = {loop.name: loop.latest for loop in loops.live() if loop.name.startswith("lv-")}
    assert sorted(mine) == ["lv-a", "lv-b"]
    parsed.clear()
    again = {loop.name: loop.latest for loop in loops.live() if loop.name.startswith("lv-")}
    assert again == mine and parsed == []  # kept
    service.deploy("functions:\n  lv-a: {handler: a.js}\n", "a.yml", {"a.js": HANDLER + " "}.get)
    service.delete_loop("lv-b", "default")
    now = {loop.name: loop.latest for loop in loops.live("default")
           if loop.name.startswith("lv-")}
    assert list(now) == ["lv-a"] and now["lv-a"].id != mine["lv-a"].id
    assert now["lv-a"].source == HANDLER + " "
    assert parsed.count(now["lv-a"].id) == 1


def test_versions_no_longer_live_are_let_go(service: Service,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tsq import loopstore

    for n in range(3):  # three versions of one loop, each parsed and kept as it is deployed
        service.deploy("functions:\n  lg-a: {handler: a.js}\n", "a.yml",
                       {"a.js": HANDLER + " " * n}.get)
    old = {v.id for v in service.loops.versions("default", "lg-a")}
    assert len(old) == 3 and old <= set(service.loops._versions)
    monkeypatch.setattr(loopstore, "VERSIONS_SPARE", -10**9)  # always past the bound
    live = {loop.latest.id for loop in service.loops.live()}
    assert set(service.loops._versions) == live
    assert len(old & live) == 1
