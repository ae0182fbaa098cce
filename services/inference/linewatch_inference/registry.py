"""The model registry: packages loaded from a folder at start and by URL at run time,
recorded in the database every replica shares (:mod:`.catalog`).

Every load follows the same path: the package is staged (:mod:`.staging`: downloaded to a
temporary file, checksum and signature verified, unpacked), its manifest validated, an
onnxruntime session opened and a warm-up run checked against the manifest
(:mod:`.opening`); only then is the version recorded in the database (with its file, for
a load by URL) and swapped into the index (:mod:`.index`), under the lock, in one
assignment. Any failure leaves the serving version untouched and is recorded as the
version's ``reason``. A swapped-out version's batcher finishes its queued requests before
it closes, so callers lose nothing.

Promotion: loading never changes what calls without a version score with; each model has
one promoted version (the first loaded under its name), moved by :meth:`Registry.promote`.
Other replicas pick up versions, promotions, unloads and shadows within ``registry_poll_s``
(:mod:`.converge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path

from linewatch.runtime.db import Database
from linewatch.runtime.errors import FailedPrecondition, InvalidArgument, LinewatchError, NotFound
from linewatch_inference.catalog import Catalog, PromotionRow, VersionRecord
from linewatch_inference.config import InferenceConfig
from linewatch_inference.index import LATEST, ModelEntry, ModelIndex, ServedVersion
from linewatch_inference.metrics import InferenceMetrics
from linewatch_inference.opening import open_version
from linewatch_inference.package import version_key
from linewatch_inference.session import available_providers, choose_providers
from linewatch_inference.signing import PackageVerifier
from linewatch_inference.staging import Staged, Stager, check_model_url

__all__ = ["LATEST", "ModelEntry", "Registry", "ServedVersion", "check_model_url"]

log = logging.getLogger(__name__)


class Registry:
    """Model versions by name, loaded, promoted, swapped and unloaded safely.

    Args:
        config: The service configuration (batching, threads, limits, ``model_dir``).
        metrics: Where loads and versions are counted.
        state_dir: Where verified package folders are unpacked.
        db: The registry database (shared by every replica).
    """

    def __init__(
        self, config: InferenceConfig, *, metrics: InferenceMetrics, state_dir: Path, db: Database
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.state_dir = state_dir
        self.providers = choose_providers(available_providers(), config.use_cuda)
        self.threads = config.resolved_intra_op_threads()
        self.verifier = PackageVerifier.from_config(config)
        self.index = ModelIndex()
        self.stager = Stager(config, state_dir=state_dir, verifier=self.verifier)
        self.catalog = Catalog(db)
        self.lock = asyncio.Lock()
        """Held while the index and the database change together (and while converging)."""
        self._retired: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Create the tables and serve every package in ``model_dir`` the database does
        not say was unloaded (the versions loaded by URL follow when converging)."""
        await asyncio.to_thread(self.stager.clean)
        await self.catalog.create()
        snapshot = await self.catalog.snapshot()
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
            row = snapshot.versions.get((staged.manifest.name, staged.manifest.version))
            if row is not None and (row.state == "unloaded" or row.kind == "url"):
                self.stager.discard(staged)
                continue
            with contextlib.suppress(LinewatchError):
                await self._open_and_swap(staged, keep=True)

    async def close(self) -> None:
        """Finish queued requests of every version and stop their workers."""
        async with self.lock:
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
        """The served version ``version`` of ``name`` (``""``: the promoted one; ``latest``:
        the highest; raises ``NotFound``, or ``Unavailable`` while the promoted version is
        not loaded here yet)."""
        return self.index.resolve(name, version)

    async def promotions(self, name: str) -> list[PromotionRow]:
        """Who promoted which version of ``name`` when, newest first."""
        self.entry(name)
        return await self.catalog.promotions(name)

    # --- changes ---------------------------------------------------------------------

    async def load_dir_package(self, name: str, *, by: str = "") -> ServedVersion:
        """(Re)load the packages of model ``name`` found in ``model_dir``; returns the
        highest version.

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
        served = [await self._open_and_swap(staged, by=by) for staged in found]
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
        by: str = "",
    ) -> ServedVersion:
        """Download a package, verify its checksum (and signature), and serve it. It is
        promoted only when it is the first version of its model.

        Args: ``url`` (``http(s)://``, a ``.zip`` package or a bare ``.onnx``), ``sha256``
        (hex; or the legacy ``md5_base64``), ``manifest`` (for a bare ``.onnx``: YAML or
        JSON), ``expected_name`` (the package must be of this model), ``signature``
        (base64 ed25519 over the sha256, :mod:`.signing`), ``by`` (who loads it).

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
                self.record_failure(expected_name, "", exc.message)
            else:
                self.metrics.loads.labels(outcome="failed").inc()
            raise
        return await self._open_and_swap(staged, by=by)

    async def promote(self, name: str, version: str, *, by: str = "") -> PromotionRow:
        """Make ``version`` what calls without a version score with, on every replica.

        Raises:
            NotFound: No such model, or that version is not loaded.
        """
        async with self.lock:
            entry = self.entry(name)
            if version not in entry.versions:
                raise NotFound(f"model {name!r} has no version {version!r} loaded to promote")
            row = await self.catalog.promote(name, version, by)
            entry.promoted = version
        log.info(
            "model version promoted",
            extra={"fields": {"model": name, "from": row.from_version, "to": version, "by": by}},
        )
        return row

    async def unload(self, name: str, version: str = "") -> None:
        """Stop serving one version of ``name`` (or every version when ``version`` is
        empty), on every replica.

        Raises:
            NotFound: No such model or version.
            FailedPrecondition: The version is the promoted one and others remain.
        """
        async with self.lock:
            entry = self.entry(name)
            if version and version not in entry.versions:
                raise NotFound(f"model {name!r} has no version {version!r} being served")
            if version and version == entry.promoted and len(entry.versions) > 1:
                raise FailedPrecondition(
                    f"model {name!r} version {version!r} is promoted: promote another "
                    "version before unloading it"
                )
            versions = [version] if version else list(entry.versions)
            await self.catalog.unload(name, versions)
            self.drop_local(entry, versions)
        log.info("model unloaded", extra={"fields": {"model": name, "versions": versions}})

    async def set_shadow(self, name: str, shadow_version: str) -> ModelEntry:
        """Attach ``shadow_version`` as the shadow of ``name`` (``""`` detaches).

        Raises:
            NotFound: No such model or version.
        """
        async with self.lock:
            entry = self.entry(name)
            if shadow_version and shadow_version not in entry.versions:
                raise NotFound(f"model {name!r} has no version {shadow_version!r} to shadow")
            await self.catalog.set_shadow(name, shadow_version)
            entry.shadow = shadow_version
        return entry

    # --- used by the converger (under the lock) ------------------------------------

    def open_staged(self, staged: Staged, by: str = "") -> ServedVersion:
        """Open a staged package (blocking)."""
        return open_version(
            staged,
            config=self.config,
            metrics=self.metrics,
            threads=self.threads,
            providers=self.providers,
            loaded_by=by,
        )

    def swap_in(self, served: ServedVersion) -> None:
        """Serve ``served`` (its batcher started), retiring a version it replaces."""
        entry = self.index.add(served.name)
        old = entry.versions.get(served.version)
        entry.versions[served.version] = served
        entry.failures.pop(served.version, None)
        entry.failures.pop("", None)
        self.metrics.versions_loaded.labels(model=served.name).set(len(entry.versions))
        if old is not None:
            self._retire(old, delete_files=old.package_dir != served.package_dir)

    def drop_local(self, entry: ModelEntry, versions: list[str]) -> None:
        """Stop serving ``versions`` here (what another replica unloaded, or this one)."""
        removed = [entry.versions.pop(v) for v in versions if v in entry.versions]
        if entry.shadow in versions:
            entry.shadow = ""
        if entry.promoted in versions and not entry.versions:
            entry.promoted = ""
        if not entry.versions and not entry.failures:
            self.index.remove(entry.name)
        self.metrics.versions_loaded.labels(model=entry.name).set(len(entry.versions))
        for served in removed:
            self._retire(served, delete_files=served.source_url.startswith("http"))

    def record_failure(self, name: str, version: str, reason: str) -> None:
        """A load of ``name`` (``version``, ``""`` if unknown) failed for ``reason``."""
        self.index.add(name).failures[version] = reason
        self.metrics.loads.labels(outcome="failed").inc()
        log.warning(
            "model load failed",
            extra={"fields": {"model": name, "version": version, "reason": reason}},
        )

    # --- internals -------------------------------------------------------------------

    async def _open_and_swap(
        self, staged: Staged, *, by: str = "", keep: bool = False
    ) -> ServedVersion:
        m = staged.manifest
        try:
            served = await asyncio.to_thread(self.open_staged, staged, by)
        except LinewatchError as exc:
            self.record_failure(m.name, m.version, exc.message)
            if staged.blob is not None:
                shutil.rmtree(staged.package_dir, ignore_errors=True)
            raise
        record = VersionRecord(
            name=m.name,
            version=m.version,
            sha256=staged.sha256,
            manifest_json=m.model_dump_json(),
            kind="dir" if staged.blob is None else "url",
            source_url=staged.source_url,
            bare_manifest=staged.bare_manifest,
            signature=staged.signature,
            loaded_by=by,
        )
        served.batcher.start()
        async with self.lock:
            try:
                promoted = await self.catalog.record(record, staged.blob, keep=keep)
            except BaseException:
                await served.batcher.close()
                raise
            self.swap_in(served)
            if promoted:
                self.index.entry(m.name).promoted = m.version
        self.metrics.loads.labels(outcome="ok").inc()
        log.info(
            "model serving",
            extra={
                "fields": {
                    "model": m.name,
                    "version": m.version,
                    "sha256": staged.sha256,
                    "providers": served.session.providers,
                    "promoted": promoted,
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
