"""Recorded real series for judging a curve model on data nobody here generated.

The curves come from files that public packages ship inside their wheels, read as plain
files (the packages are not imported):

* ``GunPoint`` — motion capture: the x position of an actor's hand drawing and pointing a
  gun (UCR archive, shipped by sktime), 150 samples;
* ``ArrowHead`` — shape outlines of projectile points turned into 1-D distance profiles
  (UCR, sktime), 251 samples;
* ``OSULeaf`` — leaf outlines as 1-D profiles (UCR, sktime), 427 samples;
* ``Tecator`` — near-infrared absorbance spectra of meat samples (sktime), 100 samples;
* ``Terrain`` — elevation profiles across the Jacksboro fault (matplotlib's sample DEM
  ``jacksboro_fault_dem.npz``: every fourth row of 403 samples, cut in two halves).

Each recorded series is z-scored to a sensor range (``50 + 10 z``: sigma = 10) and judged clean
and with one injected defect of each kind, sized in sigma of the curve:

* ``spike`` — one sample raised (or lowered) by 6 sigma, somewhere in the middle 90 %;
* ``step`` — a 2 sigma level shift from a point in the middle 60 % to the end;
* ``noise`` — a burst of white noise with a standard deviation of 0.5 sigma over 20 % of the
  curve;
* ``drift`` — a linear drift from a point in the first half, 3 sigma by the end.

The defects are injected here only, never in training. :func:`evaluate` takes any scorer
(a function from curves to "is ok" flags), so the same table serves the shipped CNN and any
other model; :func:`onnx_scorer` makes one from a model package with onnxruntime.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DATASETS",
    "DEFECTS",
    "WHOLE_ROWS",
    "Case",
    "DatasetResult",
    "cases",
    "evaluate",
    "inject",
    "load",
    "markdown_table",
    "onnx_scorer",
]

F64 = npt.NDArray[np.float64]
Scorer = Callable[[Sequence[F64]], npt.NDArray[np.bool_]]
"""Curves in, one "is ok" flag per curve out."""

DEFECTS: tuple[str, ...] = ("spike", "step", "noise", "drift")
SIGMA = 10.0
CENTRE = 50.0


@dataclass(frozen=True)
class Dataset:
    """One recorded data set: where it comes from and what it measures."""

    name: str
    domain: str
    source: str


DATASETS: tuple[Dataset, ...] = (
    Dataset("GunPoint", "motion capture (hand position)", "sktime: UCR GunPoint"),
    Dataset("ArrowHead", "shape outline (projectile points)", "sktime: UCR ArrowHead"),
    Dataset("OSULeaf", "shape outline (leaves)", "sktime: UCR OSULeaf"),
    Dataset("Tecator", "NIR absorbance spectra (meat)", "sktime: Tecator"),
    Dataset("Terrain", "elevation profiles (DEM)", "matplotlib: jacksboro_fault_dem.npz"),
)
"""The data sets the targets hold for."""

WHOLE_ROWS = Dataset(
    "TerrainRows",
    "elevation profiles, whole 403-sample rows (downsampled)",
    "matplotlib: jacksboro_fault_dem.npz",
)
"""Terrain's rows uncut: reported to show what downsampling a rough curve costs."""


def _package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {name!r} is not installed (it is in requirements/dev.txt: make setup)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _read_ts(path: Path) -> list[F64]:
    """The series of a univariate ``.ts`` file (sktime / UCR format), labels dropped."""
    out: list[F64] = []
    in_data = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        values = line.rsplit(":", 1)[0].split(",")
        x = np.array([float(v) for v in values if v not in ("?", "")], dtype=np.float64)
        if x.size >= 8 and np.isfinite(x).all():
            out.append(x)
    if not out:
        raise ValueError(f"{path}: no series after @data")
    return out


def load(name: str) -> list[F64]:
    """Every recorded series of data set ``name`` (raw values, file order)."""
    if name in ("Terrain", WHOLE_ROWS.name):
        path = _package_dir("matplotlib") / "mpl-data" / "sample_data" / "jacksboro_fault_dem.npz"
        with np.load(path) as data:
            dem = np.asarray(data["elevation"], dtype=np.float64)
        if name == WHOLE_ROWS.name:
            return list(dem[::4])
        # A terrain profile has no natural length: each row is cut into two halves of 201
        # and 202 samples (whole rows would be downsampled to the model's 256 samples, which
        # roughens them and shrinks single-sample spikes; see REPORT.md).
        return [half for row in dem[::4] for half in np.array_split(row, 2)]
    if name not in {d.name for d in DATASETS}:
        raise ValueError(f"unknown data set {name!r}; expected one of {[d.name for d in DATASETS]}")
    folder = _package_dir("sktime") / "datasets" / "data" / name
    return [x for part in ("TRAIN", "TEST") for x in _read_ts(folder / f"{name}_{part}.ts")]


def to_sensor_range(x: F64) -> F64:
    """``x`` z-scored, then put on a sensor range: mean 50, sigma 10."""
    out: F64 = CENTRE + SIGMA * (x - x.mean()) / max(float(x.std()), 1e-12)
    return out


