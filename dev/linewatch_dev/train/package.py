"""The trained package: manifest (the base's, next version), zip, evaluation report.

A package folder written by ``linewatch train`` holds ``manifest.yaml``, ``model.onnx``,
``evaluation.json`` and ``REPORT.md``, plus ``<name>-<version>.zip`` (manifest and model:
what inference loads by URL). Everything is written to a temporary folder first and moved
into place at the end, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "BasePackage",
    "PackageError",
    "next_version",
    "read_base",
    "write_package",
]

MANIFEST = "manifest.yaml"


class PackageError(ValueError):
    """The base package cannot be used."""


@dataclass(frozen=True)
class BasePackage:
    """A model package folder (``manifest.yaml`` + the ONNX file it names)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(str(x) for x in self.manifest["labels"])

    @property
    def input_length(self) -> int:
        return int(self.manifest["input_length"])

    @property
    def onnx(self) -> Path:
        return self.path / str(self.manifest.get("file", "model.onnx"))


def read_base(path: Path) -> BasePackage:
    """Read and check a base package folder (e.g. ``models/curve-quality``).

    Raises:
        PackageError: No manifest, a field missing, or the ONNX file absent or not the one
            the manifest's sha256 names.
    """
    try:
        manifest = yaml.safe_load((path / MANIFEST).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PackageError(f"{path}: no readable {MANIFEST} ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise PackageError(f"{path / MANIFEST}: not valid YAML") from exc
    if not isinstance(manifest, dict):
        raise PackageError(f"{path / MANIFEST}: not a mapping")
    for key in ("name", "version", "labels", "input_length"):
        if key not in manifest:
            raise PackageError(f"{path / MANIFEST}: no {key}")
    if manifest.get("channels"):
        raise PackageError(
            f"{path}: a multi-channel model ({', '.join(manifest['channels'])}) cannot be "
            "fine-tuned from a dataset export yet"
        )
    base = BasePackage(path, manifest)
    try:
        digest = hashlib.sha256(base.onnx.read_bytes()).hexdigest()
    except OSError as exc:
        raise PackageError(f"{base.onnx}: {exc.strerror or exc}") from exc
    if manifest.get("sha256") and manifest["sha256"] != digest:
        raise PackageError(f"{base.onnx}: sha256 {digest} is not the manifest's")
    return base


def next_version(version: str) -> str:
    """The version after ``version``: its trailing number plus one (``1`` → ``2``,
    ``3-plant`` → ``4-plant``... the number is the last run of digits)."""
    m = re.search(r"(\d+)(?!.*\d)", version)
    if m is None:
        return f"{version}.2"
    return version[: m.start()] + str(int(m.group(1)) + 1) + version[m.end() :]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_package(
    out: Path,
    base: BasePackage,
    *,
    version: str,
    onnx_file: Path,
    evaluation: dict[str, Any],
    report_md: str,
) -> Path:
    """Write the package folder ``out`` atomically; returns the zip's path.

    Raises:
        PackageError: ``out`` exists and is not empty.
    """
    if out.exists() and any(out.iterdir()):
        raise PackageError(f"{out}: exists and is not empty; give another --out")
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    model = tmp / "model.onnx"
    model.write_bytes(onnx_file.read_bytes())
    manifest = dict(base.manifest)
    heldout = evaluation["plant_heldout"]["candidate"]
    manifest.update(
        version=version,
        file="model.onnx",
        sha256=_sha256(model),
        description=(
            f"{base.name} {base.version} fine-tuned by `linewatch train` on a plant's "
            "labelled curves mixed with synthetic ones"
        ),
        metrics={
            "plant_heldout_accuracy": heldout["accuracy"],
            "plant_heldout_samples": heldout["curves"],
            "generator_accuracy": evaluation["generator"]["candidate"]["accuracy"],
            "base_version": base.version,
        },
    )
    text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True)
    (tmp / MANIFEST).write_text(text, encoding="utf-8")
    (tmp / "evaluation.json").write_text(json.dumps(evaluation, indent=2), encoding="utf-8")
    (tmp / "REPORT.md").write_text(report_md, encoding="utf-8")
    zip_name = f"{base.name}-{version}.zip"
    with zipfile.ZipFile(tmp / zip_name, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(tmp / MANIFEST, MANIFEST)
        zf.write(model, "model.onnx")
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return out / zip_name
