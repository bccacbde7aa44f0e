"""labels travel with text: exchanges, reviews and verified answers keep what they carry

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

A NULL ``labels`` (rows written before this revision) is read as unknown, which fails closed:
such a turn never reaches a shared thread's prompt or a hosted model.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("exchanges", "reviews", "verified_answers")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("labels", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("labels")
