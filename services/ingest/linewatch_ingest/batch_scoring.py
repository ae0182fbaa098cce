"""Scoring one batch of a rule: by its built-in model (:mod:`linewatch_ingest.scorers`)
or by the inference service, one call per channel layout.

A failed inference call is retried with capped backoff (nothing accepted is dropped);
a batch the model refuses (INVALID_ARGUMENT) is split until the curve it refuses is
found, and that curve alone is dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

import numpy as np
from opentelemetry import trace

from linewatch.runtime.errors import InvalidArgument, LinewatchError
from linewatch.runtime.retry import Backoff
from linewatch_ingest.admission import AdmittedEntry, admitted
from linewatch_ingest.config import RuleConfig
from linewatch_ingest.dedup import MsgKey
from linewatch_ingest.inference_client import InferenceClient
from linewatch_ingest.scorers import EnvelopeScorer
from linewatch_ingest.shadow import ShadowScorer
from linewatch_ingest.verdicts import Verdict, trace_id, verdicts

__all__ = ["BatchScorer", "Scored"]

tracer = trace.get_tracer("linewatch_ingest.pipeline")

Scored = list[tuple[AdmittedEntry, Verdict]]
"""A scored batch: each entry with its verdict."""


class BatchScorer:
    """Turns a rule's batches into verdicts."""

    def __init__(
        self,
        rule: RuleConfig,
        inference: InferenceClient,
        scorer: EnvelopeScorer | None,
        *,
        dead_letter: Callable[[Sequence[AdmittedEntry], str], Awaitable[None]],
        remember: Callable[[Iterable[MsgKey]], None],
        on_error: Callable[[str, BaseException], None],
        shadow: ShadowScorer | None = None,
    ) -> None:
        self.rule = rule
        self._inference = inference
        self._scorer = scorer
        self._dead_letter = dead_letter
        self._remember = remember
        self._on_error = on_error
        self._shadow = shadow

    async def score(self, entries: list[AdmittedEntry]) -> Scored:
        """Verdicts for every entry; a curve the model refuses is dead-lettered."""
        if self._scorer is not None:
            with tracer.start_as_current_span("built-in model"):
                vs = await self._scorer.score([admitted(e).tele for e in entries])
            batch_trace_id = trace_id(trace.get_current_span())
            for e, v in zip(entries, vs, strict=True):
                span = admitted(e).span
                v.trace_id = batch_trace_id if span is None else trace_id(span)
            return list(zip(entries, vs, strict=True))
        teles = [admitted(e).tele for e in entries]
        channels = teles[0].channel_names
        if any(t.channel_names != channels for t in teles):
            # one batch, one channel layout: score each layout on its own
            layouts: dict[tuple[str, ...], list[AdmittedEntry]] = {}
            for e in entries:
                layouts.setdefault(admitted(e).tele.channel_names, []).append(e)
            scored: Scored = []
            for group in layouts.values():
                scored.extend(await self.score(group))
            return scored
        with tracer.start_as_current_span("inference call") as span:
            span.set_attribute("linewatch.batch_size", len(entries))
            samples = np.concatenate([t.values for t in teles]).tobytes()
            lengths = (
                [n for t in teles for n in t.channel_lengths]
                if channels
                else [len(t.values) for t in teles]
            )
            backoff = Backoff(0.05, 2.0)
            while True:
                try:
                    result = await self._inference.predict(
                        model=self.rule.model,
                        version=self.rule.model_version,
                        samples_f32=samples,
                        lengths=lengths,
                        channels=channels,
                    )
                    break
                except InvalidArgument as exc:
                    if len(entries) == 1:
                        await self._dead_letter(entries, f"model: {exc.message}")
                        key = admitted(entries[0]).key
                        if key is not None:
                            self._remember([key])  # a redelivery is not refused twice
                        return []
                    out: Scored = []
                    for e in entries:
                        out.extend(await self.score([e]))
                    return out
                except LinewatchError as exc:
                    self._on_error("inference", exc)
                    await asyncio.sleep(backoff.next())
        if self._shadow is not None:
            self._shadow.offer(
                rule=self.rule.name,
                model=self.rule.model,
                result=result,
                keys=[(t.msg_id, t.device_id, t.ts_ms) for t in teles],
                samples_f32=samples,
                lengths=lengths,
                channels=channels,
            )
        batch_span = trace.get_current_span()
        spans = [admitted(e).span for e in entries]
        vs = verdicts(list(zip(teles, spans, strict=True)), result, batch_span)
        return list(zip(entries, vs, strict=True))
