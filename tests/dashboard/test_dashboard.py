"""The dashboard in a real browser (Debian's Chromium through Playwright) against a real service
process on a seeded database: pages load without console errors and without any file from
elsewhere, charts hold the seeded points, start/stop/create work with the admin token and fail
clearly without it, an uploaded episode appears live, and empty and error states say what to do.
"""

from __future__ import annotations

import re
import time

import httpx
import numpy as np
import pytest
from dashboard_testkit import ADMIN, RUNNER_AUTH, SAFETY_STOP, episode_arrays
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.slow
TRACES = "(id, meta) => (document.getElementById(id)?.data || []).filter(t => t.meta === meta)"


def wait_for(page: Page, script: str, arg=None, timeout: float = 10.0):
    """Polls `script` (a JS function) until it returns something truthy; returns that.
    (page.wait_for_function would evaluate a string, which the page's CSP forbids.)"""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script, arg)
        if value or time.monotonic() > deadline:
            assert value, f"timed out waiting for {script}"
            return value
        time.sleep(0.1)


def points(page: Page, chart: str = "chart-returns") -> int:
    return page.evaluate(f"([id]) => ({TRACES})(id, 'episodes')"
                         ".reduce((n, t) => n + t.x.length, 0)", [chart])


def test_runs_page_lists_the_runs(page, seed, console):
    page.goto("/")
    assert page.url.endswith("/dashboard")
    rows = page.locator("#runs-table tbody tr")
    expect(rows.first).to_be_visible()
    demo = page.locator(f"#runs-table tr[data-run-id='{seed.demo.id}']")
    expect(demo).to_contain_text("unified-turn-valve")
    expect(demo).to_contain_text("running")
    expect(demo).to_contain_text("58 / 60")
    expect(demo).to_contain_text("gpu-box-1")
    expect(page.locator(f"tr[data-run-id='{seed.baseline.id}']")).to_contain_text("stopped")
    expect(page.locator(f"tr[data-run-id='{seed.empty.id}']")).to_contain_text("created")
    expect(page.locator("#live-text")).to_contain_text("live")
    page.click(f"#runs-table tr[data-run-id='{seed.demo.id}'] a")
    expect(page.locator("#run-name")).to_have_text("unified-turn-valve")
    console.assert_clean()


def test_run_page_charts_hold_the_seeded_data(page, seed, console):
    page.goto(f"/dashboard#/runs/{seed.demo.id}")
    wait_for(page, f"() => ({TRACES})('chart-returns', 'episodes').length === 2")
    assert points(page) == seed.demo.episodes == 60
    by_kind = page.evaluate(f"() => ({TRACES})('chart-returns', 'episodes').map(t => t.x.length)")
    choices = [d["choice"] for d in seed.demo.decisions]
    assert by_kind == [choices.count("mf"), choices.count("mb")] and all(by_kind)
    assert page.evaluate("() => document.getElementById('chart-fractions').data[0].x.length") == 60
    boxes = page.evaluate(f"() => ({TRACES})('chart-gate', 'gate').map(t => t.y.length)")
    with_estimates = sum(d["has_estimates"] for d in seed.demo.decisions)
    assert len(boxes) == min(30, with_estimates) and set(boxes) == {50}
    assert page.evaluate("() => document.getElementById('chart-losses').data.length") >= 5
    assert page.evaluate("() => document.getElementById('chart-rates').data.length") == 3
    expect(page.locator("#gate-table tbody tr")).to_have_count(10)
    lab = page.locator("#runners-table tr[data-runner='claw-lab-1']")
    expect(lab).to_contain_text("safety stop")
    expect(lab.locator(".age.stale")).to_contain_text("min ago")
    expect(page.locator("#runners-table tr[data-runner='sim-1']")).to_contain_text("0.40")
    expect(page.locator("#events-list li.safety_stop")).to_contain_text(SAFETY_STOP)
    expect(page.locator("#events-list li.safety_stop")).to_contain_text("cause: temperature")
    table = page.locator("#episodes-table tbody tr")
    expect(table).to_have_count(20)
    expect(table.first.locator("td").first).to_have_text("60")
    page.click("#older")
    expect(table.first.locator("td").first).to_have_text("40")
    console.assert_clean()


def _confirm(page: Page) -> None:
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-ok")


def _give_token(page: Page, token: str) -> None:
    expect(page.locator("#token-dialog")).to_be_visible()
    page.fill("#token-input", token)
    page.press("#token-input", "Enter")


def test_start_and_stop_need_the_admin_token(page, seed, service, console):
    console.allow(r"status of 403")  # the wrong token, on purpose
    status = lambda: httpx.get(f"{service.url}/api/v1/runs/{seed.empty.id}").json()["status"]  # noqa: E731
    page.goto(f"/dashboard#/runs/{seed.empty.id}")
    expect(page.locator("#start-run")).to_be_enabled()
    page.click("#start-run")
    _confirm(page)
    expect(page.locator("#token-dialog")).to_be_visible()
    page.click("#token-cancel")
    expect(page.locator(".toast.bad")).to_contain_text("no admin token given")
    assert status() == "created"

    page.click("#start-run")
    _confirm(page)
    _give_token(page, "not-the-admin-token-0000")
    expect(page.locator("#token-error")).to_contain_text("refused the token (403")
    _give_token(page, ADMIN)
    expect(page.locator(".page-head .badge")).to_have_text("running")
    assert status() == "running"
    expect(page.locator("#token-state")).to_be_visible()

    page.click("#stop-run")
    _confirm(page)  # the token is kept for the tab: not asked again
    expect(page.locator(".page-head .badge")).to_have_text("stopped")
    assert status() == "stopped"
    page.click("#forget-token")
    expect(page.locator("#token-state")).to_be_hidden()
    console.assert_clean()


