"""What retention deleted: each range of a source a retention run trimmed, so a rollup never
rolls a window up again from what is left of it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "trims",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("connector", sa.String(400), nullable=False),
        sa.Column("selector", sa.String(400), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("loop", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_trims_range", "trims", ["project", "start_ms"])


def downgrade() -> None:
    op.drop_index("ix_trims_range", "trims")
    op.drop_table("trims")
