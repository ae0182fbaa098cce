"""Model packages: a manifest plus an ``.onnx`` file, as a folder or a ``.zip``.

A package folder holds ``manifest.yaml`` and the file it names; a ``.zip`` holds the same
two at its top level (or in one folder). A bare ``.onnx`` loaded by URL comes with its
manifest as text. Everything read here is outside input: the manifest is validated field
by field, zip member names never reach the file system, and sizes are capped.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from linewatch.runtime.errors import InvalidArgument

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "file_digests",
    "parse_manifest",
    "read_zip_package",
    "version_key",
]

MANIFEST_NAME = "manifest.yaml"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_VERSION = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"


class Manifest(BaseModel):
    """What a model package says about its model."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(pattern=_NAME)
    version: str = Field(pattern=_VERSION)
    file: str = Field(default="model.onnx", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.onnx$")
    sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")
    input_name: str = "curve"
    output_name: str = "probabilities"
    input_length: int = Field(ge=2, le=65536)
    resample: Literal["linear", "reject"] = "linear"
    normalization: Literal["zscore", "none"] = "zscore"
    labels: list[str] = Field(min_length=2, max_length=1024)
    ok_labels: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list, max_length=64)
    """Input channels of a multi-channel model, in its input's order (ONNX input
    ``[batch, len(channels), input_length]``); empty: one curve, ``[batch, input_length]``."""
    description: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _labels_consistent(self) -> Manifest:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        unknown = [label for label in self.ok_labels if label not in self.labels]
        if unknown:
            raise ValueError(f"ok_labels {unknown} are not among labels")
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must be unique")
        bad = [c for c in self.channels if not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", c)]
        if bad:
            raise ValueError(f"channels {bad}: names are 1..64 letters, digits, '_.-'")
        return self


def parse_manifest(text: str | bytes, *, source: str) -> Manifest:
    """Parse and validate a manifest (YAML or JSON text).

    Raises:
        InvalidArgument: One line naming ``source`` and the field that is wrong.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{source}: manifest is not valid YAML or JSON") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"{source}: manifest must be a mapping")
    if isinstance(data.get("version"), int | float):
        data["version"] = str(data["version"])
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise InvalidArgument(f"{source}: manifest {key}: {err['msg']}") from exc


def file_digests(path: Path) -> tuple[str, str]:
    """The hex sha256 and the base64 md5 (the older clients' form) of a file."""
    sha = hashlib.sha256()
    md5 = hashlib.md5()  # noqa: S324 - a checksum format clients send, not security
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), base64.b64encode(md5.digest()).decode("ascii")


def read_zip_package(path: Path, dest: Path, *, max_bytes: int) -> Manifest:
    """Extract a zipped package's manifest and model into ``dest``.

    Only ``manifest.yaml`` and the ``.onnx`` it names are read, found at the top level or
    in one folder; they are written under fixed names in ``dest``, so member names never
    choose a path.

    Raises:
        InvalidArgument: Not a zip, no manifest, the model file is missing or too large.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidArgument(f"{path.name}: not a valid zip package") from exc
    with archive:
        infos = {i.filename: i for i in archive.infolist() if not i.is_dir()}
        manifests = [n for n in infos if Path(n).name == MANIFEST_NAME and n.count("/") <= 1]
        if len(manifests) != 1:
            raise InvalidArgument(
                f"{path.name}: a zip package needs exactly one {MANIFEST_NAME} "
                f"(found {len(manifests)})"
            )
        prefix = manifests[0][: -len(MANIFEST_NAME)]
        manifest_info = infos[manifests[0]]
        if manifest_info.file_size > 1 << 20:
            raise InvalidArgument(f"{path.name}: {MANIFEST_NAME} is larger than 1 MiB")
        manifest = parse_manifest(archive.read(manifest_info), source=path.name)
        model_info = infos.get(prefix + manifest.file)
        if model_info is None:
            raise InvalidArgument(
                f"{path.name}: the manifest names {manifest.file}, not in the zip"
            )
        if model_info.file_size > max_bytes:
            raise InvalidArgument(f"{path.name}: {manifest.file} is larger than {max_bytes} bytes")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / MANIFEST_NAME).write_bytes(archive.read(manifest_info))
        with archive.open(model_info) as src, (dest / manifest.file).open("wb") as out:
            copied = 0
            while chunk := src.read(1 << 20):
                copied += len(chunk)
                if copied > max_bytes:
                    raise InvalidArgument(f"{path.name}: {manifest.file} is too large")
                out.write(chunk)
    return manifest


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders versions naturally: ``"2" < "10"``, ``"1.9" < "1.10"``."""
    parts = re.split(r"[._-]", version)
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)
