"""``python -m linewatch_ota [migrate] --config ota.yaml``."""

from linewatch.runtime.service import run_service
from linewatch_ota.app import serve
from linewatch_ota.config import OtaConfig
from linewatch_ota.schema import HISTORY

raise SystemExit(run_service("ota", OtaConfig, serve, history=HISTORY))
