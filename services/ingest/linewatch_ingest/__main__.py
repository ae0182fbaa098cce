"""``python -m linewatch_ingest [migrate] --config ingest.yaml``."""

from linewatch.runtime.service import run_service
from linewatch_ingest.app import serve
from linewatch_ingest.config import IngestConfig
from linewatch_ingest.schema import HISTORY

raise SystemExit(run_service("ingest", IngestConfig, serve, history=HISTORY))
