"""The OTA schema's migration history (revisions in ``migrations/``)."""

from pathlib import Path

from linewatch.runtime.migrations import MigrationHistory
from linewatch_ota import command_store, plan_store, store

__all__ = ["HISTORY"]

_ = (command_store, plan_store)  # their tables are on the same metadata

HISTORY = MigrationHistory("ota", Path(__file__).with_name("migrations"), store.Base.metadata)
