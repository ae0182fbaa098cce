"""The evaluation report of a trained version: ``evaluation.json`` and ``REPORT.md``.

Two held-out sets, each scored by the base version and by the new one: a part of the
plant's labelled curves kept out of training (operator-labelled ones first), and curves
from the generator (a seed training did not use). Rows of a confusion matrix are the true
label, columns the predicted one.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluation", "markdown", "scores"]


def scores(matrix: list[list[int]], labels: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy overall and per true label of one confusion matrix."""
    total = sum(sum(row) for row in matrix)
    right = sum(matrix[i][i] for i in range(len(labels)))
    per = {
        label: (matrix[i][i] / sum(matrix[i]) if sum(matrix[i]) else None)
        for i, label in enumerate(labels)
    }
    return {
        "curves": total,
        "accuracy": round(right / total, 4) if total else None,
        "per_label": {k: (round(v, 4) if v is not None else None) for k, v in per.items()},
        "confusion": matrix,
    }


def evaluation(
    *,
    model: str,
    version: str,
    base_version: str,
    labels: tuple[str, ...],
    results: dict[str, Any],
    dataset: dict[str, Any],
    training: dict[str, Any],
) -> dict[str, Any]:
    """The JSON report from the trainer's results."""
    return {
        "model": model,
        "version": version,
        "base_version": base_version,
        "labels": list(labels),
        "dataset": dataset,
        "training": training,
        "plant_heldout": {
            who: scores(results[who]["plant"], labels) for who in ("base", "candidate")
        },
        "generator": {
            who: scores(results[who]["generator"], labels) for who in ("base", "candidate")
        },
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2%}"


def _matrix_lines(title: str, s: dict[str, Any], labels: tuple[str, ...]) -> list[str]:
    lines = [
        f"**{title}** — {s['curves']} curves, accuracy {_pct(s['accuracy'])}",
        "",
        "| true \\ predicted | " + " | ".join(labels) + " |",
        "| --- |" + " ---: |" * len(labels),
    ]
    for label, row in zip(labels, s["confusion"], strict=True):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    return [*lines, ""]


def markdown(ev: dict[str, Any]) -> str:
    """REPORT.md of a trained version."""
    labels = tuple(ev["labels"])
    ds, tr = ev["dataset"], ev["training"]
    lines = [
        f"# {ev['model']} version {ev['version']}: evaluation",
        "",
        f"Fine-tuned by `linewatch train` from version {ev['base_version']} on {ds['source']}.",
        "",
        f"- Dataset: {ds['rows']} rows, {ds['usable']} usable ({ds['operator_labelled']} "
        f"labelled by an operator); {ds['train']} trained on, {ds['heldout']} held out.",
    ]
    for reason, n in sorted(ds["skipped"].items()):
        lines.append(f"  - skipped {n}: {reason}")
    lines += [
        f"- Training: {tr['train_curves']} curves ({tr['plant_train_curves']} plant curves "
        f"x{tr['plant_repeats']}, {tr['synthetic_curves']} synthetic), {tr['epochs']} "
        f"epochs, batch {tr['batch_size']}, lr {tr['lr']}, seed {tr['seed']}; "
        f"{tr['seconds']} s.",
        "",
        "| held-out set | curves | base accuracy | new accuracy |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, title in (("plant_heldout", "plant (labelled)"), ("generator", "generator")):
        b, c = ev[key]["base"], ev[key]["candidate"]
        lines.append(f"| {title} | {c['curves']} | {_pct(b['accuracy'])} | {_pct(c['accuracy'])} |")
    lines += ["", "## Confusion matrices", "", "Rows: true label; columns: predicted.", ""]
    for key, title in (("plant_heldout", "Plant held-out"), ("generator", "Generator")):
        lines += _matrix_lines(f"{title}, version {ev['version']}", ev[key]["candidate"], labels)
        lines += _matrix_lines(f"{title}, base {ev['base_version']}", ev[key]["base"], labels)
    lines += [
        "## Next",
        "",
        "Loaded with `--load`, this version serves beside the promoted one without scoring "
        "any rule; compare it on live traffic (`GET /v1/models/{name}/versions/{v}/"
        "evaluation`) and promote it with `POST /v1/models/{name}/promote`.",
    ]
    return "\n".join(lines) + "\n"
