"""Worker control: the set of running rules, start/stop/pause/resume, concurrency, status.

:class:`IngestController` owns one :class:`~linewatch_ingest.pipeline.RuleWorker` per
enabled rule. Rule changes (create, update, delete) are written to the database first and
then applied to the running workers without a restart; with several replicas
(:mod:`linewatch_ingest.replicas`) every replica applies the stored rule when told it
changed (:meth:`IngestController.apply_stored`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from linewatch.runtime.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from linewatch.v1 import ingest_pb2
from linewatch_ingest.config import ENVELOPE, RuleConfig
from linewatch_ingest.envelope_store import EnvelopeStore
from linewatch_ingest.pipeline import PipelineDeps, RuleWorker
from linewatch_ingest.rules import TopicTemplate, strip_share, validate_rule
from linewatch_ingest.scorers import EnvelopeScorer, make_scorer, not_envelope

if TYPE_CHECKING:
    from linewatch_ingest.replicas import Replicas

__all__ = ["IngestController"]

log = logging.getLogger(__name__)


class IngestController:
    """Runs the rules and answers the worker-control API."""

    def __init__(self, deps: PipelineDeps) -> None:
        self.deps = deps
        config = deps.config
        self._brokers = set(config.brokers)
        self._targets = set(config.targets)
        self._base_id = config.client_id or f"linewatch-ingest-{socket.gethostname()}"
        self._rules: dict[str, RuleConfig] = {}
        self._workers: dict[str, RuleWorker] = {}
        self._paused: set[str] = set()
        self._lock = asyncio.Lock()
        self.running = False
        self.workers = config.workers
        self.slot: int | None = None
        """The replica slot held (with ``replicas`` > 1; None: one replica)."""
        self.replicas: Replicas | None = None

    def _validate(self, rule: RuleConfig) -> TopicTemplate:
        return validate_rule(
            rule,
            self._brokers,
            self._targets,
            deadletter_topic=self.deps.config.deadletter_topic,
        )

    # --- start-up and shutdown -------------------------------------------------------

    async def load(self) -> None:
        """Read the stored rules; add the configured rules the database does not have yet."""
        stored = {rule.name: rule for rule in await self.deps.store.list_rules()}
        for rule in self.deps.config.rules:
            if rule.name not in stored:
                self._validate(rule)
                try:
                    await self.deps.store.create_rule(rule)
                except AlreadyExists:
                    # a replica starting at the same moment stored it first: its copy wins
                    stored = {r.name: r for r in await self.deps.store.list_rules()}
                    continue
                stored[rule.name] = rule
        for rule in stored.values():
            try:
                self._validate(rule)
            except InvalidArgument as exc:
                log.error("stored rule skipped: %s", exc.message)
                continue
            self._rules[rule.name] = rule

    async def start(self) -> None:
        """Start consuming every enabled rule."""
        async with self._lock:
            self.running = True
            for rule in self._rules.values():
                await self._start_rule(rule)

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop consuming (in-flight messages finish within ``grace``)."""
        async with self._lock:
            self.running = False
            workers = list(self._workers.values())
            self._workers.clear()
            await asyncio.gather(*(w.stop(grace=grace) for w in workers))

    async def _start_rule(self, rule: RuleConfig) -> None:
        if not self.running or not rule.enabled or rule.name in self._workers:
            return
        base = self._base_id
        if self.deps.config.replicas > 1:
            if self.slot is None or (rule.model == ENVELOPE and self.slot != 0):
                return  # envelope rules: the slot-0 replica consumes them, in order
            base = f"{self.deps.config.client_id or 'linewatch-ingest'}-r{self.slot}"
        template = self._validate(rule)
        worker = RuleWorker(
            rule,
            template,
            broker=self.deps.config.brokers[rule.broker],
            client_id=f"{base}-{rule.name}",
            deps=self.deps,
            workers=self.workers,
        )
        self._workers[rule.name] = worker
        await worker.start()
        if rule.name in self._paused:
            worker.pause()

    async def _stop_rule(self, name: str, *, forget_session: bool = False) -> None:
        worker = self._workers.pop(name, None)
        if worker is not None:
            await worker.stop(forget_session=forget_session)

    # --- rules -----------------------------------------------------------------------

    def list_rules(self) -> list[RuleConfig]:
        """Every rule, by name."""
        return [self._rules[name] for name in sorted(self._rules)]

    def get_rule(self, name: str) -> RuleConfig:
        """One rule.

        Raises:
            NotFound: no rule of that name.
        """
        try:
            return self._rules[name]
        except KeyError:
            raise NotFound(f"no rule {name!r}") from None

    def _check_conflicts(self, rule: RuleConfig) -> None:
        for other in self._rules.values():
            if other.name == rule.name or other.broker != rule.broker:
                continue
            if strip_share(other.source_topic) == strip_share(rule.source_topic):
                raise FailedPrecondition(
                    f"rule {other.name!r} already subscribes {rule.source_topic!r} on "
                    f"broker {rule.broker!r}"
                )

    async def create_rule(self, rule: RuleConfig) -> RuleConfig:
        """Store a new rule and start it.

        Raises:
            InvalidArgument: the rule cannot work.
            AlreadyExists: the name is taken.
        """
        self._validate(rule)
        async with self._lock:
            self._check_conflicts(rule)
            await self.deps.store.create_rule(rule)
            self._rules[rule.name] = rule
            await self._start_rule(rule)
        return rule

    async def update_rule(self, rule: RuleConfig) -> RuleConfig:
        """Replace a rule; its worker restarts with the new settings.

        Raises:
            InvalidArgument: the rule cannot work.
            NotFound: no rule of that name.
        """
        self._validate(rule)
        async with self._lock:
            if rule.name not in self._rules:
                raise NotFound(f"no rule {rule.name!r}")
            self._check_conflicts(rule)
            await self.deps.store.update_rule(rule)
            old = self._rules[rule.name]
            self._rules[rule.name] = rule
            same_source = (old.broker, old.source_topic) == (rule.broker, rule.source_topic)
            await self._stop_rule(rule.name, forget_session=not same_source)
            await self._start_rule(rule)
        return rule

    async def delete_rule(self, name: str) -> None:
        """Stop a rule and delete it.

        Raises:
            NotFound: no rule of that name.
        """
        async with self._lock:
            if name not in self._rules:
                raise NotFound(f"no rule {name!r}")
            await self.deps.store.delete_rule(name)
            if self._rules[name].model == ENVELOPE:  # a new rule of that name teaches afresh
                await EnvelopeStore(self.deps.store.db).delete(name)
            del self._rules[name]
            self._paused.discard(name)
            await self._stop_rule(name, forget_session=True)
            self.deps.alarms.forget_rule(name)

    # --- control ---------------------------------------------------------------------

    def pause(self, name: str) -> None:
        """Pause one rule (it keeps its subscription; the broker holds its messages)."""
        self.get_rule(name)
        self._paused.add(name)
        worker = self._workers.get(name)
        if worker is not None:
            worker.pause()

    def resume(self, name: str) -> None:
        """Resume a paused rule."""
        self.get_rule(name)
        self._paused.discard(name)
        worker = self._workers.get(name)
        if worker is not None:
            worker.resume()

    def set_workers(self, workers: int) -> int:
        """Batches scored at once per rule.

        Raises:
            InvalidArgument: outside 1..256.
        """
        if not 1 <= workers <= 256:
            raise InvalidArgument("workers: must be 1..256")
        self.workers = workers
        for worker in self._workers.values():
            worker.set_workers(workers)
        return workers

    async def cluster_status(self) -> ingest_pb2.GetIngestStatusResponse:
        """:meth:`status`; with several replicas, totals of all and each replica's figures."""
        if self.replicas is None:
            return self.status()
        return await self.replicas.aggregate(self.status())

    def local_status(self) -> ingest_pb2.GetIngestStatusResponse:
        """This replica's own figures."""
        return self.status()

    def status(self) -> ingest_pb2.GetIngestStatusResponse:
        """Overall state and every rule's status (this replica's)."""
        rules = []
        for name in sorted(self._rules):
            worker = self._workers.get(name)
            if worker is not None:
                rules.append(worker.status())
            else:
                state = (
                    ingest_pb2.WORKER_STATE_PAUSED
                    if name in self._paused
                    else ingest_pb2.WORKER_STATE_STOPPED
                )
                rules.append(ingest_pb2.RuleStatus(name=name, state=state))
        return ingest_pb2.GetIngestStatusResponse(
            state=ingest_pb2.WORKER_STATE_RUNNING
            if self.running
            else ingest_pb2.WORKER_STATE_STOPPED,
            workers=self.workers,
            rules=rules,
        )

    # --- built-in envelope -------------------------------------------------------------

    def _envelope_scorer(self, name: str) -> EnvelopeScorer:
        """The running scorer of an envelope rule, or a fresh one over the database."""
        rule = self.get_rule(name)
        if rule.model != ENVELOPE:
            raise not_envelope(rule)
        worker = self._workers.get(name)
        if worker is not None and worker.scorer is not None:
            return worker.scorer
        scorer = make_scorer(rule, EnvelopeStore(self.deps.store.db))
        assert scorer is not None
        return scorer

    async def envelope(
        self, name: str, device_id: str, point: str
    ) -> ingest_pb2.GetEnvelopeResponse:
        """The band (or teach-in progress) of one device and point of an envelope rule.

        Raises:
            NotFound: no such rule, or the device and point have sent it no curve.
            FailedPrecondition: the rule scores with another model.
        """
        scorer = self._envelope_scorer(name)
        await scorer.load()
        state = scorer.state(device_id, point)
        if state is None:
            raise NotFound(f"rule {name!r} has no envelope for {device_id!r} / {point!r}")
        from linewatch_ingest.rules import window_to_proto

        out = ingest_pb2.GetEnvelopeResponse(
            rule=name,
            device_id=device_id,
            point=point,
            learned=state.learned,
            teach_in=state.params.teach_in,
            ready=state.band is not None,
            width=state.params.width,
            windows=[window_to_proto(w) for w in scorer.windows],
        )
        if state.band is not None:
            out.centre.extend(state.band.centre.tolist())
            out.lower.extend(state.band.lower.tolist())
            out.upper.extend(state.band.upper.tolist())
        return out

    async def reset_envelope(self, name: str, device_id: str = "", point: str = "") -> int:
        """Teach an envelope rule again (every device, one device, or one device and point).

        Raises:
            NotFound: no such rule.
            FailedPrecondition: the rule scores with another model.
        """
        removed = await self._envelope_scorer(name).reset(device_id, point)
        if self.replicas is not None:
            await self.replicas.send_reset(name, device_id, point)
        return removed

    async def reset_local(self, name: str, device_id: str, point: str) -> None:
        """Another replica reset an envelope rule: forget the bands this one holds."""
        worker = self._workers.get(name)
        if worker is not None and worker.scorer is not None:
            await worker.scorer.reset(device_id, point)

    # --- changes made elsewhere --------------------------------------------------------

    async def tell_replicas(self, action: str, name: str) -> None:
        """Have every other replica pause or resume a rule too (nothing with one)."""
        if self.replicas is not None:
            await self.replicas.send(f"{action}:{name}")

    async def apply_stored(self, name: str) -> None:
        """Apply the stored state of one rule (changed by another replica or in SQL)."""
        stored = {r.name: r for r in await self.deps.store.list_rules() if r.name == name}
        await self._apply(name, stored.get(name))

    async def resync(self) -> None:
        """Apply every stored rule (after notices may have been missed)."""
        stored = {r.name: r for r in await self.deps.store.list_rules()}
        for name in sorted(set(stored) | set(self._rules)):
            await self._apply(name, stored.get(name))

    async def _apply(self, name: str, rule: RuleConfig | None) -> None:
        async with self._lock:
            old = self._rules.get(name)
            if rule == old:
                return
            if rule is None:
                del self._rules[name]
                self._paused.discard(name)
                await self._stop_rule(name, forget_session=True)
                self.deps.alarms.forget_rule(name)
                return
            try:
                self._validate(rule)
            except InvalidArgument as exc:
                log.error("stored rule skipped: %s", exc.message)
                return
            self._rules[name] = rule
            log.info("rule %s changed elsewhere: applied", name)
            moved = old is not None and (old.broker, old.source_topic) != (
                rule.broker,
                rule.source_topic,
            )
            await self._stop_rule(name, forget_session=moved)
            await self._start_rule(rule)

    def worker(self, name: str) -> RuleWorker | None:
        """The running worker of a rule (for tests and diagnostics)."""
        return self._workers.get(name)
