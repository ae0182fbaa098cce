"""``python -m linewatch_inference [migrate] --config inference.yaml``."""

from linewatch.runtime.service import run_service
from linewatch_inference.app import serve
from linewatch_inference.config import InferenceConfig
from linewatch_inference.schema import HISTORY

raise SystemExit(run_service("inference", InferenceConfig, serve, history=HISTORY))
