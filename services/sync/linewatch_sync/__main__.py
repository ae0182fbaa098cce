"""``python -m linewatch_sync [migrate] --config sync.yaml``."""

from linewatch.runtime.service import run_service
from linewatch_sync.app import serve
from linewatch_sync.config import SyncConfig
from linewatch_sync.schema import HISTORY

raise SystemExit(run_service("sync", SyncConfig, serve, history=HISTORY))
