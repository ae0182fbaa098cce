"""The model registry: packages loaded from a folder at start and by URL at run time.

Every load follows the same path: the package is staged (downloaded to a temporary file,
checksum verified), its manifest validated, an onnxruntime session opened and a warm-up
run checked against the manifest; only then is the version swapped in, under the lock,
in one assignment. Any failure leaves the serving version untouched and is recorded as
the version's ``reason``. A swapped-out version's batcher finishes its queued requests
before it closes, so callers lose nothing.

State (packages loaded by URL, versions unloaded, shadows) is a JSON file written with
temp-file + rename; packages loaded by URL are kept, verified, under ``state_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import shutil
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from linewatch.runtime.errors import (
    FailedPrecondition,
    InvalidArgument,
    LinewatchError,
    NotFound,
)
from linewatch.runtime.fetch import FetchError, FetchTooLarge, SafeFetcher
from linewatch_inference.batcher import DynamicBatcher
from linewatch_inference.channels import input_shape
from linewatch_inference.config import InferenceConfig
from linewatch_inference.metrics import InferenceMetrics
from linewatch_inference.package import (
    MANIFEST_NAME,
    Manifest,
    file_digests,
    parse_manifest,
    read_zip_package,
    version_key,
)
from linewatch_inference.session import ModelSession, available_providers, choose_providers
from linewatch_inference.signing import PackageVerifier

__all__ = ["LATEST", "ModelEntry", "Registry", "ServedVersion"]

log = logging.getLogger(__name__)

LATEST = "latest"
_STATE_FILE = "registry.json"


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

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version


@dataclass
class ModelEntry:
    """A model name with its served versions, failed loads and shadow."""

    name: str
    versions: dict[str, ServedVersion] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    """Why the last load of a version failed ("" for a version that could not be read)."""
    shadow: str = ""

    def latest(self) -> ServedVersion | None:
        """The version served when none is asked for: the highest, in natural order."""
        if not self.versions:
            return None
        return self.versions[max(self.versions, key=version_key)]


@dataclass
class _Staged:
    manifest: Manifest
    package_dir: Path
    sha256: str
    source_url: str = ""


def _mkstemp(folder: Path) -> tuple[int, str]:
    folder.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=folder, suffix=".part")


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, LinewatchError) else f"{type(exc).__name__}: {exc}"


class Registry:
    """Model versions by name, loaded, swapped and unloaded safely.

    Args:
        config: The service configuration (batching, threads, limits, ``model_dir``).
        metrics: Where loads and versions are counted.
        state_dir: Where the state file and packages loaded by URL live.
    """

    def __init__(
        self, config: InferenceConfig, *, metrics: InferenceMetrics, state_dir: Path
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.state_dir = state_dir
        self.providers = choose_providers(available_providers(), config.use_cuda)
        self.threads = config.resolved_intra_op_threads()
        self.verifier = PackageVerifier.from_config(config)
        self._models: dict[str, ModelEntry] = {}
        self._lock = asyncio.Lock()
        self._url_packages: dict[tuple[str, str], dict[str, str]] = {}
        self._unloaded: set[tuple[str, str]] = set()
        self._retired: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load every package in ``model_dir``, then those the state file remembers."""
        packages = self.state_dir / "packages"
        packages.mkdir(parents=True, exist_ok=True)
        for leftover in [*packages.glob(".staging-*"), *packages.glob(".dir-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        state = self._read_state()
        self._unloaded = {(u[0], u[1]) for u in state.get("unloaded", [])}
        log.info(
            "opening models",
            extra={"fields": {"providers": self.providers, "intra_op_threads": self.threads}},
        )
        for staged in await asyncio.to_thread(self._scan_model_dir):
            if isinstance(staged, tuple):
                path, reason = staged
                log.error("model package %s not loaded: %s", path, reason)
                self.metrics.loads.labels(outcome="failed").inc()
                continue
            if (staged.manifest.name, staged.manifest.version) in self._unloaded:
                self._discard(staged)
                continue
            with contextlib.suppress(LinewatchError):
                await self._open_and_swap(staged)
        for record in state.get("url_packages", []):
            await self._restore_url_package(record)
        for name, version in state.get("shadows", {}).items():
            entry = self._models.get(name)
            if entry is not None:
                entry.shadow = version

    async def close(self) -> None:
        """Finish queued requests of every version and stop their workers."""
        async with self._lock:
            served = [v for e in self._models.values() for v in e.versions.values()]
            self._models.clear()
        for version in served:
            await version.batcher.close()
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)

    # --- queries ---------------------------------------------------------------------

    def models(self) -> list[ModelEntry]:
        """Every model, by name."""
        return [self._models[n] for n in sorted(self._models)]

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
        """The served version ``version`` of ``name`` (``""``/``latest``: the latest).

        Raises:
            NotFound: No such model, or no such version being served.
        """
        entry = self.entry(name)
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

    # --- loading ---------------------------------------------------------------------

    async def load_dir_package(self, name: str) -> ServedVersion:
        """(Re)load the packages of model ``name`` found in ``model_dir``; the latest wins.

        Raises:
            NotFound: ``model_dir`` has no package of that model.
        """
        found: list[_Staged] = []
        for staged in await asyncio.to_thread(self._scan_model_dir):
            if isinstance(staged, _Staged):
                if staged.manifest.name == name:
                    found.append(staged)
                else:
                    self._discard(staged)
        if not found:
            raise NotFound(f"no package of model {name!r} in {self.config.model_dir}")
        served: list[ServedVersion] = []
        for staged in found:
            self._unloaded.discard((name, staged.manifest.version))
            served.append(await self._open_and_swap(staged))
        return max(served, key=lambda s: version_key(s.version))

    async def load_url(
        self,
        url: str,
        *,
        sha256: str = "",
        md5_base64: str = "",
        manifest: str = "",
        expected_name: str = "",
        signature: str = "",
    ) -> ServedVersion:
        """Download a package, verify its checksum (and signature), and serve it.

        Args:
            url: ``http(s)://`` address of a ``.zip`` package or a bare ``.onnx``.
            sha256: Hex sha256 of the file; required unless ``md5_base64`` is given.
            md5_base64: The legacy checksum form: base64 of the md5 digest.
            manifest: For a bare ``.onnx``: the manifest as YAML or JSON text.
            expected_name: When set, the package must be of this model.
            signature: base64 ed25519 over the package sha256 (see :mod:`.signing`).

        Raises:
            InvalidArgument: Missing or wrong checksum, bad manifest, broken model.
            FailedPrecondition: The download failed.
        """
        sha256 = sha256.strip().lower()
        md5_base64 = md5_base64.strip()
        try:
            if not url.startswith(("http://", "https://")):
                raise InvalidArgument(f"url must be http:// or https://, got {url[:200]!r}")
            if not sha256 and not md5_base64:
                raise InvalidArgument("a checksum is required: sha256 (hex) or md5 (base64)")
            if sha256 and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
                raise InvalidArgument("sha256 must be 64 hex digits")
            staged = await self._download_and_stage(url, sha256, md5_base64, manifest, signature)
            if expected_name and staged.manifest.name != expected_name:
                shutil.rmtree(staged.package_dir, ignore_errors=True)
                raise InvalidArgument(
                    f"the package is model {staged.manifest.name!r}, not {expected_name!r}"
                )
        except LinewatchError as exc:
            if expected_name:
                self._record_failure(expected_name, "", exc.message)
            else:
                self.metrics.loads.labels(outcome="failed").inc()
            raise
        return await self._open_and_swap(staged, url_package=True)

    async def unload(self, name: str, version: str = "") -> None:
        """Stop serving one version of ``name`` (or every version when ``version`` is empty).

        Raises:
            NotFound: No such model or version.
        """
        async with self._lock:
            entry = self.entry(name)
            if version and version not in entry.versions:
                raise NotFound(f"model {name!r} has no version {version!r} being served")
            versions = [version] if version else list(entry.versions)
            removed = [entry.versions.pop(v) for v in versions]
            for v in versions:
                self._unloaded.add((name, v))
                self._url_packages.pop((name, v), None)
            if entry.shadow in versions or not entry.versions:
                entry.shadow = ""
            if not entry.versions and not entry.failures:
                del self._models[name]
            self.metrics.versions_loaded.labels(model=name).set(len(entry.versions))
            await asyncio.to_thread(self._write_state)
        for served in removed:
            self._retire(served, delete_files=served.source_url != "")
        log.info("model unloaded", extra={"fields": {"model": name, "versions": versions}})

    async def set_shadow(self, name: str, shadow_version: str) -> ModelEntry:
        """Attach ``shadow_version`` as the shadow of ``name`` (``""`` detaches).

        Raises:
            NotFound: No such model or version.
        """
        async with self._lock:
            entry = self.entry(name)
            if shadow_version and shadow_version not in entry.versions:
                raise NotFound(f"model {name!r} has no version {shadow_version!r} to shadow")
            entry.shadow = shadow_version
            await asyncio.to_thread(self._write_state)
        return entry

    # --- internals -------------------------------------------------------------------

    def _record_failure(self, name: str, version: str, reason: str) -> None:
        self._models.setdefault(name, ModelEntry(name)).failures[version] = reason
        self.metrics.loads.labels(outcome="failed").inc()
        log.warning(
            "model load failed",
            extra={"fields": {"model": name, "version": version, "reason": reason}},
        )

    def _scan_model_dir(self) -> list[_Staged | tuple[Path, str]]:
        root = self.config.model_dir
        if not root.is_dir():
            log.warning("model_dir %s does not exist; no models loaded at start", root)
            return []
        out: list[_Staged | tuple[Path, str]] = []
        for path in sorted(root.rglob(MANIFEST_NAME)):
            try:
                manifest = parse_manifest(path.read_bytes(), source=str(path))
                model = path.parent / manifest.file
                if not model.is_file():
                    raise InvalidArgument(f"{path}: names {manifest.file}, which is not there")
                sha, _ = file_digests(model)
                if manifest.sha256 and manifest.sha256 != sha:
                    raise InvalidArgument(
                        f"{model}: sha256 {sha} does not match the manifest's {manifest.sha256}"
                    )
                out.append(_Staged(manifest, path.parent, sha))
            except LinewatchError as exc:
                out.append((path, exc.message))
        for path in sorted(root.rglob("*.zip")):
            dest = self.state_dir / "packages" / f".dir-{uuid.uuid4().hex}"
            try:
                sha, _ = file_digests(path)
                manifest = read_zip_package(path, dest, max_bytes=self._max_bytes)
                out.append(_Staged(manifest, dest, sha, source_url=path.resolve().as_uri()))
            except LinewatchError as exc:
                shutil.rmtree(dest, ignore_errors=True)
                out.append((path, exc.message))
        return out

    def _discard(self, staged: _Staged) -> None:
        """Remove a package extracted from a model_dir zip that will not be served."""
        if staged.package_dir.is_relative_to(self.state_dir):
            shutil.rmtree(staged.package_dir, ignore_errors=True)

    @property
    def _max_bytes(self) -> int:
        return self.config.max_package_mb * 1024 * 1024

    async def _download_and_stage(
        self, url: str, sha256: str, md5_base64: str, manifest_text: str, signature: str
    ) -> _Staged:
        downloads = self.state_dir / "downloads"
        fd, tmp_name = await asyncio.to_thread(_mkstemp, downloads)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                await self._download(url, out)
            stage = functools.partial(self._stage, signature=signature)
            return await asyncio.to_thread(stage, tmp, url, sha256, md5_base64, manifest_text)
        finally:
            await asyncio.to_thread(tmp.unlink, missing_ok=True)

    def _stage(
        self,
        tmp: Path,
        url: str,
        sha256: str,
        md5_base64: str,
        manifest_text: str,
        *,
        signature: str,
    ) -> _Staged:
        """Verify a downloaded file and turn it into a package folder (blocking)."""
        got_sha, got_md5 = file_digests(tmp)
        # the digest of what was downloaded is not repeated: it would tell a caller
        # something about a response it may not see
        if sha256 and got_sha != sha256:
            raise InvalidArgument(f"checksum mismatch for {url}: the sha256 is not {sha256}")
        if md5_base64 and got_md5 != md5_base64:
            raise InvalidArgument(
                f"checksum mismatch for {url}: the md5 (base64) is not {md5_base64}"
            )
        self.verifier.check(got_sha, signature)
        staging = self.state_dir / "packages" / f".staging-{uuid.uuid4().hex}"
        try:
            if zipfile.is_zipfile(tmp):
                manifest = read_zip_package(tmp, staging, max_bytes=self._max_bytes)
            else:
                if not manifest_text:
                    raise InvalidArgument(
                        "a bare .onnx needs its manifest (the `manifest` parameter); "
                        "or send a .zip package with manifest.yaml inside"
                    )
                manifest = parse_manifest(manifest_text, source="manifest parameter")
                staging.mkdir(parents=True)
                (staging / MANIFEST_NAME).write_text(manifest_text, encoding="utf-8")
                tmp.replace(staging / manifest.file)
            final = (
                self.state_dir / "packages" / manifest.name / f"{manifest.version}-{got_sha[:16]}"
            )
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                shutil.rmtree(staging, ignore_errors=True)
            else:
                staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return _Staged(manifest, final, got_sha, source_url=url)

    async def _download(self, url: str, out: Any) -> None:
        check_model_url(url)
        try:
            async with SafeFetcher(
                allowed_networks=self.config.allowed_networks,
                connect_timeout_s=min(10.0, self.config.download_timeout_s),
                read_timeout_s=self.config.download_timeout_s,
                max_connections=1,
            ) as fetcher:
                await fetcher.download_to(
                    url,
                    out,
                    max_bytes=self._max_bytes,
                    total_timeout_s=self.config.download_timeout_s,
                )
        except FetchTooLarge as exc:
            raise InvalidArgument(
                f"{url}: larger than max_package_mb ({self.config.max_package_mb})"
            ) from exc
        except FetchError as exc:
            # The caller's URL cannot be fetched: the request cannot succeed as it is
            # (a 4xx for the gateway), this server is not the one unavailable.
            raise FailedPrecondition(f"download of {url} failed: {exc.message}") from exc

    def _open(self, staged: _Staged) -> ServedVersion:
        """Open a session and check a warm-up run against the manifest (blocking)."""
        m = staged.manifest
        session = ModelSession(
            staged.package_dir / m.file,
            input_name=m.input_name,
            output_name=m.output_name,
            intra_op_threads=self.threads,
            providers=self.providers,
        )
        try:
            shape = input_shape(m.channels, m.input_length, 2)
            out = session.run(np.zeros(shape, dtype=np.float32))
        except Exception as exc:
            raise InvalidArgument(
                f"model {m.name} version {m.version} fails on a {list(shape)} input: "
                f"{str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc!r}"
            ) from exc
        if out.shape != (2, len(m.labels)):
            raise InvalidArgument(
                f"model {m.name} version {m.version}: output {m.output_name!r} has shape "
                f"{list(out.shape)} for 2 curves; the manifest's {len(m.labels)} labels need "
                f"[2, {len(m.labels)}]"
            )
        batcher = DynamicBatcher(
            session.run,
            model=m.name,
            version=m.version,
            max_batch_size=self.config.max_batch_size,
            max_queue_delay_s=self.config.max_queue_delay_ms / 1000.0,
            max_queue_size=self.config.max_queue_size,
            metrics=self.metrics,
        )
        return ServedVersion(
            m, session, batcher, staged.sha256, staged.package_dir, staged.source_url
        )

    async def _open_and_swap(self, staged: _Staged, *, url_package: bool = False) -> ServedVersion:
        m = staged.manifest
        try:
            served = await asyncio.to_thread(self._open, staged)
        except LinewatchError as exc:
            self._record_failure(m.name, m.version, exc.message)
            if url_package:
                shutil.rmtree(staged.package_dir, ignore_errors=True)
            raise
        served.batcher.start()
        async with self._lock:
            entry = self._models.setdefault(m.name, ModelEntry(m.name))
            old = entry.versions.get(m.version)
            entry.versions[m.version] = served
            entry.failures.pop(m.version, None)
            entry.failures.pop("", None)
            self._unloaded.discard((m.name, m.version))
            if url_package:
                self._url_packages[(m.name, m.version)] = {
                    "name": m.name,
                    "version": m.version,
                    "sha256": staged.sha256,
                    "source_url": staged.source_url,
                    "dir": staged.package_dir.name,
                }
            else:
                self._url_packages.pop((m.name, m.version), None)
            self.metrics.versions_loaded.labels(model=m.name).set(len(entry.versions))
            await asyncio.to_thread(self._write_state)
        self.metrics.loads.labels(outcome="ok").inc()
        if old is not None:
            self._retire(
                old, delete_files=old.source_url != "" and old.package_dir != served.package_dir
            )
        log.info(
            "model serving",
            extra={
                "fields": {
                    "model": m.name,
                    "version": m.version,
                    "sha256": staged.sha256,
                    "providers": served.session.providers,
                    "replaced": old is not None,
                }
            },
        )
        return served

    def _retire(self, served: ServedVersion, *, delete_files: bool) -> None:
        """Close a swapped-out version in the background once its queue has drained."""

        async def retire() -> None:
            await served.batcher.close()
            if delete_files and served.package_dir.is_relative_to(self.state_dir):
                await asyncio.to_thread(shutil.rmtree, served.package_dir, True)

        task = asyncio.get_running_loop().create_task(retire())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def _restore_url_package(self, record: dict[str, str]) -> None:
        try:
            package_dir = self.state_dir / "packages" / record["name"] / record["dir"]
            manifest = parse_manifest(
                (package_dir / MANIFEST_NAME).read_bytes(), source=str(package_dir)
            )
            staged = _Staged(manifest, package_dir, record["sha256"], record["source_url"])
            await self._open_and_swap(staged, url_package=True)
        except (OSError, KeyError, LinewatchError) as exc:
            log.error("stored model package %s not restored: %s", record, _reason(exc))

    # --- state file ------------------------------------------------------------------

    def _read_state(self) -> dict[str, Any]:
        path = self.state_dir / _STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("registry state %s unreadable (%s); starting from model_dir", path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _write_state(self) -> None:
        state = {
            "format": 1,
            "url_packages": sorted(
                self._url_packages.values(), key=lambda r: (r["name"], r["version"])
            ),
            "unloaded": sorted([n, v] for n, v in self._unloaded),
            "shadows": {e.name: e.shadow for e in self._models.values() if e.shadow},
        }
        path = self.state_dir / _STATE_FILE
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


def check_model_url(url: str) -> None:
    """Refuse anything but an absolute http(s) URL with a host.

    Raises:
        InvalidArgument: the URL is malformed or of another scheme.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidArgument(f"model url {url!r} is not a valid URL: {exc}") from exc
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise InvalidArgument(f"model url {url!r}: only http:// and https:// URLs with a host")
