"""Screenshots of the dashboard for the README: seeds a temporary database (as the browser tests
do), starts `dclaw serve --no-trainer` on it, and lets Debian's Chromium photograph the runs list
and one run.

    .venv/bin/python scripts/dashboard_screenshots.py [--out docs]
    .venv/bin/python scripts/dashboard_screenshots.py --live http://127.0.0.1:8000 --run 1

Writes dashboard-runs.png and dashboard-run.png; with --live, photographs a running service
(e.g. `make demo`) instead and writes dashboard-live-run.png.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "dashboard"))

import dashboard_testkit as kit  # noqa: E402 -- the seed lives beside the browser tests

from server.db import make_engine, make_session_factory  # noqa: E402

log = logging.getLogger("dashboard_screenshots")
CHARTS = ("chart-returns", "chart-fractions", "chart-gate", "chart-losses", "chart-rates")


def _wait_for_charts(page, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    script = "(ids) => ids.every(id => document.getElementById(id)?.data?.length)"
    while not page.evaluate(script, list(CHARTS)):
        if time.monotonic() > deadline:
            raise TimeoutError("the run page's charts were not drawn")
        time.sleep(0.2)


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    runs_png, run_png = out / "dashboard-runs.png", out / "dashboard-run.png"
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'dclaw.db'}"
        seed = kit.seed_database(url)
        service = kit.Service(url, Path(tmp))
        engine = make_engine(url, pool_size=1)
        try:
            with sync_playwright() as playwright:
                browser = kit.launch_chromium(playwright)
                page = browser.new_page(base_url=service.url,
                                        viewport={"width": 1400, "height": 900})
                page.goto("/dashboard")
                page.wait_for_selector("#runs-table")
                page.wait_for_timeout(1200)  # past "connecting…"
                box = page.locator("main").bounding_box()
                page.screenshot(path=runs_png, clip={"x": 0, "y": 0, "width": 1400,
                                                     "height": box["y"] + box["height"]})
                kit.heartbeat_sim(make_session_factory(engine), seed.demo.id)
                page.goto(f"/dashboard#/runs/{seed.demo.id}")
                _wait_for_charts(page)
                page.wait_for_timeout(1500)
                page.screenshot(path=run_png, full_page=True)
                browser.close()
        finally:
            engine.dispose()
            service.stop()
    return [runs_png, run_png]


def take_live(url: str, run_id: int, out: Path) -> list[Path]:
    """The run page of a live service, as it is now (real training, not seeded data)."""
    out.mkdir(parents=True, exist_ok=True)
    png = out / "dashboard-live-run.png"
    with sync_playwright() as playwright:
        browser = kit.launch_chromium(playwright)
        page = browser.new_page(base_url=url, viewport={"width": 1400, "height": 900})
        page.goto(f"/dashboard#/runs/{run_id}")
        page.wait_for_selector("#chart-returns")
        page.wait_for_timeout(4000)  # the first poll and the charts
        page.screenshot(path=png, full_page=True)
        browser.close()
    return [png]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="Folder of the PNGs.")
    parser.add_argument("--live", metavar="URL", help="Photograph this running service instead.")
    parser.add_argument("--run", type=int, default=1, help="With --live: the run to show.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    paths = take_live(args.live, args.run, args.out) if args.live else take(args.out)
    for path in paths:
        log.info("wrote %s", path)


if __name__ == "__main__":
    main()
