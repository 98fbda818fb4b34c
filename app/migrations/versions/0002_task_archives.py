"""Record each task archived by the background job, once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 10:00:00+00:00

The primary key on task_id is the job's idempotency key: a rerun (a worker killed after its
commit but before RQ recorded the job as done) finds the row and only counts itself in runs.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_archives",
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column(
            "archived_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("runs", sa.Integer(), server_default="1", nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_archives_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_task_archives")),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("task_archives")
