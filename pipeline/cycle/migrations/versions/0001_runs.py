"""The runs table: one row per cycle with status, provenance, counts, timings and manifest.

Revision ID: 0001_runs
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_runs"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(16), nullable=False),
        sa.Column("cycle_time", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("degraded_reasons", sa.JSON, nullable=False),
        sa.Column("cold_start", sa.Boolean, nullable=False),
        sa.Column("cold_start_source", sa.String(64), nullable=True),
        sa.Column("background_source", sa.String(256), nullable=True),
        sa.Column("model", sa.JSON, nullable=False),
        sa.Column("obs_counts", sa.JSON, nullable=False),
        sa.Column("timings", sa.JSON, nullable=False),
        sa.Column("verification", sa.JSON, nullable=False),
        sa.Column("manifest", sa.JSON, nullable=True),
        sa.Column("products_path", sa.String(1024), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'published', 'failed', 'degraded')",
                           name="ck_runs_status"),
        sa.UniqueConstraint("run_id", name="uq_runs_run_id"),
    )
    op.create_index("ix_runs_cycle_time", "runs", ["cycle_time"])
    op.create_index("ix_runs_status", "runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_cycle_time", table_name="runs")
    op.drop_table("runs")
