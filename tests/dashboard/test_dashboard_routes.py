"""The dashboard's files as the service serves them (in process, no browser): the page with a
strict Content-Security-Policy, versioned links to files that exist, plotly.js from the installed
wheel cached for good and gzipped, nothing from elsewhere, clear 404s."""

from __future__ import annotations

import gzip
import re

import pytest
from dashboard_testkit import ADMIN, RUNNER
from fastapi.testclient import TestClient

from server import dashboard, migrate
from server.app import create_app
from server.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('routes') / 'dclaw.db'}"
    migrate.upgrade(url)
    settings = Settings(_env_file=None, database_url=url, admin_token=ADMIN, runner_token=RUNNER,
                        trainer=False)
    with TestClient(create_app(settings)) as client:
        yield client


def _links(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#]+)"', html)


def test_page_and_its_files(client):
    root = client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self'
    assert "default-src 'self'" in page.headers["content-security-policy"]
    links = _links(page.text)
    assert "{{" not in page.text and len(links) == 4
    for link in links:
        assert link.startswith("/dashboard/"), link  # no CDN
        served = client.get(link)
        assert served.status_code == 200, link
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    # The modules import each other without a version: revalidated by ETag instead.
    module = client.get("/dashboard/static/run.js")
    assert module.headers["cache-control"] == "no-cache"
    again = client.get("/dashboard/static/run.js",
                       headers={"If-None-Match": module.headers["etag"]})
    assert again.status_code == 304


def test_no_file_names_another_origin():
    for path in dashboard.STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(src|href|import[^;]*from)\s*=?\s*[\"']https?:", text), path.name


def test_plotly_comes_from_the_wheel(client):
    version, asset = dashboard.plotly_asset()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", version)
    url = f"/dashboard/vendor/plotly-{version}.min.js"
    assert url in client.get("/dashboard").text
    zipped = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["content-type"].startswith("text/javascript")
    assert zipped.content == asset.body  # httpx has already inflated it
    assert len(gzip.compress(asset.body)) < len(asset.body) / 2
    wrong = client.get("/dashboard/vendor/plotly-0.0.1.min.js")
    assert wrong.status_code == 404 and version in wrong.json()["detail"]


def test_unknown_files_are_404(client):
    for name in ("nothing.js", "index.html", "..%2Fapi.py", "app.py", "App.js"):
        response = client.get(f"/dashboard/static/{name}")
        assert response.status_code == 404, name
