"""Policy snapshots may lose their bytes: old versions are pruned, their rows are kept.

A runner may upload an episode long after it ran (spooled while the service was away); the
upload names its policy version, which must still exist. So pruning empties `data` and keeps
the row (version, sha256, header).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("policy_snapshots") as batch:
        batch.alter_column("data", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE policy_snapshots SET data = '' WHERE data IS NULL")
    with op.batch_alter_table("policy_snapshots") as batch:
        batch.alter_column("data", existing_type=sa.LargeBinary(), nullable=False)
