"""What the pages compute (tsq.ui.views), the pinned assets, and the pages' answers without a
browser."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tsq.ui import assets, views


@pytest.mark.parametrize(("rate", "words"), [
    ("R/2026-01-01T00:00:00Z/PT5M/ET1M",
     "every 5 minutes from 2026-01-01 00:00 UTC, at most 1 minute late"),
    ("R/2026-01-01T00:00:00Z/PT1H/ET0S",
     "every hour from 2026-01-01 00:00 UTC, no lateness allowed"),
    ("R/2026-01-01T00:00:30Z/PT90S/ET10S",
     "every 90 seconds from 2026-01-01 00:00:30 UTC, at most 10 seconds late"),
    ("R3/2026-01-31T00:00:00Z/P1M/ET1H",
     "every month from 2026-01-31 00:00 UTC, 4 times, at most 1 hour late"),
    ("R/2026-01-01T00:00:00Z/P1Y2W/ET2H",
     "every year and 2 weeks from 2026-01-01 00:00 UTC, at most 2 hours late"),
    ("R/2026-01-01T00:00:00Z/PT24H/ET1M", "every day from 2026-01-01 00:00 UTC, at most 1 minute late"),
    ("not a schedule", "not a schedule"),
])
def test_schedules_in_words(rate: str, words: str) -> None:
    assert views.schedule_words(rate) == words


def test_next_times_start_at_now() -> None:
    now = datetime(2026, 11, 24, 0, 2, tzinfo=UTC)
    assert [t.isoformat() for t in views.next_times("R/2026-01-01T00:00:00Z/PT5M/ET1M", now)] == [
        "2026-11-24T00:05:00+00:00", "2026-11-24T00:10:00+00:00", "2026-11-24T00:15:00+00:00"]


def test_success_rate_and_sparkline_count_finished_runs_only() -> None:
    runs = [{"status": s} for s in ("running", "success", "failed", "success", "success")]
    assert views.success_rate(runs) == 0.75
    assert views.success_rate([{"status": "queued"}]) is None
    line = views.sparkline(runs, width=30, height=12, span=2)
    # oldest first: success, success, failed, success → rates 1, 1, 0.5, 0.5
    assert 'points="0.0,1.0 10.0,1.0 20.0,6.0 30.0,6.0"' in line
    assert views.sparkline([{"status": "success"}]) == ""


def test_pipeline_graph_links_calls_and_after_steps() -> None:
    steps: list[dict[str, str | None]] = [{"id": "a", "loop": "rollup", "parent_id": None},
             {"id": "b", "loop": "report", "parent_id": None},
             {"id": "c", "loop": "chart", "parent_id": "b"},
             {"id": "d", "loop": "retention", "parent_id": None}]
    nodes = views.pipeline_graph(steps, {"b": "rollup", "d": "rollup"})
    assert [(n.run["id"], n.column, n.row, n.source) for n in nodes] == [
        ("a", 0, 0, None), ("b", 1, 0, "a"), ("c", 2, 0, "b"), ("d", 1, 1, "a")]


def test_version_diff_lines_are_classed() -> None:
    lines = views.diff_lines("a\nb\n", "a\nc\n", "v1", "v2")
    assert lines == [("hunk", "--- v1"), ("hunk", "+++ v2"), ("hunk", "@@ -1,2 +1,2 @@"),
                     ("", " a"), ("del", "-b"), ("add", "+c")]


@pytest.mark.parametrize(("content_type", "kind"), [
    ("image/png", "image"), ("image/svg+xml", "image"), ("text/csv; charset=utf-8", "csv"),
    ("text/html", "html"), ("application/json", "json"), ("text/plain", "text"),
    ("application/octet-stream", "link")])
def test_artifacts_are_shown_by_their_type(content_type: str, kind: str) -> None:
    assert views.artifact_kind(content_type) == kind


def test_csv_preview_stops_at_its_limit() -> None:
    rows, more = views.csv_rows(b"t,v\n1,2\n3,4\n", limit=2)
    assert (rows, more) == ([["t", "v"], ["1", "2"]], True)
    assert views.csv_rows(b"t,v\n", limit=2) == ([["t", "v"]], False)


def test_a_stack_does_not_repeat_its_message() -> None:
    error = {"type": "Error", "message": "boom", "stack": "Error: boom\n    at f (a.js:1:2)"}
    assert views.stack_frames(error) == "    at f (a.js:1:2)"
    assert views.stack_frames({**error, "stack": "    at g"}) == "    at g"


def test_assets_are_pinned_to_a_registry_tarball() -> None:
    [uplot] = assets.ASSETS
    assert uplot.url == "https://registry.npmjs.org/uplot/-/uplot-1.6.32.tgz"
    assert len(uplot.sha256) == 64 and set(uplot.sha256) <= set("0123456789abcdef")


def test_make_install_put_the_pinned_assets_in_place() -> None:
    [uplot] = assets.ASSETS
    if not uplot.installed:
        pytest.fail(f"the web UI's assets are not installed: {', '.join(assets.missing())}; "
                    f"`make install` fetches them")
    assert uplot.sha256 in (assets.VENDOR / uplot.stamp).read_text()
    assert (assets.VENDOR / "uPlot.iife.min.js").read_bytes().startswith(b"/*! https://github.com/leeoniya/uPlot")


def test_a_tarball_with_another_digest_is_refused(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    [uplot] = assets.ASSETS
    forged = assets.Asset(uplot.package, uplot.version, "0" * 64, uplot.files)

    class Answer:
        def __enter__(self) -> Answer:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self) -> bytes:
            return b"not the tarball"

    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: Answer())
    with pytest.raises(RuntimeError, match=r"has sha256 [0-9a-f]{64}, not the pinned 0{64}"):
        assets.fetch(forged, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_pages_say_when_the_chart_library_is_missing(api: httpx.Client, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assets, "VENDOR", tmp_path)
    page = api.get("/ui/explore")
    assert page.status_code == 200
    assert "The chart library is not installed (uPlot.iife.min.js (uplot 1.6.32)" in page.text
    assert "make install" in page.text
    script = api.get("/ui/static/vendor/uPlot.iife.min.js")
    assert script.status_code == 404
    assert script.json()["error"]["message"] == (
        "uPlot.iife.min.js is not installed: the web UI's third-party files are fetched by "
        "`make install` (`python -m tsq.ui.assets`)")


def test_pages_answer_without_a_browser(api: httpx.Client) -> None:
    for path in ("/", "/ui/runs", "/ui/explore", "/ui/deploy"):
        answer = api.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "cdn" not in answer.text.lower()  # every file the page loads is tsq's own
    missing = api.get("/ui/loops/no-such-loop")
    assert missing.status_code == 404
    assert "no loop named &#39;no-such-loop&#39;" in missing.text
    assert api.get("/ui/runs/ffffffffffff").status_code == 404
    future = api.get("/ui/runs", params={"since": "2999-01-01T00:00", "status": "success"})
    assert future.status_code == 200 and "No run matches." in future.text
    bad = api.get("/ui/runs", params={"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.text
