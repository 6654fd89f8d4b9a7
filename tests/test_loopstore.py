"""LoopStore reads that the service's start relies on."""

from __future__ import annotations

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
