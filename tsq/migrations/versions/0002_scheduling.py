"""Scheduling: run windows and retry times, run keys unique per project, schedule start times.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


# 0001 left the unique constraint on runs.key unnamed; each backend names such a constraint its
# own way (SQLite: not at all, so the batch copy names it through the naming convention below).
UNNAMED_KEY_CONSTRAINT = {"sqlite": "uq_runs_key", "postgresql": "runs_key_key"}
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # batch mode: SQLite cannot drop a constraint in place, so Alembic copies the table.
    with op.batch_alter_table("runs", recreate="always", naming_convention=NAMING) as batch:
        batch.add_column(sa.Column("window_start_ms", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("window_end_ms", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("epsilon_ms", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("not_before_ms", sa.BigInteger, nullable=True))
        batch.drop_constraint(UNNAMED_KEY_CONSTRAINT.get(dialect, "uq_runs_key"), type_="unique")
        batch.create_unique_constraint("uq_runs_project_key", ["project", "key"])
    op.create_index("ix_runs_event_scheduled", "runs",
                    ["project", "loop", "event", "scheduled_ms"])
    op.create_table(
        "schedules",
        sa.Column("project", sa.String(64), primary_key=True),
        sa.Column("loop", sa.String(64), primary_key=True),
        sa.Column("event", sa.String(64), primary_key=True),
        sa.Column("rate", sa.String(200), nullable=False),
        sa.Column("since_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schedules")
    op.drop_index("ix_runs_event_scheduled", "runs")
    with op.batch_alter_table("runs", recreate="always") as batch:
        batch.drop_constraint("uq_runs_project_key", type_="unique")
        for column in ("not_before_ms", "epsilon_ms", "window_end_ms", "window_start_ms"):
            batch.drop_column(column)
