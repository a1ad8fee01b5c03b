"""Prometheus metrics: the API's (`/metrics` of `dclaw serve`) and a trainer process's (its own
port, DCLAW_TRAINER_METRICS_PORT or `dclaw trainer --metrics-port`): they run in different
processes, so each has its own registry and Prometheus scrapes both."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServiceMetrics:
    """The API's metrics. One registry per app (per app in tests), so apps never share counters."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "dclaw_http_request_seconds", "HTTP request latency by route, method and status.",
            ["method", "route", "status"], registry=r, buckets=_LATENCY_BUCKETS)
        self.episodes_stored = Counter(
            "dclaw_episodes_stored_total", "Episodes stored (retries excluded).", registry=r)
        self.episode_retries = Counter(
            "dclaw_episode_upload_retries_total",
            "Uploads answered with an earlier upload's result.", registry=r)
        self.assignments = Counter(
            "dclaw_assignments_total", "Assignment answers by outcome.", ["outcome"], registry=r)


class TrainerMetrics:
    """A trainer process's metrics (its supervisor and every run it trains)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.episodes_learned = Counter(
            "dclaw_trainer_episodes_learned_total", "Episodes the trainers learnt from.",
            registry=r)
        self.learn_seconds = Histogram(
            "dclaw_trainer_learn_seconds", "Learning time per episode (all updates).",
            registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
        self.decisions = Counter(
            "dclaw_trainer_decisions_total", "Gate decisions stored, by choice.", ["choice"],
            registry=r)
        self.checkpoints = Counter(
            "dclaw_trainer_checkpoints_total", "Checkpoints written.", registry=r)
        self.active_runs = Gauge(
            "dclaw_trainer_active_runs", "Runs this process is training now.", registry=r)
        self.lease_losses = Counter(
            "dclaw_trainer_lease_losses_total", "Runs given up because their lease was lost.",
            registry=r)


class RequestMetricsMiddleware:
    """Times every HTTP request by its route template (not the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope["method"], template, str(status[0])).observe(
                time.perf_counter() - start)
