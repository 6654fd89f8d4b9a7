"""Indexes on when a run stands for (its scheduled time, else when it was queued), over all runs,
by loop and by status (which replaces the index on status alone): listings show the newest
first, and without them read and sorted every run.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"

RUN_TIME = sa.text("coalesce(scheduled_ms, queued_ms)")


def upgrade() -> None:
    op.create_index("ix_runs_time", "runs", [RUN_TIME])
    op.create_index("ix_runs_loop_time", "runs", ["loop", RUN_TIME])
    op.create_index("ix_runs_status_time", "runs", ["status", RUN_TIME])
    op.drop_index("ix_runs_status", table_name="runs")


def downgrade() -> None:
    op.create_index("ix_runs_status", "runs", ["status"])
    op.drop_index("ix_runs_status_time", table_name="runs")
    op.drop_index("ix_runs_loop_time", table_name="runs")
    op.drop_index("ix_runs_time", table_name="runs")
