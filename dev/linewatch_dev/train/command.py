"""``linewatch train``: fine-tune a model package on a plant's labelled curves.

This half runs in the project venv: it reads the dataset export (a CSV or Parquet file, or
streamed from the gateway), splits off the held-out curves, preprocesses them like the
server does, and runs the torch half (:mod:`.finetune`) in the trainer's venv as a child
process, drawing its progress bar. It then writes the package with its report
(:mod:`.package`, :mod:`.report`) and, with ``--load``, loads it as a new, unpromoted
version (:mod:`.load`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from linewatch.model_input import preprocess
from linewatch_dev.train.dataset import (
    Dataset,
    DatasetError,
    LabelledCurve,
    download_dataset,
    read_dataset,
)
from linewatch_dev.train.load import LoadError, load_package
from linewatch_dev.train.package import PackageError, next_version, read_base, write_package
from linewatch_dev.train.report import evaluation, markdown

__all__ = ["add_parser", "trainer_python"]

REPO = Path(__file__).resolve().parents[3]
MODEL_VENV_PYTHON = REPO / ".venv-model" / "bin" / "python"
NO_TORCH = (
    "linewatch train: torch is not installed here, and there is no trainer venv at "
    f"{MODEL_VENV_PYTHON.parent.parent}. Create it with `make train-venv` (torch CPU, numpy, "
    "onnx; never a service dependency), or name an interpreter that has torch with "
    "--python or LINEWATCH_TRAIN_PYTHON."
)


class TrainError(RuntimeError):
    """A clear one-line reason the run stopped."""


def trainer_python(explicit: str | None) -> str | None:
    """The interpreter with torch: ``explicit``, ``$LINEWATCH_TRAIN_PYTHON``, this one when
    it has torch, else ``.venv-model``'s; ``None`` when there is none."""
    chosen = explicit or os.environ.get("LINEWATCH_TRAIN_PYTHON")
    if chosen:
        return chosen
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    if MODEL_VENV_PYTHON.exists():
        probe = subprocess.run(  # noqa: S603 - our own venv's interpreter
            [str(MODEL_VENV_PYTHON), "-c", "import torch, onnx"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return str(MODEL_VENV_PYTHON)
    return None


def split(
    curves: list[LabelledCurve], fraction: float, seed: int
) -> tuple[list[LabelledCurve], list[LabelledCurve]]:
    """(train, held out): ``fraction`` of each label's operator-labelled curves held out
    (of all curves when no operator labelled any), seeded."""
    pool = [c for c in curves if c.operator_labelled] or curves
    by_label: dict[str, list[LabelledCurve]] = defaultdict(list)
    for c in pool:
        by_label[c.label].append(c)
    rng = np.random.default_rng(seed)
    held: set[int] = set()
    for label in sorted(by_label):
        group = by_label[label]
        k = round(len(group) * fraction)
        if fraction > 0 and len(group) >= 2:
            k = max(1, min(k, len(group) - 1))
        for i in rng.permutation(len(group))[:k]:
            held.add(id(group[int(i)]))
    return [c for c in curves if id(c) not in held], [c for c in curves if id(c) in held]


def _arrays(
    curves: list[LabelledCurve], labels: tuple[str, ...], length: int
) -> tuple[np.ndarray, np.ndarray]:
    if not curves:
        return np.zeros((0, length), np.float32), np.zeros(0, np.int64)
    x = preprocess([np.asarray(c.samples) for c in curves], length=length)
    y = np.array([labels.index(c.label) for c in curves], dtype=np.int64)
    return x, y


def _run_trainer(python: str, job_path: Path, quiet: bool) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("src", "dev", ""))}
    cmd = [python, "-m", "linewatch_dev.train.finetune", str(job_path)]
    # The interpreter is the operator's own choice (--python) or the repository's venv.
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO) as proc:  # noqa: S603
        assert proc.stdout is not None
        _progress(proc.stdout, quiet)
    if proc.returncode != 0:
        raise TrainError(f"the trainer ({python}) failed (exit {proc.returncode}); see above")


def _progress(lines: Iterable[str], quiet: bool) -> None:
    """Draw the trainer's JSON-lines progress as a bar; pass its messages on."""
    from tqdm import tqdm

    bar: Any = None
    for line in lines:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            msg = {"message": line.rstrip()}
        if "step" in msg:
            if bar is None:
                bar = tqdm(total=msg["steps"], desc="fine-tuning", unit="step", disable=quiet)
            bar.update(msg["step"] - bar.n)
            bar.set_postfix(loss=f"{msg['loss']:.4f}", refresh=False)
        elif not quiet:
            tqdm.write(str(msg.get("message", line.rstrip())), file=sys.stderr)
    if bar is not None:
        bar.close()


