"""Pipelines: the step tree of runs, when each pipeline pinned its versions, the history of which
version each loop pointed at (so a pipeline can be pinned to the moment it started), and the
artifacts runs produce.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("pipeline_ms", sa.BigInteger, nullable=True))
    # Every run is the first step of its own pipeline unless it was started by another one.
    op.execute("UPDATE runs SET pipeline_id = id WHERE pipeline_id IS NULL")
    op.execute("UPDATE runs SET pipeline_ms = queued_ms WHERE pipeline_ms IS NULL")
    op.create_index("ix_runs_pipeline", "runs", ["pipeline_id"])
    op.create_index("ix_runs_parent", "runs", ["parent_id"])
    op.create_index("ix_runs_loop_window", "runs", ["project", "loop", "window_start_ms"])
    history = op.create_table(
        "loop_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version_id", sa.String(64), nullable=True),  # None: deleted
        sa.Column("since_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_loop_history_name", "loop_history", ["project", "name", "since_ms"])
    loops = sa.table("loops", sa.column("project"), sa.column("name"),
                     sa.column("latest_version"), sa.column("updated_ms"),
                     sa.column("deleted_ms"))
    op.execute(history.insert().from_select(
        ["project", "name", "version_id", "since_ms"],
        sa.select(loops.c.project, loops.c.name,
                  sa.case((loops.c.deleted_ms.is_(None), loops.c.latest_version)),
                  loops.c.updated_ms)))
    op.create_table(
        "artifacts",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("artifacts")
    op.drop_index("ix_loop_history_name", "loop_history")
    op.drop_table("loop_history")
    for index in ("ix_runs_loop_window", "ix_runs_parent", "ix_runs_pipeline"):
        op.drop_index(index, "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("pipeline_ms")
        batch.drop_column("parent_id")
