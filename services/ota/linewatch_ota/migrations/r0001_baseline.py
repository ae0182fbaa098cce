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
        "ota_commands",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("deadline", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("result_json", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ota_commands", schema=None) as batch_op:
        batch_op.create_index("ix_ota_commands_device_seq", ["device_id", "seq"], unique=False)
        batch_op.create_index("ix_ota_commands_state_seq", ["state", "seq"], unique=False)

    op.create_table(
        "ota_device_updates",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("rollout_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("firmware_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("priority", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("priority_rank", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("deadline", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ota_device_updates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ota_device_updates_device_id"), ["device_id"], unique=False
        )
        batch_op.create_index(
            "ix_ota_device_updates_queue", ["state", "priority_rank", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_ota_device_updates_rollout_state", ["rollout_id", "state"], unique=False
        )
        batch_op.create_index(
            "ux_ota_one_active_update_per_device",
            ["device_id"],
            unique=True,
            postgresql_where=sa.text("state IN ('notified', 'downloading', 'installing')"),
            sqlite_where=sa.text("state IN ('notified', 'downloading', 'installing')"),
        )

    op.create_table(
        "ota_devices",
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("current_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("hw", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_table(
        "ota_firmware",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("product", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("signature", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("hardware_json", sa.Text(), server_default="[]", nullable=False),
        sa.Column("security_counter", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "manifest_signature",
            sqlmodel.sql.sqltypes.AutoString(length=128),
            server_default="",
            nullable=False,
        ),
        sa.Column(
            "key_id", sqlmodel.sql.sqltypes.AutoString(length=64), server_default="", nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("product", "version", name="uq_ota_firmware_version"),
    )
    with op.batch_alter_table("ota_firmware", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ota_firmware_sha256"), ["sha256"], unique=False)

    op.create_table(
        "ota_inventory",
        sa.Column("device_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=True),
        sa.Column("last_traffic", sa.Float(), nullable=True),
        sa.Column("firmware_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("hardware", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("points_json", sa.Text(), nullable=False),
        sa.Column("attributes_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_table(
        "ota_rollouts",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("firmware_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("priority", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("error_threshold", sa.Float(), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("devices_json", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("failed_baseline", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("allow_downgrade", sa.Boolean(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ota_rollouts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ota_rollouts_firmware_id"), ["firmware_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_ota_rollouts_state"), ["state"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("ota_rollouts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ota_rollouts_state"))
        batch_op.drop_index(batch_op.f("ix_ota_rollouts_firmware_id"))

    op.drop_table("ota_rollouts")
    op.drop_table("ota_inventory")
    with op.batch_alter_table("ota_firmware", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ota_firmware_sha256"))

    op.drop_table("ota_firmware")
    op.drop_table("ota_devices")
    with op.batch_alter_table("ota_device_updates", schema=None) as batch_op:
        batch_op.drop_index(
            "ux_ota_one_active_update_per_device",
            postgresql_where=sa.text("state IN ('notified', 'downloading', 'installing')"),
            sqlite_where=sa.text("state IN ('notified', 'downloading', 'installing')"),
        )
        batch_op.drop_index("ix_ota_device_updates_rollout_state")
        batch_op.drop_index("ix_ota_device_updates_queue")
        batch_op.drop_index(batch_op.f("ix_ota_device_updates_device_id"))

    op.drop_table("ota_device_updates")
    with op.batch_alter_table("ota_commands", schema=None) as batch_op:
        batch_op.drop_index("ix_ota_commands_state_seq")
        batch_op.drop_index("ix_ota_commands_device_seq")

    op.drop_table("ota_commands")
