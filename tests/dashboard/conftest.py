"""Fixtures of the dashboard's browser tests: one seeded SQLite database and one real service
process (`dclaw serve --no-trainer`) per module, Debian's Chromium driven by Playwright, and a
fresh browser context per test whose console errors fail the test."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from dashboard_testkit import Seed, Service, launch_chromium, seed_database
from playwright.sync_api import Browser, Page, sync_playwright


class Console:
    """Console errors and uncaught exceptions of a page, and requests that left the service."""

    def __init__(self, origin: str):
        self.origin = origin
        self.errors: list[str] = []
        self.external: list[str] = []
        self.allowed: list[str] = []

    def allow(self, pattern: str) -> None:
        """An error the test causes on purpose (e.g. the 403 of a wrong token)."""
        self.allowed.append(pattern)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(p, e) for p in self.allowed)]

    def assert_clean(self) -> None:
        assert self.unexpected() == [], self.unexpected()
        assert self.external == [], f"the page asked for files elsewhere: {self.external}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[str, Seed]:
    url = f"sqlite:///{tmp_path_factory.mktemp('dashboard') / 'dclaw.db'}"
    return url, seed_database(url)


@pytest.fixture(scope="module")
def seed(seeded) -> Seed:
    return seeded[1]


@pytest.fixture(scope="module")
def service(seeded, tmp_path_factory) -> Iterator[Service]:
    service = Service(seeded[0], tmp_path_factory.mktemp("service"))
    yield service
    service.stop()


# Module scope: Playwright's sync API runs an event loop in this thread while it is open, which
# later tests that start their own (anyio.run) must not find.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        try:
            browser = launch_chromium(playwright)
        except FileNotFoundError as exc:  # a failure, never a skip: CI must run these tests
            pytest.fail(str(exc))
        yield browser
        browser.close()


@pytest.fixture
def console(service) -> Console:
    return Console(service.url)


@pytest.fixture
def page(browser, service, console) -> Iterator[Page]:
    context = browser.new_context(base_url=service.url, viewport={"width": 1400, "height": 900})

    def offline(route):  # everything must come from the service: no CDN
        console.external.append(route.request.url)
        route.abort()

    context.route(lambda url: not url.startswith(service.url), offline)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    yield page
    context.close()
    console.assert_clean()
