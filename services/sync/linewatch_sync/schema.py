"""The sync schema's migration history (revisions in ``migrations/``)."""

from pathlib import Path

from linewatch.runtime.migrations import MigrationHistory
from linewatch_sync import store

__all__ = ["HISTORY"]

HISTORY = MigrationHistory("sync", Path(__file__).with_name("migrations"), store.Base.metadata)