def test_create_a_run(page, service, console):
    console.allow(r"status of 409")  # the duplicate name, on purpose
    page.goto("/dashboard")
    page.click("#new-run")
    page.fill("#create-form input[name=name]", "from-the-browser")
    page.fill("#create-form textarea[name=overrides]", "{not json")
    page.click("#create-form button[type=submit]")
    expect(page.locator("#create-error")).to_contain_text("not valid JSON")
    page.fill("#create-form textarea[name=overrides]", '{"warmup_episodes": 3}')
    page.click("#create-form button[type=submit]")
    _give_token(page, ADMIN)
    expect(page.locator("#runs-table")).to_contain_text("from-the-browser")
    page.click("#new-run")
    page.fill("#create-form input[name=name]", "from-the-browser")
    page.click("#create-form button[type=submit]")
    expect(page.locator("#create-error")).to_contain_text("exists already")
    console.assert_clean()


def test_create_a_run_that_starts_from_an_earlier_runs_successes(page, seed, service, console):
    console.allow(r"status of 422")  # the unknown source run, on purpose
    page.goto("/dashboard")
    page.click("#new-run")
    page.fill("#create-form input[name=name]", "with-a-head-start")
    page.fill("#create-form input[name=prior_run]", "99999")
    page.click("#create-form button[type=submit]")
    _give_token(page, ADMIN)
    expect(page.locator("#create-error")).to_contain_text("no run with id 99999")
    page.fill("#create-form input[name=prior_run]", str(seed.demo.id))
    page.fill("#create-form input[name=prior_count]", "3")
    page.click("#create-form button[type=submit]")
    row = page.locator("#runs-table tr", has_text="with-a-head-start")
    expect(row).to_be_visible()
    page.goto(f"/dashboard#/runs/{row.get_attribute('data-run-id')}")
    expect(page.locator("#run-prior")).to_have_text(
        f" · started from the last 3 successful episodes of run {seed.demo.id}")
    console.assert_clean()


def test_uploaded_episode_appears_live(page, seed, service, console):
    run = seed.baseline
    page.goto(f"/dashboard#/runs/{run.id}")
    wait_for(page, f"() => ({TRACES})('chart-returns', 'episodes').length === 2")
    assert points(page) == run.episodes
    body = {"runner": "sim-1", "seq": run.episodes, "policy_kind": "mf",
            "policy_version": run.episodes - 1, "decision_id": run.decisions[-1]["id"],
            "timing": {"period_error_p99_ms": 0.7, "overruns": 0.0},
            **episode_arrays(np.random.default_rng(7), -250.0, True)}
    with httpx.Client(base_url=service.url, headers=RUNNER_AUTH) as client:
        uploaded = client.post(f"/api/v1/runs/{run.id}/episodes", json=body,
                               headers={"Idempotency-Key": "live-upload-0001"})
        assert uploaded.status_code == 201, uploaded.text
        assert client.post(f"/api/v1/runs/{run.id}/runners/sim-1/events", json={
            "kind": "safety_stop", "message": "motor 12: current 1.9 A above the limit 1.5 A",
            "details": {"cause": "current", "motor": 12}}).status_code == 201
    started = time.monotonic()
    wait_for(page, f"() => ({TRACES})('chart-returns', 'episodes')"
                   f".reduce((n, t) => n + t.x.length, 0) === {run.episodes + 1}", timeout=8)
    assert time.monotonic() - started < 8
    expect(page.locator("#episodes-table tbody tr").first.locator("td").first).to_have_text(
        str(run.episodes + 1))
    expect(page.locator("#events-list li.safety_stop")).to_contain_text("motor 12")
    console.assert_clean()


def test_empty_missing_and_error_states(page, seed, console):
    page.goto(f"/dashboard#/runs/{seed.empty.id}")
    main = page.locator("main")
    for hint in ("No episodes yet", "No runner connected", "dclaw run --learner",
                 "No gate comparisons yet", "No learner metrics yet",
                 "No safety stops or runner events"):
        expect(main).to_contain_text(hint)

    console.allow(r"status of 404")
    page.goto("/dashboard#/runs/999999")
    expect(main).to_contain_text("There is no run 999999")

    page.route(re.compile(r"/api/v1/runs(/summaries)?\?"), lambda route: route.fulfill(
        status=200, content_type="application/json", body="[]"))
    page.goto("/dashboard#/")
    expect(main).to_contain_text("No runs yet")
    expect(main).to_contain_text("curl -X POST")

    console.allow(r"ERR_FAILED")
    page.route(re.compile(r"/api/v1/"), lambda route: route.abort())
    expect(page.locator("#banner")).to_contain_text("The service does not answer")
    expect(page.locator("#live-text")).to_have_text("service not answering")

    console.allow(r"status of 401")
    tokens = []

    def reads_need_a_token(route):  # as with DCLAW_READ_REQUIRES_TOKEN=1
        tokens.append(route.request.headers.get("authorization"))
        route.fulfill(status=401, content_type="application/json",
                      body='{"detail": "missing bearer token (Authorization: Bearer <token>)"}')

    page.route(re.compile(r"/api/v1/"), reads_need_a_token)
    expect(page.locator("#banner")).to_contain_text("refused to show its data (401")
    page.click("#read-token")
    _give_token(page, "a-reading-token-0123456789")
    expect(page.locator("#token-state")).to_be_visible()
    deadline = time.monotonic() + 5
    while "Bearer a-reading-token-0123456789" not in tokens and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert "Bearer a-reading-token-0123456789" in tokens
    console.assert_clean()
