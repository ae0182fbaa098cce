"""The torch half of ``linewatch train``: fine-tune a shipped CNN, evaluate, export ONNX.

Runs in the trainer's venv (``.venv-model``: torch, numpy, onnx; ``make train-venv``), as
``python -m linewatch_dev.train.finetune JOB.json``; ``linewatch train`` (project venv)
prepares the job and reads back what this writes. It reuses ``tools/model/train.py``: the
network (:class:`CurveNet`), the synthetic data (:func:`generate`), the training loop and
the ONNX export; only loading the base model's weights back from its ONNX graph is new.

The base graph has its batch norms folded into the convolutions; they come back as batch
norms with unit scale and frozen statistics (eval mode throughout fine-tuning), so the
loaded network computes exactly what the base ONNX model does, and its export folds back
to the same graph shape.

Progress goes to stdout as JSON lines (``{"step": s, "steps": n, "loss": l}``); anything
else printed there is a message for the operator. The results (confusion matrices of the
base and the new model on the plant's held-out curves and on generated ones) are written
to ``results.json`` beside ``model.onnx``.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch  # type: ignore[import-not-found, unused-ignore]
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import nn  # type: ignore[import-not-found, unused-ignore]

from linewatch_dev.curves import CURVE_KINDS
from tools.model.train import (
    SPECS,
    Arch,
    CurveNet,
    confusion,
    generate,
    predict,
    to_onnx,
    train,
)

__all__ = ["FrozenNormNet", "load_base", "main"]


class FrozenNormNet(CurveNet):  # type: ignore[misc, unused-ignore]
    """:class:`CurveNet` whose batch norms stay in eval mode (statistics frozen)."""

    def train(self, mode: bool = True) -> FrozenNormNet:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.eval()
        return self


def load_base(path: Path) -> tuple[FrozenNormNet, int]:
    """The network of an ONNX file written by ``tools/model/train.py``, and its channels.

    Raises:
        ValueError: The graph is not that CNN (another architecture cannot be fine-tuned).
    """
    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    if not convs or "head.w" not in inits:
        raise ValueError(
            f"{path.name}: not a tools/model/train.py CNN (no conv layers or head); "
            "only such a model can be fine-tuned"
        )
    strides = {a.ints[0] for n in convs for a in n.attribute if a.name == "strides"}
    weights = [inits[f"conv{i}.w"] for i in range(len(convs))]
    arch = Arch(layers=tuple((w.shape[0], w.shape[2]) for w in weights), stride=strides.pop())
    head_w = inits["head.w"]
    net = FrozenNormNet(head_w.shape[0], arch, in_channels=int(weights[0].shape[1]))
    mods = list(net.features)
    with torch.no_grad():
        for i, w in enumerate(weights):
            conv, bn = mods[3 * i], mods[3 * i + 1]
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))  # scale exactly 1 once folded
            bn.bias.copy_(torch.from_numpy(np.array(inits[f"conv{i}.b"])))
        net.head.weight.copy_(torch.from_numpy(np.array(head_w)))
        net.head.bias.copy_(torch.from_numpy(np.array(inits["head.b"])))
    net.eval()
    return net, int(weights[0].shape[1])


def _emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _matrix(net: CurveNet, x: np.ndarray, y: np.ndarray, n: int) -> list[list[int]]:
    if len(x) == 0:
        return [[0] * n for _ in range(n)]
    pred = predict(net, x).argmax(1)
    return [[int(v) for v in row] for row in confusion(y, pred, n)]


def _mix(
    job: dict[str, Any], labels: tuple[str, ...], x_plant: np.ndarray, y_plant: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """The training mix: generated curves plus the plant's, repeated to ``plant_share``."""
    seed = int(job["seed"])
    spec = SPECS["curve-quality"]
    per_class = int(job["synthetic_per_class"])
    parts_x, parts_y = [], []
    if per_class > 0:
        if labels != CURVE_KINDS:
            raise ValueError(
                f"the generator labels curves {', '.join(CURVE_KINDS)}, this model "
                f"{', '.join(labels)}: use --synthetic-per-class 0"
            )
        _emit(message=f"generating {per_class} synthetic curves per defect kind")
        x_syn, y_syn = generate(spec, per_class, seed=seed, augment=True)
        parts_x.append(x_syn)
        parts_y.append(y_syn)
    repeats = 1
    if len(x_plant) and per_class > 0:
        share = float(job["plant_share"])
        want = share / (1.0 - share) * len(parts_x[0])
        repeats = int(min(max(1, round(want / len(x_plant))), 100))
    if len(x_plant):
        parts_x.append(np.repeat(x_plant, repeats, axis=0))
        parts_y.append(np.repeat(y_plant, repeats, axis=0))
    if not parts_x:
        raise ValueError("nothing to train on: no labelled curves and no synthetic ones")
    x = np.concatenate(parts_x).astype(np.float32)
    y = np.concatenate(parts_y).astype(np.int64)
    return x, y, repeats


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune as the job says; write ``model.onnx`` and return the results."""
    t0 = time.monotonic()
    seed = int(job["seed"])
    torch.manual_seed(seed)
    torch.set_num_threads(int(job["threads"]))
    torch.use_deterministic_algorithms(True)
    labels = tuple(job["labels"])
    base, channels = load_base(Path(job["base_onnx"]))
    if channels != 1:
        raise ValueError("multi-channel models cannot be fine-tuned from a dataset export yet")
    data = np.load(job["data"])
    x_plant, y_plant = data["x_train"], data["y_train"]
    x_hold, y_hold = data["x_test"], data["y_test"]
    spec = SPECS["curve-quality"]
    x_train, y_train, repeats = _mix(job, labels, x_plant, y_plant)
    gen_per_class = int(job["generator_heldout_per_class"])
    x_gen, y_gen = (
        generate(spec, gen_per_class, seed=seed + 1000, augment=False)
        if gen_per_class > 0 and labels == CURVE_KINDS
        else (np.zeros((0, x_train.shape[1]), np.float32), np.zeros(0, np.int64))
    )
    n = len(labels)
    before = {
        "plant": _matrix(base, x_hold, y_hold, n),
        "generator": _matrix(base, x_gen, y_gen, n),
    }
    net = copy.deepcopy(base)
    _emit(message=f"fine-tuning on {len(x_train)} curves ({len(x_plant)} plant x{repeats})")
    train(
        net,
        x_train,
        y_train,
        epochs=int(job["epochs"]),
        batch_size=int(job["batch_size"]),
        lr=float(job["lr"]),
        seed=seed,
        on_step=lambda step, steps, loss: _emit(step=step, steps=steps, loss=round(loss, 5)),
    )
    after = {"plant": _matrix(net, x_hold, y_hold, n), "generator": _matrix(net, x_gen, y_gen, n)}
    proto = to_onnx(net, labels, spec)
    probe = x_train[:256]
    outputs = ReferenceEvaluator(proto).run(["probabilities"], {"curve": probe})
    ref = np.asarray(outputs["probabilities"] if isinstance(outputs, dict) else outputs[0])
    diff = float(np.abs(ref - predict(net, probe)).max())
    if diff > 1e-4:
        raise ValueError(f"the exported graph disagrees with the torch model ({diff:.2e})")
    out = Path(job["out_onnx"])
    out.write_bytes(proto.SerializeToString())
    return {
        "base": before,
        "candidate": after,
        "train_curves": len(x_train),
        "plant_train_curves": len(x_plant),
        "plant_repeats": repeats,
        "synthetic_curves": len(x_train) - len(x_plant) * repeats,
        "generator_heldout_curves": len(x_gen),
        "onnx_max_diff": diff,
        "params": sum(int(p.numel()) for p in net.parameters()),
        "seconds": round(time.monotonic() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m linewatch_dev.train.finetune JOB.json``: writes the job's results file."""
    args = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    try:
        results = run(job)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(job["results"]).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
