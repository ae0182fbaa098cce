"""Per-curve inference cost of ONNX curve models, as the inference service runs them.

``python -m bench.model_cost [MODEL.onnx ...]`` (default: the shipped ``curve-quality``).
Each model gets an onnxruntime session with the inference service's options (one intra-op
thread, sequential, every graph optimisation) and scores batches of 64 and 256 z-scored
curves of 256 samples; it prints the best of several rounds in microseconds per curve.
Compare an older model with ``git show REV:models/curve-quality/model.onnx > old.onnx``.
Speed is printed here, never asserted.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "curve-quality" / "model.onnx"
BATCHES = (64, 256)


def session(path: Path, threads: int) -> Any:
    """An onnxruntime session set up like ``linewatch_inference.session.ModelSession``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def per_curve_us(sess: Any, batch: int, *, curves: int, rounds: int) -> float:
    """Best-of-``rounds`` microseconds per curve over about ``curves`` curves a round."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 256)).astype(np.float32)
    name = sess.get_inputs()[0].name
    sess.run(None, {name: x})  # warm-up
    reps = max(1, curves // batch)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            sess.run(None, {name: x})
        best = min(best, (time.perf_counter() - t0) / (reps * batch))
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print microseconds per curve for every model and batch size."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("models", nargs="*", type=Path, default=[SHIPPED])
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (the service: 1)")
    p.add_argument("--curves", type=int, default=8192, help="curves per round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    print("model | " + " | ".join(f"batch {b} us/curve" for b in BATCHES))
    for path in args.models:
        sess = session(path, args.threads)
        costs = [per_curve_us(sess, b, curves=args.curves, rounds=args.rounds) for b in BATCHES]
        print(f"{path} | " + " | ".join(f"{c:.2f}" for c in costs), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
