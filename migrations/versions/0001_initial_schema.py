"""Initial schema: runs, episodes, policy snapshots, gate decisions, learner metrics, runners,
trainer leases and checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite makes only INTEGER PRIMARY KEY an auto-increment rowid.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column:
    return sa.Column("id", BigId, primary_key=True)


def _run_id(**kwargs) -> sa.Column:
    return sa.Column("run_id", BigId, sa.ForeignKey("runs.id", ondelete="CASCADE"),
                     nullable=False, **kwargs)


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "runs",
        _id(),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("preset", sa.String(64), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("overrides", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        _time("started_at", nullable=True),
        _time("stopped_at", nullable=True),
    )
    op.create_table(
        "gate_decisions",
        _id(),
        _run_id(),
        sa.Column("episodes_seen", sa.Integer(), nullable=False),
        sa.Column("choice", sa.String(2), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("mf_version", sa.Integer(), nullable=False),
        sa.Column("mb_version", sa.Integer(), nullable=False),
        sa.Column("deterministic", sa.Boolean(), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("trainer", sa.String(200), nullable=False),
        _time("created_at"),
    )
    op.create_index("ix_gate_decisions_run_seen", "gate_decisions", ["run_id", "episodes_seen"])
    op.create_table(
        "episodes",
        _id(),
        _run_id(),
        sa.Column("runner", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("policy_kind", sa.String(2), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("decision_id", BigId, sa.ForeignKey("gate_decisions.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("observations", sa.LargeBinary(), nullable=False),
        sa.Column("actions", sa.LargeBinary(), nullable=False),
        sa.Column("rewards", sa.LargeBinary(), nullable=False),
        sa.Column("timestamps", sa.LargeBinary(), nullable=False),
        sa.Column("episode_return", sa.Float(), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("timing", sa.JSON(), nullable=False),
        sa.Column("train_index", sa.Integer(), nullable=True),
        _time("created_at"),
        sa.UniqueConstraint("run_id", "runner", "seq", name="uq_episodes_run_runner_seq"),
        sa.UniqueConstraint("run_id", "idempotency_key", name="uq_episodes_run_idempotency_key"),
    )
    op.create_index("ix_episodes_run_train_index", "episodes", ["run_id", "train_index"])
    op.create_index("ix_episodes_run_id", "episodes", ["run_id", "id"])
    op.create_table(
        "policy_snapshots",
        _id(),
        _run_id(),
        sa.Column("kind", sa.String(2), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("header", sa.JSON(), nullable=False),
        sa.Column("trainer", sa.String(200), nullable=False),
        _time("created_at"),
        sa.UniqueConstraint("run_id", "kind", "version",
                            name="uq_policy_snapshots_run_kind_version"),
    )
    op.create_table(
        "learner_metrics",
        _id(),
        _run_id(),
        sa.Column("episode_id", BigId, sa.ForeignKey("episodes.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("episodes_seen", sa.Integer(), nullable=False),
        sa.Column("learn_seconds", sa.Float(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        _time("created_at"),
    )
    op.create_index("ix_learner_metrics_run", "learner_metrics", ["run_id", "id"])
    op.create_table(
        "runners",
        _id(),
        _run_id(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        _time("first_seen_at"),
        _time("last_seen_at"),
        sa.UniqueConstraint("run_id", "name", name="uq_runners_run_name"),
    )
    op.create_table(
        "trainer_leases",
        _run_id(primary_key=True),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
    )
    op.create_table(
        "checkpoints",
        _id(),
        _run_id(),
        sa.Column("episodes_seen", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("trainer", sa.String(200), nullable=False),
        _time("created_at"),
    )
    op.create_index("ix_checkpoints_run_seen", "checkpoints", ["run_id", "episodes_seen"])


def downgrade() -> None:
    for index, table in (
        ("ix_checkpoints_run_seen", "checkpoints"),
        ("ix_learner_metrics_run", "learner_metrics"),
        ("ix_episodes_run_id", "episodes"),
        ("ix_episodes_run_train_index", "episodes"),
        ("ix_gate_decisions_run_seen", "gate_decisions"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("checkpoints", "trainer_leases", "runners", "learner_metrics",
                  "policy_snapshots", "episodes", "gate_decisions", "runs"):
        op.drop_table(table)
