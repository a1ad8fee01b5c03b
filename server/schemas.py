"""Request and response bodies of the API (pydantic), apart from the ORM models.

The runner-facing ones are small on purpose: the runner is a plain httpx client.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from learner.config import PRESETS

RUNNER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"  # letters, digits, _.:@-; at most 128
Name = Annotated[str, StringConstraints(pattern=RUNNER_NAME)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
PolicyKind = Literal["mf", "mb"]
MAX_ID = 2**62  # ids and sequence numbers: BIGINT columns
MAX_INT32 = 2**31 - 1  # versions and counts: INTEGER columns
RunStatus = Literal["created", "running", "stopping", "stopped", "failed"]


def strict_json(value: Any) -> Any:
    """What a JSON column can hold on both databases: no NaN/inf, no NUL characters."""
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError as exc:
        raise ValueError("must not hold NaN or infinite numbers") from exc
    if "\\u0000" in text:
        raise ValueError("must not hold NUL characters")
    return value


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- runs --------------------------------------------------------------------------------------
class PriorEpisodes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: int = Field(ge=1, le=MAX_ID, description="The earlier run to take them from.")
    count: int = Field(5, ge=1, le=10_000, description="How many: its last N successful ones.")


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                          pattern=r"^[^\x00-\x1f\x7f]+$"),
    ] = Field(description="Unique; no control characters.")
    algorithm: Literal["unified", "sac", "mbrl"] = "unified"
    preset: str = Field("dclaw-paper", description="A learner preset: dclaw-paper or cpu-small.")
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Config fields as `make_config` takes them: top-level by name, nested as "
        "section__field, e.g. {\"warmup_episodes\": 2, \"sac__batch_size\": 64}.",
    )
    mode: Literal["sync", "async"] = Field(
        "sync",
        description="sync: an assignment waits until the trainer has learnt from the runner's "
        "previous episodes (Alg. 1); async: the newest decision.",
    )
    prior: PriorEpisodes | None = Field(
        None,
        description="Start the buffer with an earlier run's last successful episodes (Ball et "
        "al. 2023): they train the learners but are not the run's episodes. A run that stalls "
        "because it never sees a success gets past it this way; it is then not learning from "
        "scratch.",
    )

    _overrides_json = field_validator("overrides")(strict_json)

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, preset: str) -> str:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        return preset


class TrainerInfo(BaseModel):
    owner: str
    generation: int
    expires_at: float


class RunOut(_Out):
    id: int
    name: str
    algorithm: str
    preset: str
    mode: str
    overrides: dict[str, Any]
    prior: PriorEpisodes | None = None
    status: RunStatus
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    episodes: int = 0
    episodes_learned: int = 0
    trainer: TrainerInfo | None = None


class RunDetail(RunOut):
    config: dict[str, Any]


# -- assignments -------------------------------------------------------------------------------
class AssignmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runner: Name
    seq: int = Field(ge=0, le=MAX_ID, description="The runner's episode sequence number.")


class Assignment(BaseModel):
    run_id: int
    policy_kind: PolicyKind
    policy_version: int
    sha256: str = Field(description="sha256 of the policy document (the download's bytes).")
    policy_url: str = Field(description="Where to download the policy, relative to the host.")
    decision_id: int
    deterministic: bool = Field(description="Run the mean action (true) or sample (false).")
    episode_steps: int
    episodes_seen: int = Field(description="Episodes the trainer had learnt from at the decision.")
    reason: str


class NotReadyBody(BaseModel):
    status: Literal["not_ready"] = "not_ready"
    retry_after_ms: int
    detail: str


class RefusedBody(BaseModel):
    status: Literal["refused"] = "refused"
    detail: str


class ErrorBody(BaseModel):
    detail: Any


# -- episodes ----------------------------------------------------------------------------------
class EpisodeUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runner: Name
    seq: int = Field(ge=0, le=MAX_ID)
    policy_kind: PolicyKind
    policy_version: int = Field(ge=0, le=MAX_INT32)
    decision_id: int = Field(ge=1, le=MAX_ID)
    observations: list[list[Finite]] = Field(description="(T+1) x 21", max_length=100_000)
    actions: list[list[Finite]] = Field(description="T x 9", max_length=100_000)
    rewards: list[Finite] = Field(description="T", max_length=100_000)
    timestamps: list[Finite] = Field(
        description="Per-tick times in seconds, T+1 or T of them, never decreasing.",
        max_length=100_000,
    )
    timing: dict[Annotated[str, StringConstraints(max_length=64)], Finite] = Field(
        default_factory=dict,
        max_length=64,
        description="Loop timing figures, e.g. {\"period_mean_s\": 0.1, \"missed_deadlines\": 0}.",
    )


class EpisodeOut(_Out):
    id: int
    run_id: int
    runner: str
    seq: int
    policy_kind: str
    policy_version: int
    decision_id: int | None
    steps: int
    episode_return: float = Field(serialization_alias="return")
    success: bool
    timing: dict[str, float]
    train_index: int | None = Field(description="Position in the trainer's buffer; null until "
                                    "a trainer has learnt from the episode.")
    created_at: datetime


class EpisodeDetail(EpisodeOut):
    observations: list[list[float]]
    actions: list[list[float]]
    rewards: list[float]
    timestamps: list[float]


class EpisodePage(BaseModel):
    items: list[EpisodeOut]
    next_after: int | None = Field(description="Pass as ?after= for the next page; null: end.")


# -- policies, gate, metrics, runners, checkpoints ----------------------------------------------
class PolicyOut(_Out):
    kind: str
    version: int
    sha256: str
    size: int
    header: dict[str, Any]
    created_at: datetime


class GateDecisionOut(_Out):
    id: int
    run_id: int
    episodes_seen: int
    choice: str
    reason: str
    mf_version: int
    mb_version: int
    deterministic: bool
    record: dict[str, Any]
    trainer: str
    created_at: datetime


class LearnerMetricOut(_Out):
    id: int
    episode_id: int | None
    episodes_seen: int
    learn_seconds: float
    stats: dict[str, float]
    created_at: datetime


class HeartbeatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] = Field(
        description="e.g. idle, running, spooling, fault"
    )
    seq: int | None = Field(None, ge=0, le=MAX_ID)
    details: dict[str, Any] | None = Field(
        None, max_length=64, description="Free-form status details; omitted: kept as they were.")

    _details_json = field_validator("details")(strict_json)


class RunnerOut(_Out):
    name: str
    status: str
    last_seq: int | None
    details: dict[str, Any]
    first_seen_at: datetime
    last_seen_at: datetime


EVENT_KIND = r"^[a-z][a-z0-9_-]{0,31}$"


class RunnerEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Annotated[str, StringConstraints(pattern=EVENT_KIND)] = Field(
        description="e.g. safety_stop, episode_aborted, reset_failed, info")
    message: Annotated[str, StringConstraints(max_length=2000)] = Field(
        description="For people: what happened, e.g. \"motor 21: temperature 81 °C above the "
        "limit 80 °C\".")
    details: dict[str, Any] = Field(
        default_factory=dict, max_length=64,
        description="For programs, e.g. {\"cause\": \"temperature\", \"motor\": 21}.")

    _details_json = field_validator("details")(strict_json)


class RunnerEventOut(_Out):
    id: int
    run_id: int
    runner: str
    kind: str
    message: str
    details: dict[str, Any]
    created_at: datetime


class RunnerEventPage(BaseModel):
    items: list[RunnerEventOut]
    next_after: int | None = Field(description="Pass as ?after= for the next page; null: end.")


class CheckpointOut(_Out):
    id: int
    episodes_seen: int
    sha256: str
    size: int
    trainer: str
    created_at: datetime


# -- dashboard aggregates ----------------------------------------------------------------------
class EpisodeSeries(BaseModel):
    """A run's episodes as columns, for charts: one entry per episode in upload order."""

    id: list[int]
    returns: list[float] = Field(serialization_alias="return")
    success: list[bool]
    policy_kind: list[str]
    next_after: int | None = Field(description="Pass as ?after= for the rest; null: end.")


class RunSummary(BaseModel):
    """What the runs list shows beside a run: its newest episode and its runners."""

    run_id: int
    last_episode_id: int | None
    last_return: float | None
    last_success: bool | None
    last_policy_kind: str | None
    last_episode_at: datetime | None
    runners: int
    last_heartbeat_at: datetime | None


class Health(BaseModel):
    status: str
    detail: dict[str, str] = Field(default_factory=dict)
