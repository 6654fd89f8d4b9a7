"""The web UI in a real browser (Debian's chromium, driven by Playwright): deploy with a mistake
and fix it, run a loop and open its run, watch the ledger fill as a schedule fires, query in
Explore, at desktop and phone widths. Screenshots of the main pages land in TSQ_SCREENSHOTS (or
pytest's temporary directory), to be looked at."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

CHROMIUM = Path(os.environ.get("TSQ_CHROMIUM", "/usr/bin/chromium"))
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)
WAIT_MS = 30_000  # the longest any step waits (a run, a scheduled fire)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
expect.set_options(timeout=WAIT_MS)  # assertions wait as long as actions (a loaded machine)

BROKEN = """functions:
  ui-report:
    handler: report.js
    timout: 10
"""
TICKING = """functions:
  ui-tick:
    handler: tick.js
    events:
      - every-second:
          rate: R/2026-01-01T00:00:00Z/PT1S/ET2S
"""
REPORT = """export default async function (event) {
  console.log(`report for ${event.params.dc || "every dc"}`);
  const cpu = await db.select('ui_cpu', {start: "2026-11-24T00:00:00Z", end: "2026-11-25T00:00:00Z"});
  await artifacts.chart("cpu.png", cpu, {title: "CPU", ylabel: "%", width: 800, height: 300});
  await artifacts.csv("cpu.csv", cpu);
  await artifacts.json("summary.json", {series: cpu.length});
  await artifacts.html("index.html", "<h1>CPU report</h1><img src='cpu.png' width=200>");
  return {series: cpu.length};
}
"""
TICK = "export default async (event) => { console.log('tick'); return 1; }\n"
POINTS = "\n".join(f"ui_cpu,host=web0{h} value={40 + 10 * h + (m % 7)} "
                   f"{1795478400 + m * 60}" for h in (1, 2) for m in range(120))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's chromium; Playwright's own browser download cannot work offline. Missing as
    root (as in CI, where tests/install-servers installs it) is a failure, not a skip."""
    if not CHROMIUM.is_file():
        message = (f"chromium is not installed at {CHROMIUM} (apt-get install chromium; "
                   f"tests/install-servers installs it), so the web UI is untested")
        if os.geteuid() == 0:
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("TSQ_SCREENSHOTS")
    where = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def page(browser: Browser, api: httpx.Client) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP, base_url=str(api.base_url))
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(f"/login?token={token_of(api)}")  # the link `tsq ui` prints
    yield opened
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def token_of(api: httpx.Client) -> str:
    return api.headers["Authorization"].removeprefix("Bearer ")


def test_a_browser_without_a_token_is_asked_for_one(browser: Browser, api: httpx.Client,
                                                    shots: Path) -> None:
    context = browser.new_context(viewport=DESKTOP, base_url=str(api.base_url))
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    try:
        opened.goto("/ui/runs")
        assert opened.url.endswith("/login?next=%2Fui%2Fruns")
        opened.get_by_label("token").fill("tsq_wrong")
        opened.get_by_role("button", name="Sign in").click()
        expect(opened.get_by_role("alert")).to_contain_text("not valid")
        snap(opened, shots, "login-refused")
        opened.get_by_label("token").fill(token_of(api))
        opened.get_by_role("button", name="Sign in").click()
        expect(opened.get_by_role("heading", name="Runs")).to_be_visible()
        assert opened.url.endswith("/ui/runs")
    finally:
        context.close()


