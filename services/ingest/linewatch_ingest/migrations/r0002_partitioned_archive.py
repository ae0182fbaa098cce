"""Retention: the archive partitioned by day on PostgreSQL; ts_ms indexes for the sweeps.

Revision 0002 (after 0001). On PostgreSQL ``ingest_telemetry`` and ``ingest_verdict``
are rebuilt as ``PARTITION BY RANGE (ts_ms)`` tables (day partitions for the days that
have rows and the week ahead, a default partition; primary key ``(id, ts_ms)``), keeping
their rows, ids and sequences. Both databases get an index on ``ts_ms`` (SQLite deletes
expired rows in batches by it).
"""

import time
from collections.abc import Sequence

from alembic import op

from linewatch.runtime.partitions import convert_to_partitioned

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ARCHIVE = ("ingest_telemetry", "ingest_verdict")


def upgrade() -> None:
    """Apply this revision."""
    if op.get_bind().dialect.name == "postgresql":
        now_ms = int(time.time() * 1000)
        for table in _ARCHIVE:
            indexes = {
                f"uq_{table}_key": ("rule, msg_id, device_id, ts_ms", True),
                f"ix_{table}_device_ts": ("device_id, ts_ms", False),
                f"ix_{table}_ts": ("ts_ms", False),
            }
            convert_to_partitioned(op.get_bind(), table, indexes, now_ms)
        return
    for table in _ARCHIVE:
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_index(f"ix_{table}_ts", ["ts_ms"], unique=False)


def downgrade() -> None:
    """Revert this revision (PostgreSQL keeps the partitioned layout)."""
    for table in _ARCHIVE:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(f"ix_{table}_ts")