def _dataset(args: argparse.Namespace, tmp: Path, model: str, labels: tuple[str, ...]) -> Dataset:
    if args.gateway:
        params = {k: v for k, v in (("rule", args.rule), ("device_id", args.device_id)) if v}
        path = download_dataset(args.gateway, args.token, tmp / "dataset.parquet", params=params)
        return read_dataset(path, model=model, labels=labels)
    return read_dataset(Path(args.dataset), model=model, labels=labels)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, write the package, load it when asked; returns the summary printed."""
    python = trainer_python(args.python)
    if python is None:
        raise TrainError(NO_TORCH)
    base = read_base(Path(args.base))
    version = args.version or next_version(base.version)
    out = Path(args.out or f"trained/{base.name}-{version}")
    with tempfile.TemporaryDirectory(prefix="linewatch-train-") as tmp_name:
        tmp = Path(tmp_name)
        ds = _dataset(args, tmp, base.name, base.labels)
        if not ds.curves and args.synthetic_per_class <= 0:
            raise TrainError(
                f"no usable curve in the dataset ({ds.rows} rows): nothing to train on"
            )
        train_set, held = split(ds.curves, args.holdout, args.seed)
        x_train, y_train = _arrays(train_set, base.labels, base.input_length)
        x_test, y_test = _arrays(held, base.labels, base.input_length)
        np.savez(tmp / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        job = {
            "data": str(tmp / "data.npz"),
            "base_onnx": str(base.onnx.resolve()),
            "labels": list(base.labels),
            "out_onnx": str(tmp / "model.onnx"),
            "results": str(tmp / "results.json"),
            **{
                k: getattr(args, k)
                for k in (
                    "seed",
                    "threads",
                    "epochs",
                    "batch_size",
                    "lr",
                    "synthetic_per_class",
                    "plant_share",
                    "generator_heldout_per_class",
                )
            },
        }
        (tmp / "job.json").write_text(json.dumps(job), encoding="utf-8")
        _run_trainer(python, tmp / "job.json", args.quiet)
        results = json.loads((tmp / "results.json").read_text(encoding="utf-8"))
        source = f"{args.gateway} (streamed export)" if args.gateway else Path(args.dataset).name
        dataset = {
            "source": source,
            "rows": ds.rows,
            "usable": len(ds.curves),
            "operator_labelled": sum(c.operator_labelled for c in ds.curves),
            "skipped": dict(ds.skipped),
            "train": len(train_set),
            "heldout": len(held),
            "heldout_verdict_ids": [c.verdict_id for c in held],
        }
        training = {
            k: results[k]
            for k in (
                "train_curves",
                "plant_train_curves",
                "plant_repeats",
                "synthetic_curves",
                "seconds",
            )
        }
        training.update(seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
        ev = evaluation(
            model=base.name,
            version=version,
            base_version=base.version,
            labels=base.labels,
            results=results,
            dataset=dataset,
            training=training,
        )
        zip_path = write_package(
            out,
            base,
            version=version,
            onnx_file=tmp / "model.onnx",
            evaluation=ev,
            report_md=markdown(ev),
        )
    summary: dict[str, Any] = {
        "model": base.name,
        "version": version,
        "package": str(out),
        "zip": str(zip_path),
        "plant_heldout_accuracy": ev["plant_heldout"]["candidate"]["accuracy"],
        "generator_accuracy": ev["generator"]["candidate"]["accuracy"],
    }
    if args.load:
        answer = load_package(zip_path, args.load, token=args.token, serve_host=args.serve_host)
        summary["loaded"] = {"target": args.load, "answer": answer}
    return summary


def _cmd(args: argparse.Namespace) -> int:
    if not args.dataset and not args.gateway:
        print("linewatch train: give a dataset file or --gateway URL", file=sys.stderr)
        return 2
    if not 0.0 <= args.holdout < 1.0 or not 0.0 < args.plant_share < 1.0:
        print("linewatch train: --holdout is in [0, 1), --plant-share in (0, 1)", file=sys.stderr)
        return 2
    if min(args.epochs, args.batch_size, args.threads) < 1 or args.synthetic_per_class < 0:
        print("linewatch train: --epochs, --batch-size, --threads are >= 1", file=sys.stderr)
        return 2
    try:
        summary = run(args)
    except (TrainError, DatasetError, PackageError, LoadError) as exc:
        print(
            str(exc) if str(exc).startswith("linewatch") else f"linewatch train: {exc}",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def add_parser(sub: Any) -> None:
    """Register ``linewatch train`` on the CLI's subparsers."""
    p = sub.add_parser(
        "train",
        help="fine-tune a model on a dataset export; write (and load) a new version",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("dataset", nargs="?", help="a dataset export file (CSV or Parquet)")
    p.add_argument("--gateway", help="stream the labelled export from this gateway URL instead")
    p.add_argument("--rule", default="", help="with --gateway: only this rule's curves")
    p.add_argument("--device-id", default="", help="with --gateway: only this device's curves")
    p.add_argument(
        "--token",
        default=os.environ.get("LINEWATCH_TOKEN", ""),
        help="gateway token (write token for --load via the gateway; operator gRPC token "
        "for --load to inference); default $LINEWATCH_TOKEN",
    )
    p.add_argument(
        "--base",
        default=str(REPO / "models" / "curve-quality"),
        help="the base model package folder",
    )
    p.add_argument("--out", help="package folder to write (default trained/<name>-<version>)")
    p.add_argument("--version", help="the new version (default: the base's number + 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--synthetic-per-class",
        type=int,
        default=300,
        help="generated curves per defect kind mixed in (twice as many ok)",
    )
    p.add_argument(
        "--plant-share",
        type=float,
        default=0.3,
        help="share of the training mix the plant's curves make (repeated)",
    )
    p.add_argument(
        "--holdout",
        type=float,
        default=0.25,
        help="share of the operator-labelled curves held out for the report",
    )
    p.add_argument("--generator-heldout-per-class", type=int, default=200)
    p.add_argument("--python", help="the interpreter with torch (default: see the docs)")
    p.add_argument("--load", help="then load it: gateway URL (http://...) or inference host:port")
    p.add_argument(
        "--serve-host",
        default="127.0.0.1",
        help="address inference downloads the package from during --load",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd)