def snap(page: Page, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def fits(page: Page) -> None:
    """Nothing wider than the screen: no sideways scrolling of the whole page."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{page.url} is {overflow} px wider than the screen"


def test_deploy_run_ledger_and_explore(page: Page, api: httpx.Client, shots: Path) -> None:
    assert api.post("/v1/write", params={"precision": "s"}, content=POINTS).status_code == 200
    deploy_with_mistakes(page, api, shots)
    run_and_open_it(page, shots)
    watch_the_ledger_fill(page, shots)
    list_runs(page, shots)
    explore(page, shots)
    page.goto("/")
    expect(page.locator("a.loop-name", has_text="ui-tick")).to_be_visible()
    expect(page.locator("tr", has_text="ui-tick")).to_contain_text("every second")
    snap(page, shots, "loops")
    fits(page)


def deploy_with_mistakes(page: Page, api: httpx.Client, shots: Path) -> None:
    """Deploy with mistakes: each shows under its editor, with its line and column."""
    page.goto("/ui/deploy")
    page.fill("textarea[name=content]", BROKEN)
    page.fill("input[name=handler]", "report.js")
    page.fill("textarea[name=source]", REPORT.replace("return {", "return {{"))
    page.click("#deploy-form button[type=submit]")
    problem = page.locator('.problems[data-for="content"] .problem')
    expect(problem).to_contain_text('loops.yml:4:5 functions.ui-report.timout: unknown key '
                                    '"timout"; did you mean "timeout"?')
    expect(problem.locator("pre.caret")).to_contain_text("    timout: 10")
    in_handler = page.locator('.problems[data-for="source"] .problem')
    expect(in_handler).to_contain_text("report.js:8:11")
    expect(in_handler).to_contain_text("SyntaxError")
    expect(page.locator("#deploy-outcome")).to_have_text("2 problems; nothing was deployed")
    snap(page, shots, "deploy-problem")
    assert api.get("/v1/loops/ui-report").status_code == 404

    page.fill("textarea[name=content]", BROKEN.replace("timout", "timeout"))
    page.fill("textarea[name=source]", REPORT)
    page.click("#deploy-form button[type=submit]")
    expect(page.locator("#deploy-outcome")).to_contain_text("deployed ui-report version 1")
    expect(page.locator(".problem")).to_have_count(0)
    # One file, two loops, a handler each: the second file is added to the form.
    page.fill("textarea[name=content]", BROKEN.replace("timout", "timeout") +
              TICKING.removeprefix("functions:\n"))
    page.click("#add-file")
    page.locator("input[name=handler]").nth(1).fill("tick.js")
    page.locator("textarea[name=source]").nth(1).fill(TICK.replace("return 1", "return 1 +"))
    page.click("#deploy-form button[type=submit]")
    expect(page.locator(".handler").nth(1).locator(".problem")).to_contain_text("tick.js:1:")
    expect(page.locator(".handler").nth(0).locator(".problem")).to_have_count(0)
    snap(page, shots, "deploy-two-files")
    page.locator("textarea[name=source]").nth(1).fill(TICK)
    page.click("#deploy-form button[type=submit]")
    expect(page.locator("#deploy-outcome")).to_contain_text("deployed ui-report version 1 (unchanged)")
    expect(page.locator("#deploy-outcome")).to_contain_text("deployed ui-tick version 1")
    page.goto("/ui/loops/ui-report")
    expect(page.locator("h1")).to_contain_text("ui-report")


def run_and_open_it(page: Page, shots: Path) -> None:
    """Run it now and open the run: its log, its result and its chart."""
    page.click("summary:has-text('Run now')")
    page.click("#run-form button[type=submit]")
    status = page.locator("#run-outcome .status")
    expect(status).to_have_text("success")
    page.click("#run-outcome a")
    expect(page.locator("#run-status")).to_have_text("success")
    expect(page.locator("#run-log")).to_contain_text("report for every dc")
    expect(page.locator("#run-result")).to_contain_text('"series": 2')
    chart = page.locator('.artifact[data-kind="image"] img')
    expect(chart).to_be_visible()
    chart.scroll_into_view_if_needed()  # it loads lazily
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0",
                           arg=chart.element_handle())
    assert page.evaluate("(img) => img.naturalWidth", chart.element_handle()) == 800
    expect(page.locator('.artifact[data-kind="csv"] table tr').first).to_contain_text("time")
    expect(page.locator('.artifact[data-kind="json"] pre')).to_contain_text('"series": 2')
    report = page.locator('.artifact[data-kind="html"] iframe')
    assert report.get_attribute("sandbox") == ""  # no script, no origin of the UI's own
    expect(page.frame_locator('.artifact[data-kind="html"] iframe').locator("h1")).to_have_text(
        "CPU report")
    snap(page, shots, "run")


def watch_the_ledger_fill(page: Page, shots: Path) -> None:
    """The ledger of the every-second loop fills as the schedule fires."""
    page.goto("/ui/loops/ui-tick")
    succeeded = page.locator('#ledger .cell[data-status="success"]')
    expect(succeeded.nth(1)).to_be_attached()
    seen = succeeded.count()
    expect(succeeded.nth(seen + 1)).to_be_attached()  # two more fires, seen by the refresh
    assert page.locator('#ledger .cell[data-status="upcoming"]').count() >= 1
    snap(page, shots, "loop")
    succeeded.first.click()
    expect(page.locator("h1")).to_contain_text("success")
    expect(page.locator("text=schedule").first).to_be_visible()


def list_runs(page: Page, shots: Path) -> None:
    """The runs list, filtered by loop and status."""
    page.goto("/ui/runs?loop=ui-report&status=success")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    page.goto("/ui/runs")
    snap(page, shots, "runs")


def explore(page: Page, shots: Path) -> None:
    """Explore: a query draws its series; a mistake shows where it is."""
    page.goto("/ui/explore")
    page.fill("#tsl", "select('ui_cpu')\n  .from(1795478400000, 1795485600000)")
    page.click("#query-form button[type=submit]")
    expect(page.locator("#series-count")).to_have_text("2 series")
    expect(page.locator("#chart canvas")).to_be_attached()
    expect(page.locator("#compiled-warpscript")).to_contain_text("FETCH")
    expect(page.locator("#plan")).to_contain_text("ui_cpu")
    snap(page, shots, "explore")
    page.fill("#tsl", "select('ui_cpu')\n  .where(")
    page.click("#query-form button[type=submit]")
    error = page.locator("#query-error")
    expect(error).to_contain_text("at line 2")
    expect(error.locator("pre.caret")).to_have_text(re.compile(r"2 \|   \.where\(\n +\| +\^"))

def test_pages_fit_a_phone(page: Page, api: httpx.Client, shots: Path) -> None:
    page.set_viewport_size(PHONE)
    run_id = api.get("/v1/runs", params={"loop": "ui-report"}).json()["runs"][0]["id"]
    for name, path in (("loops", "/"), ("loop", "/ui/loops/ui-tick"), ("runs", "/ui/runs"),
                       ("run", f"/ui/runs/{run_id}"), ("explore", "/ui/explore"),
                       ("deploy", "/ui/deploy")):
        page.goto(path)
        if name == "loop":
            expect(page.locator("#ledger .cell").first).to_be_attached()
        elif name == "explore":
            page.fill("#tsl", "select('ui_cpu')\n  .from(1795478400000, 1795485600000)")
            page.click("#query-form button[type=submit]")
            expect(page.locator("#chart canvas")).to_be_attached()
        else:
            page.wait_for_load_state("networkidle")
        snap(page, shots, f"phone-{name}")
        fits(page)


HOURLY = """functions:
  ui-hourly:
    handler: hourly.js
    events:
      - hourly:
          rate: R/2026-01-01T00:00:00Z/PT1H/ET10M
  ui-after:
    handler: after.js
    events:
      - then:
          after: ui-hourly
"""
# The window of scheduled time t starts an hour before it; some hours fail, one times out.
HOURLY_JS = """export default async (e) => {
  const h = new Date(e.window.start).getUTCHours();
  if (h % 5 === 3) throw new Error(`no data for hour ${h}`);
  return h;
}
"""


def test_backfill_diff_and_roll_back(page: Page, api: httpx.Client, shots: Path) -> None:
    files = {"hourly.js": HOURLY_JS, "after.js": "export default async () => 'after'"}
    assert api.post("/v1/loops", json={"content": HOURLY, "files": files}).status_code == 201
    page.goto("/ui/loops/ui-hourly")
    page.click("summary:has-text('Backfill')")
    page.fill("#backfill-form input[name=from]", "2026-11-22T00:00:00")
    page.fill("#backfill-form input[name=to]", "2026-11-24T00:00:00")
    page.click("#backfill-form button[type=submit]")
    expect(page.locator("#backfill-outcome")).to_contain_text(
        "48 of 48 scheduled times (38 succeeded, 10 failed, 0 skipped): done")
    assert page.locator("#backfill-outcome progress").get_attribute("value") == "48"
    # The ledger shows the backfilled range: a row a day, each hour coloured by its run.
    days = page.locator("#ledger .day")
    expect(days).to_have_count(2)
    expect(days.nth(0).locator(".cell")).to_have_count(24)
    expect(page.locator('#ledger .cell[data-status="failed"]')).to_have_count(10)
    expect(page.locator('#ledger .cell[data-status="success"]')).to_have_count(38)
    snap(page, shots, "ledger-backfill")
    page.locator('#ledger .cell[data-status="failed"]').first.click()
    error = page.locator("#run-error")
    expect(error).to_contain_text("Error: no data for hour 23")  # the window of 00:00
    expect(error).to_contain_text("at __tsq.load.exports.default (hourly.js:3:26)")
    assert error.inner_text().count("no data for hour 23") == 1  # the stack's first line is not repeated

    # Run now, over a window of one's choosing.
    page.goto("/ui/loops/ui-hourly")
    page.click("summary:has-text('Run now')")
    page.fill("#run-form input[name=start]", "2026-11-20T05:00:00")
    page.fill("#run-form input[name=end]", "2026-11-20T06:00:00")
    page.click("#run-form button[type=submit]")
    expect(page.locator("#run-outcome .status")).to_have_text("success")
    ran = page.locator("#run-outcome a").get_attribute("href") or ""
    record = api.get(f"/v1/runs/{ran.rsplit('/', 1)[-1]}").json()
    assert (record["window_start_ms"], record["result"]) == (1795150800000, 5)

    # A success started its `after:` step: the pipeline's graph links the two.
    [done] = api.get("/v1/runs", params={"loop": "ui-hourly", "status": "success", "trigger": "backfill",
                                         "limit": 1}).json()["runs"]
    page.goto(f"/ui/runs/{done['id']}")
    nodes = page.locator("svg.pipeline .node")
    expect(nodes).to_have_count(2)
    expect(page.locator("svg.pipeline a").nth(1)).to_contain_text("ui-after")
    expect(page.locator("svg.pipeline line.edge")).to_have_count(1)
    snap(page, shots, "run-pipeline")

    # A second version, its diff with the first, and a roll back to it.
    files["hourly.js"] = HOURLY_JS.replace("% 5 === 3", "% 7 === 3")
    assert api.post("/v1/loops", json={"content": HOURLY, "files": files}).status_code == 201
    page.goto("/ui/loops/ui-hourly")
    expect(page.locator("h1")).to_contain_text("v2")
    expect(page.locator("pre.diff .del")).to_have_text("-  if (h % 5 === 3) throw new Error("
                                                       "`no data for hour ${h}`);")
    expect(page.locator("pre.diff .add")).to_contain_text("if (h % 7 === 3)")
    snap(page, shots, "loop-diff")
    page.click("summary:has-text('Roll back')")
    page.click("#rollback-form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("v1")
    assert api.get("/v1/loops/ui-hourly").json()["version"]["number"] == 1


def test_delete_asks_first(page: Page, api: httpx.Client) -> None:
    page.goto("/ui/loops/ui-tick")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#delete-loop")
    assert api.get("/v1/loops/ui-tick").status_code == 200
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#delete-loop")
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator("a.loop-name", has_text="ui-tick")).to_have_count(0)
    assert api.get("/v1/loops/ui-tick").status_code == 404
