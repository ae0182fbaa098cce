"""``python -m linewatch_sync --config sync.yaml``."""

from linewatch.runtime.service import run_service
from linewatch_sync.app import serve
from linewatch_sync.config import SyncConfig

raise SystemExit(run_service("sync", SyncConfig, serve))
