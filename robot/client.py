"""The runner's HTTP client for the learner service (httpx; the API is server/api/)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from robot.policy import NumpyPolicy, PolicyIntegrityError


class ServiceUnavailable(Exception):
    """The service could not be reached or answered 5xx: wait and retry."""


class NotReady(Exception):
    """The trainer has not decided the next episode yet (sync mode): retry after `retry_after_s`."""

    def __init__(self, detail: str, retry_after_s: float):
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class RunNotRunning(Exception):
    """The run is stopped (or was never started): the runner has nothing to do."""


class Rejected(Exception):
    """A 4xx the runner cannot fix by retrying (bad token, unknown run, invalid upload)."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class Assignment:
    run_id: int
    policy_kind: str
    policy_version: int
    sha256: str
    policy_url: str
    decision_id: int
    deterministic: bool
    episode_steps: int
    episodes_seen: int
    reason: str

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Assignment:
        return cls(**{name: body[name] for name in cls.__dataclass_fields__})


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return detail if isinstance(detail, str) else str(detail)


class LearnerClient:
    """One run on one service, seen from a runner. Thread-confined: one per thread."""

    def __init__(self, base_url: str, run_id: int, runner: str, token: str | None,
                 timeout: float = 10.0, transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.run_id, self.runner = run_id, runner
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                 timeout=timeout, transport=transport)
        self._prefix = f"/api/v1/runs/{run_id}"

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"{self.http.base_url} unreachable: "
                                     f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500 and response.status_code != 503:
            raise ServiceUnavailable(f"service error {response.status_code}: {_detail(response)}")
        return response

    def run(self) -> dict[str, Any]:
        response = self._request("GET", self._prefix)
        if response.status_code != 200:
            raise Rejected(response.status_code, _detail(response))
        return response.json()

    def runner_status(self) -> dict[str, Any] | None:
        """This runner's row on the service (its last seq), or None before its first contact."""
        response = self._request("GET", f"{self._prefix}/runners")
        if response.status_code != 200:
            raise Rejected(response.status_code, _detail(response))
        return next((r for r in response.json() if r["name"] == self.runner), None)

    def assignment(self, seq: int) -> Assignment:
        response = self._request("POST", f"{self._prefix}/assignments",
                                 json={"runner": self.runner, "seq": seq})
        if response.status_code == 200:
            return Assignment.from_json(response.json())
        if response.status_code == 503:
            try:
                body = response.json()
                return_after = float(body["retry_after_ms"]) / 1e3
                detail = body.get("detail", "not ready")
            except (ValueError, KeyError, TypeError):  # a proxy's 503, not ours
                raise ServiceUnavailable(
                    f"service unavailable (503): {response.text[:200]}") from None
            raise NotReady(detail, return_after)
        if response.status_code == 409:
            raise RunNotRunning(_detail(response))
        raise Rejected(response.status_code, _detail(response))

    def policy(self, assignment: Assignment) -> tuple[bytes, NumpyPolicy]:
        """Downloads and verifies the assigned policy document (sha256 of the bytes and weights)."""
        response = self._request("GET", assignment.policy_url)
        if response.status_code != 200:
            raise Rejected(response.status_code, _detail(response))
        data = response.content
        try:
            return data, NumpyPolicy.from_bytes(data, expected_sha256=assignment.sha256)
        except PolicyIntegrityError as exc:  # a broken download: fetch again later
            raise ServiceUnavailable(f"policy v{assignment.policy_version} failed its "
                                     f"check: {exc}") from exc

    def upload(self, body: dict[str, Any], key: str) -> tuple[int, dict[str, Any]]:
        """Uploads an episode; returns (201 stored | 200 already stored, the episode summary)."""
        response = self._request("POST", f"{self._prefix}/episodes", json=body,
                                 headers={"Idempotency-Key": key})
        if response.status_code in (200, 201):
            return response.status_code, response.json()
        if response.status_code in (408, 429, 503):
            raise ServiceUnavailable(f"upload deferred ({response.status_code}): "
                                     f"{_detail(response)}")
        raise Rejected(response.status_code, _detail(response))

    def heartbeat(self, status: str, seq: int | None, details: dict[str, Any]) -> None:
        response = self._request("POST", f"{self._prefix}/runners/{self.runner}/heartbeat",
                                 json={"status": status, "seq": seq, "details": details})
        if response.status_code != 200:
            raise Rejected(response.status_code, _detail(response))

    def event(self, kind: str, message: str, details: dict[str, Any]) -> None:
        response = self._request("POST", f"{self._prefix}/runners/{self.runner}/events",
                                 json={"kind": kind, "message": message[:2000],
                                       "details": details})
        if response.status_code not in (200, 201):
            raise Rejected(response.status_code, _detail(response))