def inject(kind: str, x: F64, rng: np.random.Generator) -> F64:
    """``x`` (on the sensor range, sigma = 10) with one defect of ``kind``."""
    n = len(x)
    out = x.copy()
    if kind == "spike":
        at = int(rng.integers(int(0.05 * n), int(0.95 * n)))
        out[at] += 6.0 * SIGMA * (1.0 if rng.random() < 0.5 else -1.0)
    elif kind == "step":
        at = int(rng.integers(int(0.2 * n), int(0.8 * n)))
        out[at:] += 2.0 * SIGMA * (1.0 if rng.random() < 0.5 else -1.0)
    elif kind == "noise":
        width = max(2, round(0.2 * n))
        start = int(rng.integers(int(0.05 * n), int(0.95 * n) - width + 1))
        out[start : start + width] += rng.normal(0.0, 0.5 * SIGMA, size=width)
    elif kind == "drift":
        start = int(rng.integers(0, n // 2))
        ramp = np.clip((np.arange(n) - start) / (n - 1 - start), 0.0, None)
        out += 3.0 * SIGMA * ramp * (1.0 if rng.random() < 0.5 else -1.0)
    else:
        raise ValueError(f"unknown defect {kind!r}; expected one of {DEFECTS}")
    return out


@dataclass(frozen=True)
class Case:
    """One curve to judge: its data set, what was injected (``"ok"`` for none), the curve."""

    dataset: str
    kind: str
    curve: F64


def _draw(name: str, n: int, seed: int) -> tuple[np.random.Generator, list[int]]:
    """The generator of a draw and the indices of the ``n`` series it chose (sorted)."""
    size = len(load(name))
    rng = np.random.default_rng([seed, sum(name.encode())])
    chosen = rng.choice(size, size=min(n, size), replace=False)
    return rng, sorted(int(c) for c in chosen)


def undrawn(name: str, n: int, *, seed: int) -> list[F64]:
    """The recorded curves of ``name`` that :func:`cases` with the same ``n`` and ``seed``
    does not judge (in the sensor range), in file order: e.g. a teach-in set."""
    _, chosen = _draw(name, n, seed)
    taken = set(chosen)
    return [to_sensor_range(x) for i, x in enumerate(load(name)) if i not in taken]


def cases(name: str, n: int, *, seed: int) -> list[Case]:
    """``n`` recorded curves of data set ``name`` (chosen with ``seed``), each clean and with
    every defect of :data:`DEFECTS`: ``n * (1 + len(DEFECTS))`` cases."""
    series = load(name)
    rng, chosen = _draw(name, n, seed)
    out: list[Case] = []
    for i in chosen:
        x = to_sensor_range(series[i])
        out.append(Case(name, "ok", x))
        out.extend(Case(name, kind, inject(kind, x, rng)) for kind in DEFECTS)
    return out


@dataclass
class DatasetResult:
    """How a model fared on one data set: share of clean curves ok, of defective flagged."""

    dataset: str
    domain: str
    curves: int
    length: int
    clean_ok: float
    flagged: dict[str, float] = field(default_factory=dict)

    @property
    def defective_flagged(self) -> float:
        """The share of all defective curves flagged (any label that is not ok)."""
        return float(np.mean(list(self.flagged.values())))


def evaluate(
    scorer: Scorer,
    *,
    n: int = 60,
    seed: int = 15,
    datasets: Sequence[str] | None = None,
) -> list[DatasetResult]:
    """Judge ``n`` recorded curves per data set, clean and with each defect, with ``scorer``."""
    results = []
    names = list(datasets) if datasets is not None else [d.name for d in DATASETS]
    domains = {d.name: d.domain for d in (*DATASETS, WHOLE_ROWS)}
    for name in names:
        batch = cases(name, n, seed=seed)
        ok = np.asarray(scorer([c.curve for c in batch]), dtype=bool)
        kinds = np.array([c.kind for c in batch])
        results.append(
            DatasetResult(
                dataset=name,
                domain=domains[name],
                curves=int((kinds == "ok").sum()),
                length=len(batch[0].curve),
                clean_ok=float(ok[kinds == "ok"].mean()),
                flagged={k: float((~ok[kinds == k]).mean()) for k in DEFECTS},
            )
        )
    return results


def onnx_scorer(package: Path, *, threads: int = 1) -> Scorer:
    """A scorer for a single-channel model package: preprocess, run, argmax in ok_labels."""
    import onnxruntime as ort
    import yaml

    from linewatch.model_input import preprocess

    manifest: dict[str, Any] = yaml.safe_load((package / "manifest.yaml").read_text("utf-8"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(package / manifest["file"]), options, providers=["CPUExecutionProvider"]
    )
    ok_index = [manifest["labels"].index(k) for k in manifest["ok_labels"]]

    def score(curves: Sequence[F64]) -> npt.NDArray[np.bool_]:
        x = preprocess(list(curves), length=int(manifest["input_length"]))
        (probs,) = session.run([manifest["output_name"]], {manifest["input_name"]: x})
        flags: npt.NDArray[np.bool_] = np.isin(np.asarray(probs).argmax(axis=1), ok_index)
        return flags

    return score


def markdown_table(results: Sequence[DatasetResult], *, model: str = "") -> list[str]:
    """The per data set, per defect table (markdown lines)."""
    head = "| model | " if model else "| "
    lines = [
        head
        + "data set | domain | curves x samples | clean ok | "
        + " | ".join(f"{k} flagged" for k in DEFECTS)
        + " | all defects flagged |",
        "| --- " * (1 if model else 0)
        + "| --- | --- | ---: | ---: |"
        + " ---: |" * (len(DEFECTS) + 1),
    ]
    for r in results:
        cells = [r.dataset, r.domain, f"{r.curves} x {r.length}", f"{r.clean_ok:.1%}"]
        cells += [f"{r.flagged[k]:.1%}" for k in DEFECTS] + [f"{r.defective_flagged:.1%}"]
        lines.append(("| " + model + " " if model else "") + "| " + " | ".join(cells) + " |")
    return lines
