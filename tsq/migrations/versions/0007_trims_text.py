"""A trim's connector key and selector are text of any length: they were VARCHAR(400), which
SQLite never enforced and PostgreSQL does, so there a retention of a long selector, or of a
connector with a long configuration, could not record what it deleted.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("trims") as trims:
        for column in ("connector", "selector"):
            trims.alter_column(column, type_=sa.Text, existing_type=sa.String(400),
                               existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("trims") as trims:
        for column in ("connector", "selector"):
            trims.alter_column(column, type_=sa.String(400), existing_type=sa.Text,
                               existing_nullable=False)
