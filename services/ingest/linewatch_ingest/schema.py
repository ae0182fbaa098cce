"""The ingest schema's migration history (revisions in ``migrations/``)."""

from pathlib import Path

from linewatch.runtime.migrations import MigrationHistory
from linewatch_ingest import envelope_store, quality_tables, replicas, store

__all__ = ["HISTORY"]

_ = (envelope_store, quality_tables, replicas)  # their tables are on the same metadata

HISTORY = MigrationHistory("ingest", Path(__file__).with_name("migrations"), store.Base.metadata)
