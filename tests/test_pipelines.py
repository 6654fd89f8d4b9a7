"""Pipelines: Loop.run steps, their journal and resume, pinned versions, and the faults a
pipeline must survive (a failing or timing-out step, a loop deleted mid-pipeline, a cycle, a
runaway fan-out), on a real service with real worker processes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tsq.config import PipelineLimits, Settings
from tsq.run import Run
from tsq.runstore import RunFilter
from tsq.selector import parse_selector
from tsq.service import Service

COUNTED = """
export default async function (event) {
  // Each execution leaves a point, so a test can count how often a step really ran.
  await db.write(`executions,loop=${event.loop} value=1 ${Date.now() * 1e6 + Math.floor(Math.random() * 1e6)}`);
  %s
}
"""


@pytest.fixture(scope="module")
def pipes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    settings = dataclasses.replace(Settings.load(tmp_path_factory.mktemp("pipes")),
                                   pipeline_limits=PipelineLimits(max_depth=4, max_steps=6))
    service = Service(settings)
    service.start()
    yield service
    service.close()


def deploy(service: Service, handlers: dict[str, str], extra: dict[str, str] | None = None
           ) -> None:
    lines = ["functions:"]
    for name in handlers:
        lines += [f"  {name}:", f"    handler: {name}.js", *(extra or {}).get(name, "").splitlines()]
    files = {f"{name}.js": COUNTED % body for name, body in handlers.items()}
    service.deploy("\n".join(lines) + "\n", "loops.yml", lambda name: files[name])


def executions(service: Service, loop: str) -> int:
    found = service.store.select(parse_selector(f'executions{{loop="{loop}"}}'))
    return sum(len(s.timestamps) for s in found)


def steps(service: Service, record: Run) -> list[tuple[str, str, str]]:
    return [(s.loop, s.trigger, s.status)
            for s in service.runs.pipeline(record.pipeline_id)]


def test_loop_run_chains_steps_in_one_pipeline(pipes: Service) -> None:
    deploy(pipes, {
        "p1-double": "return {doubled: event.params.n * 2};",
        "p1-main": """const a = await Loop.run("p1-double", {n: 21});
                      const b = await Loop.run("p1-double", {n: 1});
                      return {a, b};""",
    })
    final = pipes.run("p1-main")
    assert final.status == "success", final
    assert final.result == {"a": {"doubled": 42}, "b": {"doubled": 2}}
    assert steps(pipes, final) == [("p1-main", "manual", "success"),
                                   ("p1-double", "call", "success"),
                                   ("p1-double", "call", "success")]
    children = pipes.runs.pipeline(final.pipeline_id)[1:]
    assert {c.parent_id for c in children} == {final.id}
    assert final.pipeline_id == final.id


def test_a_failing_step_rejects_and_resume_reruns_only_what_failed(pipes: Service) -> None:
    deploy(pipes, {
        "p2-first": "return 'first';",
        "p2-flaky": """const [s] = await db.select('p2_switch');
                       if (!s || s.values[s.values.length - 1] < 1) throw new Error('switch is off');
                       return 'flaky';""",
        "p2-last": "return 'last';",
        "p2-main": """const out = [await Loop.run("p2-first"), await Loop.run("p2-flaky"),
                                   await Loop.run("p2-last")];
                      return out;""",
    })
    failed = pipes.run("p2-main")
    assert failed.status == "failed"
    assert failed.error.type == "Error"
    assert "Loop.run('p2-flaky') failed" in failed.error.message
    assert "switch is off" in failed.error.message
    assert steps(pipes, failed) == [("p2-main", "manual", "failed"), ("p2-first", "call", "success"),
                                    ("p2-flaky", "call", "failed")]
    pipes.write_lines("p2_switch value=1 1000000000")
    done = pipes.dispatcher.wait(failed.id)
    answer = pipes.resume(failed.id)
    assert answer["resumed"] == [failed.id]
    final = done.result(timeout=60)
    assert final.status == "success" and final.result == ["first", "flaky", "last"]
    assert final.attempt == 2
    assert executions(pipes, "p2-first") == 1  # replayed from the journal, not run again
    assert executions(pipes, "p2-flaky") == 2 and executions(pipes, "p2-last") == 1
    assert any("succeeded before; its result is reused" in line["message"]
               for line in pipes.runs.logs(final.id))
    with pytest.raises(Exception, match="nothing to resume"):
        pipes.resume(final.id)


def test_a_step_that_times_out_fails_its_caller_clearly(pipes: Service) -> None:
    deploy(pipes, {"p3-slow": "await new Promise(() => {});",
                   "p3-main": 'return await Loop.run("p3-slow");'},
           {"p3-slow": "    timeout: 0.5"})
    final = pipes.run("p3-main")
    assert final.status == "failed"
    assert final.error.type == "Timeout"
    assert "Loop.run('p3-slow') timeout" in final.error.message


def test_cycles_depth_and_fan_out_are_limited(pipes: Service) -> None:
    deploy(pipes, {"p4-ping": 'return await Loop.run("p4-pong");',
                   "p4-pong": 'return await Loop.run("p4-ping");'})
    cycle = pipes.run("p4-ping")
    assert cycle.status == "failed"
    assert "would make a cycle: p4-ping → p4-pong → p4-ping" in cycle.error.message
    assert executions(pipes, "p4-ping") == 1  # the cycle was refused, not run

    deploy(pipes, {"p4-leaf": "return event.params.i;",
                   "p4-fan": """const out = [];
                                for (let i = 0; i < 100; i++) out.push(await Loop.run("p4-leaf", {i}));
                                return out;"""})
    fan = pipes.run("p4-fan")
    assert fan.status == "failed" and fan.error.type == "PipelineTooLarge"
    assert "has 6 steps already" in fan.error.message
    assert executions(pipes, "p4-leaf") == 5  # six steps: the caller and five leaves

    deploy(pipes, {f"p4-d{i}": f'return await Loop.run("p4-d{i + 1}");' for i in range(5)}
           | {"p4-d5": "return 'deep';"})
    deep = pipes.run("p4-d0")
    assert deep.status == "failed"
    assert "deeper than 4 loops" in deep.error.message


def test_versions_are_pinned_when_the_pipeline_starts(pipes: Service) -> None:
    deploy(pipes, {"p5-step": "return 'v1';",
                   "p5-main": """await db.write('p5_started value=1 1000000000');
                                 const [go] = await (async () => { for (;;) {
                                   const found = await db.select('p5_go');
                                   if (found.length) return found;
                                   await new Promise(r => setTimeout(r, 20)); } })();
                                 return await Loop.run("p5-step");"""})
    submitted = pipes.submit("p5-main")
    _wait_for(lambda: executions(pipes, "p5-main") == 1)
    deploy(pipes, {"p5-step": "return 'v2';"})  # mid-pipeline: only later pipelines see it
    pipes.write_lines("p5_go value=1 1000000000")
    assert submitted.done.result(timeout=60).result == "v1"
    assert pipes.run("p5-main").result == "v2"


def test_a_loop_deleted_mid_pipeline_stops_it_with_a_clear_record(pipes: Service) -> None:
    deploy(pipes, {"p6-step": "return 'ran';",
                   "p6-main": """for (;;) { if ((await db.select('p6_go')).length) break;
                                            await new Promise(r => setTimeout(r, 20)); }
                                 return await Loop.run("p6-step");"""})
    submitted = pipes.submit("p6-main")
    _wait_for(lambda: executions(pipes, "p6-main") == 1)
    pipes.delete_loop("p6-step")
    pipes.write_lines("p6_go value=1 1000000000")
    final = submitted.done.result(timeout=60)
    assert final.status == "failed" and final.error.type == "LoopNotFound"
    assert "was deleted at" in final.error.message
    assert executions(pipes, "p6-step") == 0


def _wait_for(condition: Any, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)



def test_an_after_follower_deleted_mid_pipeline_is_named_in_the_log_of_the_run_it_follows(
        pipes: Service) -> None:
    deploy(pipes, {"p7-main": """for (;;) { if ((await db.select('p7_go')).length) break;
                                            await new Promise(r => setTimeout(r, 20)); }
                                 return 'main';""",
                   "p7-next": "return 'next';"},
           {"p7-main": "    events: [{hourly: {rate: R/2026-01-01T00:00:00Z/PT1H/ET10M}}]",
            "p7-next": "    events: [{after-main: {after: p7-main}}]"})
    # A backfill of one scheduled time: a scheduled pipeline, which `after:` steps follow.
    job = pipes.backfill("p7-main", datetime(2026, 1, 1, 1, tzinfo=UTC),
                         datetime(2026, 1, 1, 1, 1, tzinfo=UTC))
    _wait_for(lambda: executions(pipes, "p7-main") == 1)
    pipes.delete_loop("p7-next")
    pipes.write_lines("p7_go value=1 1000000000")
    _wait_for(lambda: pipes.backfill_status(job["id"])["status"] == "done")
    [main] = pipes.runs.find(RunFilter(loop="p7-main"))
    assert main.status == "success"
    warnings = [line["message"] for line in pipes.runs.logs(main.id)
                if line["level"] == "warning"]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("after: p7-next does not run: loop 'p7-next' was deleted at ")
    assert warnings[0].endswith(", while this pipeline ran; its steps stop here")
    time.sleep(0.5)  # a follower would be queued with the success: give it the time to run
    assert steps(pipes, main) == [("p7-main", "backfill", "success")]
    assert executions(pipes, "p7-next") == 0


def test_a_run_by_hand_on_the_only_worker_can_call_another_loop(tmp_path: Path) -> None:
    """`Service.run` runs the handler from the calling thread in the idle worker; the step it
    calls must still find a worker (the slot's own thread leaves the job to another)."""
    service = Service(dataclasses.replace(Settings.load(tmp_path), workers=1))
    try:
        deploy(service, {"solo-step": "return event.params.n + 1;",
                         "solo-main": 'return await Loop.run("solo-step", {n: 1});'})
        final = service.run("solo-main")
        assert final.status == "success", final
        assert final.result == 2
        assert steps(service, final) == [("solo-main", "manual", "success"),
                                         ("solo-step", "call", "success")]
    finally:
        service.close()
