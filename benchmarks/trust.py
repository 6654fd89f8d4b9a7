"""The trust probes (docs/security.md), re-run as a hostile client would run them against a
real server on 127.0.0.1:

- a token-less request to every route: how many answer 401, and which are open;
- a selector regex that backtracks exponentially in a backtracking engine, `(a+)+$`, over
  labels of 27 `a`s and a `b`: how long the query takes (RE2 keeps it linear);
- 1,000 concurrent synchronous runs of a slow loop: `/healthz` latency meanwhile (p50, p99,
  max) and how many runs were refused with 429 rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.report import Report
from benchmarks.scheduler import _free_port, _Serve
from tsq.access import ACCESS

EVIL = "(a+)+$"
SLOW = "export default async () => { const end = Date.now() + 20; while (Date.now() < end) {} }"
HEALTH_EVERY_S = 0.01


def run(report: Report, *, quick: bool) -> None:
    concurrent = 100 if quick else 1000
    # `tsq serve` in a process of its own: the clients here must not share its GIL
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data, _Serve(Path(data), port):
        token = {"Authorization": f"Bearer {(Path(data) / 'admin.token').read_text().strip()}"}
        _tokenless(report, base)
        _regex(report, base, token)
        _busy(report, base, token, concurrent)


def _tokenless(report: Report, base: str) -> None:
    statuses: dict[str, int] = {}
    with httpx.Client(base_url=base, timeout=30) as anonymous:
        for (method, path), need in ACCESS.items():
            if need is not None:
                answer = anonymous.request(method, re.sub(r"\{[^}]+\}", "x", path), json={})
                statuses[f"{method} {path}"] = answer.status_code
    refused = sum(1 for status in statuses.values() if status in (401, 303))
    others = {route: status for route, status in statuses.items() if status not in (401, 303)}
    if others:
        raise RuntimeError(f"answered without a token: {others}")
    report.note("trust", "token-less requests", {
        "routes_needing_a_token": len(statuses), "refused_401_or_login": refused,
        "open_routes": sorted(f"{m} {p}" for (m, p), need in ACCESS.items() if need is None)})


def _regex(report: Report, base: str, token: dict[str, str]) -> None:
    lines = "\n".join(f"evil,host={'a' * 27}b{i} value={i} {10**9 * (i + 1)}"
                      for i in range(100))
    with httpx.Client(base_url=base, timeout=60, headers=token) as client:
        client.post("/write", content=lines.encode()).raise_for_status()
        query = {"tsl": f'select("evil").where("host~{EVIL}").from(0)'}

        def once() -> None:
            client.post("/v1/query", json=query).raise_for_status()

        samples = []
        for _ in range(5):
            start = time.perf_counter()
            once()
            samples.append(time.perf_counter() - start)
    report.add("trust", f"query with selector regex {EVIL} over 100 series", samples)


def _busy(report: Report, base: str, token: dict[str, str], concurrent: int) -> None:
    with httpx.Client(base_url=base, timeout=60, headers=token) as client:
        client.post("/v1/loops", json={"content": "functions:\n  slow:\n    handler: s.js\n",
                                       "files": {"s.js": SLOW}}).raise_for_status()
    health: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                start = time.perf_counter()
                client.get("/healthz").raise_for_status()
                health.append(time.perf_counter() - start)
                time.sleep(HEALTH_EVERY_S)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        statuses = asyncio.run(_fire(base, token, concurrent))
    finally:
        stop.set()
        prober.join()
    counts = {str(status): statuses.count(status) for status in sorted(set(statuses))}
    unexpected = set(statuses) - {200, 429}
    if unexpected:
        raise RuntimeError(f"runs answered {counts}")
    report.add("trust", f"/healthz during {concurrent} concurrent runs", health)
    report.note("trust", f"{concurrent} concurrent sync runs", {
        "answers": counts, "healthz_p99_ms": round(
            sorted(health)[int(len(health) * 0.99)] * 1000, 1),
        "healthz_median_ms": round(statistics.median(health) * 1000, 2)})


async def _fire(base: str, token: dict[str, str], concurrent: int) -> list[int]:
    limits = httpx.Limits(max_connections=concurrent, max_keepalive_connections=concurrent)
    async with httpx.AsyncClient(base_url=base, timeout=600, headers=token,
                                 limits=limits) as client:
        answers = await asyncio.gather(*(client.post("/v1/loops/slow/run", json={})
                                         for _ in range(concurrent)))
    return [answer.status_code for answer in answers]
