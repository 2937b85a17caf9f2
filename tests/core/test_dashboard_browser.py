"""The dashboard page in a real headless browser: Debian's chromium driven by Playwright.

No browser is downloaded: Playwright drives the system's chromium (``apt-get install
chromium``; ``LANGROUTE_CHROMIUM`` names another binary). The tests skip, saying why,
where chromium or the ``playwright`` package is missing; ``.ci/run`` installs both.
A screenshot of each view goes to ``$LANGROUTE_ARTIFACTS/dashboard`` (default: the
test's temporary folder), for CI to keep.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from langroute.costs import CostLedger, LedgerRecord
from langroute.dashboard import Dashboard, create_dashboard_app
from langroute.dashboard.app import free_socket

from .test_dashboard import SUM_TOLERANCE, cli_json, demo_ledger  # noqa: F401 (a fixture)
from .test_ledger_analytics import generated_records, store

VIEWS = ["overview", "routing", "latency", "segments", "quality", "decisions", "exemplars"]
HOSTILE = '<img src=x onerror="window.__injected=1">'


def _missing(reason: str) -> None:
    """Skip, saying why; in CI (``CI`` set), fail: the browser tests must run there."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _chromium() -> str:
    for candidate in (os.environ.get("LANGROUTE_CHROMIUM"), "chromium", "chromium-browser"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    _missing("no chromium on this machine (apt-get install chromium; .ci/run installs it)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright import sync_api
    except ImportError:
        _missing(
            "the playwright package is missing (pip install playwright; the test extra has it)"
        )
    executable = _chromium()
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LANGROUTE_ARTIFACTS") or tmp_path) / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def serving(ledger: Any, **options: Any) -> Iterator[str]:
    """The dashboard of ``ledger`` served by uvicorn in a thread; its URL."""
    import uvicorn

    dashboard = Dashboard(ledger, **options)
    sock = free_socket("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(create_dashboard_app(dashboard), log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        dashboard.close()


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, url: str) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.url = url

    def view(self, name: str, query: str = "") -> Any:
        """Open a view and wait until it has drawn (``body[data-ready]``)."""
        self.page.evaluate("document.body.dataset.ready = ''")
        self.page.goto(f"{self.url}#{name}{'?' + query if query else ''}")
        self.page.wait_for_function(
            "name => document.body.dataset.ready === name", arg=name, timeout=60_000
        )
        return self.page

    def screenshots(self, folder: Path, prefix: str) -> None:
        for name in VIEWS:
            self.view(name)
            self.page.screenshot(path=str(folder / f"{prefix}-{name}.png"), full_page=True)
        assert self.errors == []

    def close(self) -> None:
        self.page.close()


def test_an_empty_ledger_draws_every_view_without_errors(
    browser, tmp_path: Path, artifacts: Path
) -> None:
    ledger = tmp_path / "empty.jsonl"
    ledger.touch()
    with serving(ledger) as url:
        page = Page(browser, url)
        page.screenshots(artifacts, "empty")
        overview = page.view("overview")
        assert overview.locator('[data-key="calls"]').get_attribute("data-value") == "0"
        assert "no data yet" in overview.locator("#chart-spend").inner_text()
        page.close()


def _check_totals(page: Any, report: dict[str, Any]) -> None:
    for key in ("requests", "calls", "cost", "baseline_cost", "savings", "errors"):
        card = page.locator(f'[data-key="{key}"]')
        shown = json.loads(card.get_attribute("data-value"))
        assert shown == pytest.approx(report[key], rel=SUM_TOLERANCE), key
    saved = page.locator('[data-key="savings"] .value').inner_text()
    assert saved == (f"${report['savings']:.6f}" if report["savings"] < 0.01 else saved)
    shown = page.locator('[data-key="requests"] .value').inner_text()
    assert shown == f"{report['requests']:,}"


def _check_pages(page: Page, report: dict[str, Any], tmp_path: Path) -> None:
    overview = page.view("overview")
    _check_totals(overview, report)
    assert overview.locator("#chart-spend svg circle").count() > 0
    assert overview.locator("#chart-cumulative svg path.series").count() == 2
    routing = page.view("routing")
    assert routing.locator("#chart-routes svg rect").count() > 0
    assert routing.locator("#chart-models svg rect").count() > 0
    assert routing.locator("#chart-rates svg circle").count() > 0
    latency = page.view("latency")
    assert latency.locator("#chart-latency svg rect").count() > 0

    # the decision log: filter by route in the form, then open a row's "why" card
    decisions = page.view("decisions")
    route = report["routes"][-1]["route"]
    decisions.fill('#filters input[name="route"]', route)
    decisions.click('#filters button[type="submit"]')
    decisions.wait_for_function(
        "route => location.hash.includes('route=' + route) && "
        "document.body.dataset.ready === 'decisions'",
        arg=route,
    )
    decisions.wait_for_selector("#decisions-table tbody tr td")
    routes = decisions.locator("#decisions-table tbody tr td:nth-child(2)").all_inner_texts()
    assert routes and set(routes) == {route}
    calls = next(r["calls"] for r in report["routes"] if r["route"] == route)
    assert decisions.locator("#decisions-count").inner_text().startswith(f"{calls:,} calls")
    decisions.locator("#decisions-table tbody tr").first.click()
    decisions.wait_for_selector("#why h2")
    assert decisions.locator("#why h2").first.inner_text() == f"Why {route}?"

    # a chart point links to its window's requests
    overview = page.view("overview")
    overview.locator("#chart-spend svg circle").first.click()
    overview.wait_for_function(
        "document.body.dataset.ready === 'decisions' && location.hash.includes('since=')"
    )
    overview.wait_for_selector("#decisions-table tbody tr td")
    assert "0 calls" not in overview.locator("#decisions-count").inner_text()[:7]
    assert page.errors == []


def test_the_demo_ledger_page_shows_the_report_totals_and_filters(
    browser,
    demo_ledger: Path,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
    artifacts: Path,
) -> None:
    report = cli_json("report", str(demo_ledger), cwd=tmp_path)
    with serving(demo_ledger) as url:
        page = Page(browser, url)
        page.screenshots(artifacts, "demo")
        _check_pages(page, report, tmp_path)
        page.close()


def test_a_postgres_ledger_page(
    browser, postgres_url: str, tmp_path: Path, artifacts: Path
) -> None:
    store(generated_records(300, seed=5), postgres_url).close()
    report = cli_json("report", postgres_url, cwd=tmp_path)
    with serving(postgres_url) as url:
        page = Page(browser, url)
        page.screenshots(artifacts, "postgres")
        _check_pages(page, report, tmp_path)
        page.close()


def test_text_from_the_ledger_or_the_address_is_never_html(browser, tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = CostLedger(path, auto_price=False)
    for index in range(3):
        ledger.record(
            LedgerRecord(
                run_id=f"r{index}",
                route=HOSTILE,
                model=HOSTILE,
                reason=HOSTILE,
                cost=0.001,
                baseline_cost=0.002,
                latency_ms=10.0,
                query=HOSTILE,
                metadata={"api_key": HOSTILE, "stage": HOSTILE, "neighbours": [{"text": HOSTILE}]},
            )
        )
    ledger.close()
    with serving(path) as url:
        page = Page(browser, url)
        for name in VIEWS:
            page.view(name)
        decisions = page.view("decisions", "route=" + HOSTILE.replace(" ", "%20"))
        decisions.wait_for_selector("#decisions-table tbody tr td")
        decisions.locator("#decisions-table tbody tr").first.click()
        decisions.wait_for_selector("#why pre")
        assert decisions.locator("#why pre").first.inner_text() == HOSTILE
        assert decisions.locator("img").count() == 0
        assert decisions.evaluate("window.__injected") is None
        assert HOSTILE in decisions.locator("#decisions-table").inner_text()
        segments = page.view("segments")
        assert HOSTILE in segments.locator("#segments-table").inner_text()
        assert segments.locator("img").count() == 0
        assert page.errors == []
        page.close()
