"""Schema of the release before migrations (main at 9456b3d): the baseline.

A database created by that release (its tables, no version table) is stamped with
this revision at start instead of running it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ = (sa, sqlmodel)


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "ingest_alarm",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("message", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("raised_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("cleared_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("delivery", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("commands", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ingest_alarm", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_alarm_raised_at_ms"), ["raised_at_ms"], unique=False
        )

    op.create_table(
        "ingest_deadletter",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("point", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("received_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ingest_deadletter", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_deadletter_received_at_ms"), ["received_at_ms"], unique=False
        )

    op.create_table(
        "ingest_envelope",
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("point", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("learned", sa.Integer(), nullable=False),
        sa.Column("taught", sa.LargeBinary(), nullable=False),
        sa.Column("centre", sa.LargeBinary(), nullable=False),
        sa.Column("spread", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("rule", "device_id", "point"),
    )
    op.create_table(
        "ingest_rule",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("spec", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "ingest_telemetry",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("msg_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("point", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("samples", sa.LargeBinary(), nullable=False),
        sa.Column("attrs", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ingest_telemetry", schema=None) as batch_op:
        batch_op.create_index("ix_ingest_telemetry_device_ts", ["device_id", "ts_ms"], unique=False)
        batch_op.create_index(
            "uq_ingest_telemetry_key", ["rule", "msg_id", "device_id", "ts_ms"], unique=True
        )

    op.create_table(
        "ingest_verdict",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("rule", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("msg_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("point", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("scores", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("trace_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("attrs", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ingest_verdict", schema=None) as batch_op:
        batch_op.create_index("ix_ingest_verdict_device_ts", ["device_id", "ts_ms"], unique=False)
        batch_op.create_index(
            "uq_ingest_verdict_key", ["rule", "msg_id", "device_id", "ts_ms"], unique=True
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("ingest_verdict", schema=None) as batch_op:
        batch_op.drop_index("uq_ingest_verdict_key")
        batch_op.drop_index("ix_ingest_verdict_device_ts")

    op.drop_table("ingest_verdict")
    with op.batch_alter_table("ingest_telemetry", schema=None) as batch_op:
        batch_op.drop_index("uq_ingest_telemetry_key")
        batch_op.drop_index("ix_ingest_telemetry_device_ts")

    op.drop_table("ingest_telemetry")
    op.drop_table("ingest_rule")
    op.drop_table("ingest_envelope")
    with op.batch_alter_table("ingest_deadletter", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_deadletter_received_at_ms"))

    op.drop_table("ingest_deadletter")
    with op.batch_alter_table("ingest_alarm", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_alarm_raised_at_ms"))

    op.drop_table("ingest_alarm")
