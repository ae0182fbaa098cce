"""``python -m linewatch_gateway --config gateway.yaml``."""

from linewatch.runtime.service import run_service
from linewatch_gateway.app import serve
from linewatch_gateway.config import GatewayConfig

raise SystemExit(run_service("gateway", GatewayConfig, serve))
