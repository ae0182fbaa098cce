"""The index of served models: each model name with its served versions, failed loads,
promoted and shadow version, and the lookups callers make (a named version, the promoted
one, or the latest)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from linewatch.runtime.errors import NotFound, Unavailable
from linewatch_inference.batcher import DynamicBatcher
from linewatch_inference.package import Manifest, version_key
from linewatch_inference.session import ModelSession

__all__ = ["LATEST", "ModelEntry", "ModelIndex", "ServedVersion"]

LATEST = "latest"


@dataclass
class ServedVersion:
    """One model version being served."""

    manifest: Manifest
    session: ModelSession
    batcher: DynamicBatcher
    sha256: str
    """Of the package as loaded (the downloaded file, or the folder's ``.onnx``)."""
    package_dir: Path
    source_url: str = ""
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    loaded_by: str = ""

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass
class ModelEntry:
    """A model name with its served versions, failed loads, promoted and shadow version."""

    name: str
    versions: dict[str, ServedVersion] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Why the last load of a version failed ("" for a version that could not be read)."""
    shadow: str = ""
    promoted: str = ""
    """What calls without a version score with (the registry database's, on every replica)."""

    def promoted_ready(self) -> bool:
        """Whether this replica serves the promoted version."""
        return bool(self.promoted) and self.promoted in self.versions

    def latest(self) -> ServedVersion | None:
        """The version served when none is asked for: the highest, in natural order."""
        if not self.versions:
            return None
        return self.versions[max(self.versions, key=version_key)]


class ModelIndex:
    """Model entries by name (changed by the registry under its lock)."""

    def __init__(self) -> None:
        self._models: dict[str, ModelEntry] = {}

    def models(self) -> list[ModelEntry]:
        """Every model, by name."""
        return [self._models[n] for n in sorted(self._models)]

    def get(self, name: str) -> ModelEntry | None:
        """The entry of ``name``, if there is one."""
        return self._models.get(name)

    def add(self, name: str) -> ModelEntry:
        """The entry of ``name``, created when there is none."""
        return self._models.setdefault(name, ModelEntry(name))

    def remove(self, name: str) -> None:
        """Forget ``name``."""
        del self._models[name]

    def clear(self) -> list[ServedVersion]:
        """Forget every model; returns the versions that were served."""
        served = [v for e in self._models.values() for v in e.versions.values()]
        self._models.clear()
        return served

    def entry(self, name: str) -> ModelEntry:
        """One model.

        Raises:
            NotFound: No such model.
        """
        entry = self._models.get(name)
        if entry is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise NotFound(f"model {name!r} is not loaded (loaded: {known})")
        return entry

    def resolve(self, name: str, version: str = "") -> ServedVersion:
        """The served version ``version`` of ``name`` (``""``: the promoted one,
        ``latest``: the highest).

        Raises:
            NotFound: No such model, or no such version being served.
            Unavailable: The promoted version is not loaded on this replica (yet).
        """
        entry = self.entry(name)
        if not version and entry.promoted:
            served = entry.versions.get(entry.promoted)
            if served is None:
                raise Unavailable(
                    f"model {name!r}: the promoted version {entry.promoted!r} is not loaded "
                    "on this replica yet"
                )
            return served
        if version in ("", LATEST):
            served = entry.latest()
            if served is None:
                raise NotFound(f"model {name!r} has no version being served")
            return served
        served = entry.versions.get(version)
        if served is None:
            have = ", ".join(sorted(entry.versions, key=version_key)) or "none"
            raise NotFound(f"model {name!r} has no version {version!r} (served: {have})")
        return served
