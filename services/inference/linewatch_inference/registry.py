"""The model registry: packages loaded from a folder at start and by URL at run time.

Every load follows the same path: the package is staged (:mod:`.staging`: downloaded to a
temporary file, checksum and signature verified, unpacked), its manifest validated, an
onnxruntime session opened and a warm-up run checked against the manifest; only then is
the version swapped into the index (:mod:`.index`), under the lock, in one assignment.
Any failure leaves the serving version untouched and is recorded as the version's
``reason``. A swapped-out version's batcher finishes its queued requests before it
closes, so callers lose nothing.

State (packages loaded by URL, versions unloaded, shadows) is a JSON file
(:mod:`.state`); packages loaded by URL are kept, verified, under ``state_dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path

import numpy as np

from linewatch.runtime.errors import InvalidArgument, LinewatchError, NotFound
from linewatch_inference.batcher import DynamicBatcher
from linewatch_inference.channels import input_shape
from linewatch_inference.config import InferenceConfig
from linewatch_inference.index import LATEST, ModelEntry, ModelIndex, ServedVersion
from linewatch_inference.metrics import InferenceMetrics
from linewatch_inference.package import version_key
from linewatch_inference.session import ModelSession, available_providers, choose_providers
from linewatch_inference.signing import PackageVerifier
from linewatch_inference.staging import Staged, Stager, check_model_url
from linewatch_inference.state import RegistryState

__all__ = ["LATEST", "ModelEntry", "Registry", "ServedVersion", "check_model_url"]

log = logging.getLogger(__name__)


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
        self.index = ModelIndex()
        self.stager = Stager(config, state_dir=state_dir, verifier=self.verifier)
        self.state = RegistryState(state_dir)
        self._lock = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Load every package in ``model_dir``, then those the state file remembers."""
        self.stager.clean()
        state = self.state.read()
        log.info(
            "opening models",
            extra={"fields": {"providers": self.providers, "intra_op_threads": self.threads}},
        )
        for staged in await asyncio.to_thread(self.stager.scan_model_dir):
            if isinstance(staged, tuple):
                path, reason = staged
                log.error("model package %s not loaded: %s", path, reason)
                self.metrics.loads.labels(outcome="failed").inc()
                continue
            if (staged.manifest.name, staged.manifest.version) in self.state.unloaded:
                self.stager.discard(staged)
                continue
            with contextlib.suppress(LinewatchError):
                await self._open_and_swap(staged)
        for record in state.get("url_packages", []):
            await self._restore_url_package(record)
        for name, version in state.get("shadows", {}).items():
            entry = self.index.get(name)
            if entry is not None:
                entry.shadow = version

    async def close(self) -> None:
        """Finish queued requests of every version and stop their workers."""
        async with self._lock:
            served = self.index.clear()
        for version in served:
            await version.batcher.close()
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)

    # --- queries ---------------------------------------------------------------------

    def models(self) -> list[ModelEntry]:
        """Every model, by name."""
        return self.index.models()

    def entry(self, name: str) -> ModelEntry:
        """One model (raises ``NotFound``)."""
        return self.index.entry(name)

    def resolve(self, name: str, version: str = "") -> ServedVersion:
        """The served version ``version`` of ``name`` (``""``/``latest``: the latest;
        raises ``NotFound``)."""
        return self.index.resolve(name, version)

    # --- loading ---------------------------------------------------------------------

    async def load_dir_package(self, name: str) -> ServedVersion:
        """(Re)load the packages of model ``name`` found in ``model_dir``; the latest wins.

        Raises:
            NotFound: ``model_dir`` has no package of that model.
        """
        found: list[Staged] = []
        for staged in await asyncio.to_thread(self.stager.scan_model_dir):
            if isinstance(staged, Staged):
                if staged.manifest.name == name:
                    found.append(staged)
                else:
                    self.stager.discard(staged)
        if not found:
            raise NotFound(f"no package of model {name!r} in {self.config.model_dir}")
        served: list[ServedVersion] = []
        for staged in found:
            self.state.unloaded.discard((name, staged.manifest.version))
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
        try:
            staged = await self.stager.fetch(
                url,
                sha256=sha256.strip().lower(),
                md5_base64=md5_base64.strip(),
                manifest=manifest,
                signature=signature,
            )
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
                self.state.unload(name, v)
            if entry.shadow in versions or not entry.versions:
                entry.shadow = ""
            if not entry.versions and not entry.failures:
                self.index.remove(name)
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

    def _write_state(self) -> None:
        self.state.write(self.index.shadows())

    def _record_failure(self, name: str, version: str, reason: str) -> None:
        self.index.add(name).failures[version] = reason
        self.metrics.loads.labels(outcome="failed").inc()
        log.warning(
            "model load failed",
            extra={"fields": {"model": name, "version": version, "reason": reason}},
        )

    def _open(self, staged: Staged) -> ServedVersion:
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

    async def _open_and_swap(self, staged: Staged, *, url_package: bool = False) -> ServedVersion:
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
            entry = self.index.add(m.name)
            old = entry.versions.get(m.version)
            entry.versions[m.version] = served
            entry.failures.pop(m.version, None)
            entry.failures.pop("", None)
            record = {
                "name": m.name,
                "version": m.version,
                "sha256": staged.sha256,
                "source_url": staged.source_url,
                "dir": staged.package_dir.name,
            }
            self.state.serving(m.name, m.version, record if url_package else None)
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
            staged = self.stager.stored(record)
            await self._open_and_swap(staged, url_package=True)
        except (OSError, KeyError, LinewatchError) as exc:
            log.error("stored model package %s not restored: %s", record, _reason(exc))
