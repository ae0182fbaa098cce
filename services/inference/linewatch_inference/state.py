"""The registry's state file (``registry.json`` under ``state_dir``): packages loaded by
URL (restored at start), versions unloaded (not loaded again from ``model_dir``) and
shadows. Written with temp-file + fsync + rename, so a crash leaves the old file or the
new one, never half of one; an unreadable file is logged and ignored."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["STATE_FILE", "RegistryState"]

log = logging.getLogger("linewatch_inference.registry")

STATE_FILE = "registry.json"

Key = tuple[str, str]


class RegistryState:
    """What the registry remembers across restarts."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.url_packages: dict[Key, dict[str, str]] = {}
        """Packages loaded by URL: name, version, sha256, source_url and their ``dir``."""
        self.unloaded: set[Key] = set()

    def read(self) -> dict[str, Any]:
        """Read the file (``{}`` when missing or unreadable) and take its unloaded set."""
        path = self.state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            log.error("registry state %s unreadable (%s); starting from model_dir", path, exc)
            data = {}
        if not isinstance(data, dict):
            data = {}
        self.unloaded = {(u[0], u[1]) for u in data.get("unloaded", [])}
        return data

    def serving(self, name: str, version: str, url_package: dict[str, str] | None) -> None:
        """A version is served now (``url_package``: the record of a package loaded by URL)."""
        self.unloaded.discard((name, version))
        if url_package is not None:
            self.url_packages[(name, version)] = url_package
        else:
            self.url_packages.pop((name, version), None)

    def unload(self, name: str, version: str) -> None:
        """A version was unloaded."""
        self.unloaded.add((name, version))
        self.url_packages.pop((name, version), None)

    def write(self, shadows: dict[str, str]) -> None:
        """Replace the file (blocking)."""
        state = {
            "format": 1,
            "url_packages": sorted(
                self.url_packages.values(), key=lambda r: (r["name"], r["version"])
            ),
            "unloaded": sorted([n, v] for n, v in self.unloaded),
            "shadows": shadows,
        }
        path = self.state_dir / STATE_FILE
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".registry-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(state, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
