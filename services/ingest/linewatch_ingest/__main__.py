"""``python -m linewatch_ingest --config ingest.yaml``."""

from linewatch.runtime.service import run_service
from linewatch_ingest.app import serve
from linewatch_ingest.config import IngestConfig

raise SystemExit(run_service("ingest", IngestConfig, serve))
