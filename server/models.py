"""The SQL schema as SQLAlchemy 2.0 typed models. Migrations in `migrations/` create the same.

Arrays are float32 `.npy` bytes (`server/arrays.py`). Every table but `runs` hangs off a run and
goes with it (ON DELETE CASCADE).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite makes only INTEGER PRIMARY KEY an auto-increment rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both databases (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


def _run_fk() -> Any:
    return ForeignKey("runs.id", ondelete="CASCADE")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    preset: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8))
    overrides: Mapped[dict[str, Any]]
    config: Mapped[dict[str, Any]]  # learner.config.config_to_dict of the resolved config
    # {"run_id": R, "count": N}: start with run R's last N successful episodes (schemas.Prior)
    prior: Mapped[dict[str, Any] | None]
    status: Mapped[str] = mapped_column(String(16), default="created")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    stopped_at: Mapped[datetime | None]


class Episode(Base):
    __tablename__ = "episodes"
    __table_args__ = (
        UniqueConstraint("run_id", "runner", "seq", name="uq_episodes_run_runner_seq"),
        UniqueConstraint("run_id", "idempotency_key", name="uq_episodes_run_idempotency_key"),
        Index("ix_episodes_run_train_index", "run_id", "train_index"),
        Index("ix_episodes_run_id", "run_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(_run_fk())
    runner: Mapped[str] = mapped_column(String(128))
    seq: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    content_sha256: Mapped[str] = mapped_column(String(64))
    policy_kind: Mapped[str] = mapped_column(String(2))
    policy_version: Mapped[int]
    decision_id: Mapped[int | None] = mapped_column(
        ForeignKey("gate_decisions.id", ondelete="SET NULL")
    )
    steps: Mapped[int]
    observations: Mapped[bytes] = mapped_column(LargeBinary)  # (T+1, 21) float32 .npy
    actions: Mapped[bytes] = mapped_column(LargeBinary)  # (T, 9)
    rewards: Mapped[bytes] = mapped_column(LargeBinary)  # (T,)
    timestamps: Mapped[bytes] = mapped_column(LargeBinary)  # (T+1,) or (T,), seconds
    episode_return: Mapped[float] = mapped_column(Float)
    success: Mapped[bool] = mapped_column(Boolean)
    timing: Mapped[dict[str, Any]]
    # Position in the trainer's buffer; NULL until a trainer has learnt from the episode.
    train_index: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PolicySnapshot(Base):
    __tablename__ = "policy_snapshots"
    __table_args__ = (
        UniqueConstraint("run_id", "kind", "version", name="uq_policy_snapshots_run_kind_version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(_run_fk())
    kind: Mapped[str] = mapped_column(String(2))
    version: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    # The wire format (learner/export.py); None once pruned (only the newest versions keep it).
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    header: Mapped[dict[str, Any]]
    trainer: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GateDecision(Base):
    __tablename__ = "gate_decisions"
    __table_args__ = (Index("ix_gate_decisions_run_seen", "run_id", "episodes_seen"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(_run_fk())
    episodes_seen: Mapped[int]  # episodes the trainer had learnt from when it decided
    choice: Mapped[str] = mapped_column(String(2))
    reason: Mapped[str] = mapped_column(String(16))
    mf_version: Mapped[int]
    mb_version: Mapped[int]
    deterministic: Mapped[bool] = mapped_column(Boolean, default=False)
    record: Mapped[dict[str, Any]]  # learner.gate.GateRecord.to_dict()
    trainer: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LearnerMetric(Base):
    __tablename__ = "learner_metrics"
    __table_args__ = (Index("ix_learner_metrics_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(_run_fk())
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id", ondelete="SET NULL"))
    episodes_seen: Mapped[int]
    learn_seconds: Mapped[float] = mapped_column(Float)
    stats: Mapped[dict[str, Any]]  # losses, time/*_s, rate/*_per_s
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunnerStatus(Base):
    __tablename__ = "runners"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_runners_run_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(_run_fk())
    name: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))
    last_seq: Mapped[int | None] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunnerEvent(Base):
    """Something a runner reports apart from its heartbeat: a safety stop, an aborted episode, a
    failed reset. Append-only; the dashboard shows them."""

    __tablename__ = "runner_events"
    __table_args__ = (Index("ix_runner_events_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(_run_fk())
    runner: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))  # safety_stop, episode_aborted, info...
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrainerLease(Base):
    """Who trains a run. Times are Unix seconds of the trainers' clocks (keep them in NTP)."""

    __tablename__ = "trainer_leases"

    run_id: Mapped[int] = mapped_column(_run_fk(), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(200))
    generation: Mapped[int] = mapped_column(default=0)  # +1 per claim: fences stale owners
    expires_at: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_run_seen", "run_id", "episodes_seen"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(_run_fk())
    episodes_seen: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # in the database, or
    path: Mapped[str | None] = mapped_column(Text)  # a file under settings.checkpoint_dir
    trainer: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
