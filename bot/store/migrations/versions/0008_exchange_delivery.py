"""exchanges.delivery: whether the person saw the answer (delivered, partial, failed)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

Set by the front end's sink when the answer closes: a Slack write that finally failed is
recorded as ``partial`` or ``failed`` (and an ``answered`` outcome as ``incomplete``), never
as an answer the person saw. NULL: recorded before this revision.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exchanges", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivery", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("exchanges", schema=None) as batch_op:
        batch_op.drop_column("delivery")
