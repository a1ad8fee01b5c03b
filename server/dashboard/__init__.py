"""The live web dashboard: one page of plain JavaScript on the JSON API, served with every script
and style by the service itself (no CDN, works offline). Charts are plotly.js, from the `plotly`
wheel. Asset URLs carry a digest of their content, so browsers may cache them for good.

Routes: `/` redirects to `/dashboard`; `/dashboard` is the page; `/dashboard/static/...` are
its files (`static/`); `/dashboard/vendor/plotly-<version>.min.js` is plotly.js.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

STATIC = Path(__file__).resolve().parent / "static"
_MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".svg": "image/svg+xml"}
_FOREVER = "public, max-age=31536000, immutable"
# plotly.js draws with inline styles and data: images; everything else comes from this origin.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; "
                           "style-src 'self' 'unsafe-inline'; object-src 'none'; "
                           "frame-ancestors 'none'; base-uri 'none'")

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    digest: str  # first 12 hex digits of the sha256: the URLs' cache key

    @functools.cached_property
    def gzipped(self) -> bytes:
        return gzip.compress(self.body, compresslevel=6, mtime=0)


def _asset(path: Path) -> Asset:
    body = path.read_bytes()
    return Asset(body, _MEDIA_TYPES[path.suffix], hashlib.sha256(body).hexdigest()[:12])


@functools.lru_cache(maxsize=32)
def static_asset(name: str) -> Asset | None:
    """One of the dashboard's own files, or None."""
    path = STATIC / name
    if name == "index.html" or path.suffix not in _MEDIA_TYPES or not path.is_file():
        return None
    return _asset(path)


@functools.cache
def plotly_asset() -> tuple[str, Asset] | None:
    """(version, plotly.min.js) from the installed `plotly` wheel, found without importing it;
    None when plotly is not installed."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "package_data" / "plotly.min.js"
        if path.is_file():
            asset = _asset(path)
            found = re.search(rb"plotly\.js v([0-9][0-9A-Za-z.+-]*)", asset.body[:400])
            return (found.group(1).decode() if found else asset.digest), asset
    return None


def _send(asset: Asset, request: Request, cache: str = _FOREVER) -> Response:
    etag = f'"{asset.digest}"'
    headers = {"Cache-Control": cache, "ETag": etag, "Vary": "Accept-Encoding",
               "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", "") and len(asset.body) > 1024:
        headers["Content-Encoding"] = "gzip"
        return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def _url(placeholder: str) -> str:
    if placeholder == "plotly":
        plotly = plotly_asset()
        return f"/dashboard/vendor/plotly-{plotly[0] if plotly else 'missing'}.min.js"
    name = placeholder.removeprefix("static:")
    asset = static_asset(name)
    if asset is None:
        raise FileNotFoundError(f"index.html names a missing dashboard file {name!r}")
    return f"/dashboard/static/{name}?v={asset.digest}"


@functools.cache
def _index_html() -> str:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    return re.sub(r"\{\{([\w:.-]+)\}\}", lambda m: _url(m.group(1)), html)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard", status_code=307)


@router.get("/dashboard")
@router.get("/dashboard/")
def page() -> HTMLResponse:
    return HTMLResponse(_index_html(), headers={
        "Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


@router.get("/dashboard/static/{name}")
def static_file(name: str, request: Request) -> Response:
    asset = static_asset(name) if re.fullmatch(r"[a-z][a-z0-9_-]*\.[a-z]+", name) else None
    if asset is None:
        raise HTTPException(404, f"no dashboard file {name!r}")
    # Asked with ?v=<digest> (the page's links): cached for good; else (the modules' imports)
    # revalidated by ETag.
    return _send(asset, request, _FOREVER if request.query_params.get("v") == asset.digest
                 else "no-cache")


@router.get("/dashboard/vendor/plotly-{version}.min.js")
def plotly_js(version: str, request: Request) -> Response:
    found = plotly_asset()
    if found is None:
        raise HTTPException(404, "plotly is not installed on the service: the dashboard's charts "
                                 "need it (pip install -e '.[server]')")
    if version != found[0]:
        raise HTTPException(404, f"this service has plotly.js {found[0]}, not {version}")
    return _send(found[1], request)
