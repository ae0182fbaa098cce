"""``python -m linewatch_ota --config ota.yaml``."""

from linewatch.runtime.service import run_service
from linewatch_ota.app import serve
from linewatch_ota.config import OtaConfig

raise SystemExit(run_service("ota", OtaConfig, serve))
