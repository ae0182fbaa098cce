"""``python -m linewatch_inference --config inference.yaml``."""

from linewatch.runtime.service import run_service
from linewatch_inference.app import serve
from linewatch_inference.config import InferenceConfig

raise SystemExit(run_service("inference", InferenceConfig, serve))
