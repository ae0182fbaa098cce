"""Scorers a rule can choose besides the inference service: the built-in ``envelope``.

:func:`make_scorer` gives the pipeline a :class:`Scorer` for a rule whose model is
built in (``None``: the rule scores through the inference service). A scorer turns a
batch of validated curves into :class:`~linewatch_ingest.verdicts.Verdict` objects (the
pipeline adds latency and trace ids), in ingest itself, without the inference hop.

:class:`EnvelopeScorer` keeps one :class:`~linewatch_ingest.envelope.EnvelopeState` per
(device, point) of its rule, loaded from the database on its first batch; the state of
curves still teaching is written back before their verdicts go out, so a restart
continues teach-in where it was. Monitoring windows (``model_params.windows``) are judged
on every curve; a curve that fails one is ``out_of_window`` and is not taught.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from linewatch.runtime.errors import FailedPrecondition
from linewatch_ingest.config import ENVELOPE, RuleConfig
from linewatch_ingest.envelope import (
    Band,
    BandBank,
    EnvelopeParams,
    EnvelopeState,
    resample_batch,
)
from linewatch_ingest.envelope_store import EnvelopeStore, StoredEnvelope
from linewatch_ingest.payload import Telemetry
from linewatch_ingest.verdicts import Verdict
from linewatch_ingest.windows import WindowResult, judge_windows

__all__ = [
    "LABEL_LEARNING",
    "LABEL_OUT_OF_ENVELOPE",
    "LABEL_OUT_OF_WINDOW",
    "EnvelopeScorer",
    "Scorer",
    "make_scorer",
    "not_envelope",
]

log = logging.getLogger(__name__)

LABEL_LEARNING = "learning"
LABEL_OUT_OF_ENVELOPE = "out_of_envelope"
LABEL_OUT_OF_WINDOW = "out_of_window"
MODEL_VERSION = "1"

Key = tuple[str, str]


class Scorer(Protocol):
    """Scores a batch in ingest (the seam beside the inference client)."""

    async def score(self, curves: Sequence[Telemetry]) -> list[Verdict]:
        """One verdict object per curve, in order."""
        ...


def make_scorer(rule: RuleConfig, store: EnvelopeStore) -> EnvelopeScorer | None:
    """The built-in scorer of a rule, or ``None`` when the inference service scores it."""
    if rule.model == ENVELOPE:
        return EnvelopeScorer(rule, store)
    return None


def _params(rule: RuleConfig) -> EnvelopeParams:
    p = rule.model_params
    return EnvelopeParams(
        teach_in=p.teach_in, width=p.width, length=p.length, max_shift=p.max_shift
    )


class EnvelopeScorer:
    """The ``envelope`` model of one rule."""

    def __init__(self, rule: RuleConfig, store: EnvelopeStore) -> None:
        self.rule = rule
        self.params = _params(rule)
        self.windows = rule.model_params.windows
        self.store = store
        self.states: dict[Key, EnvelopeState] = {}
        self._loaded = False
        self._lock = asyncio.Lock()
        self._bank: BandBank | None = None
        """Every fitted band stacked (rebuilt when one is fitted, restored or forgotten)."""
        self._bank_index: dict[Key, int] = {}

    def loaded(self) -> bool:
        """Whether the rule's envelopes are read."""
        return self._loaded

    async def load(self) -> None:
        """Read the rule's envelopes (once; a failure is retried by the next call)."""
        if self._loaded:
            return
        async with self._lock:
            if self.loaded():  # another task loaded it meanwhile
                return
            for stored in await self.store.load(self.rule.name):
                state = self._restore(stored)
                if state is not None:
                    self.states[(stored.device_id, stored.point)] = state
            self._bank = None
            self._loaded = True

    def _restore(self, stored: StoredEnvelope) -> EnvelopeState | None:
        p = self.params
        if stored.length != p.length:
            return None  # resampled differently: teach again
        state = EnvelopeState(p)
        if stored.centre is not None and stored.spread is not None:
            state.band = Band(stored.centre, stored.spread, p.width, p.shift)
        elif len(stored.taught):
            state.taught = stored.taught[: p.teach_in]
            state.teach(np.zeros((0, p.length), np.float32))  # fits when teach_in shrank
        return state

    async def reset(self, device_id: str = "", point: str = "") -> int:
        """Forget bands and teach-ins (all, one device's, or one device and point's)."""
        async with self._lock:
            removed = await self.store.delete(self.rule.name, device_id, point)
            keys = [
                k
                for k in self.states
                if (not device_id or k[0] == device_id) and (not point or k[1] == point)
            ]
            for k in keys:
                del self.states[k]
            self._bank = None
            return max(removed, len(keys))

    def state(self, device_id: str, point: str) -> EnvelopeState | None:
        """The envelope of one device and point, if it has seen a curve."""
        return self.states.get((device_id, point))

    async def score(self, curves: Sequence[Telemetry]) -> list[Verdict]:
        """Judge a batch; curves still teaching are taught (and saved) first."""
        await self.load()
        async with self._lock:  # teach-in and its write in batch order
            return await self._score(curves)

    async def _score(self, curves: Sequence[Telemetry]) -> list[Verdict]:
        p = self.params
        values = [c.values for c in curves]
        x = resample_batch(values, p.length)
        lengths = np.fromiter((len(v) for v in values), np.intp, len(values))
        window_results = judge_windows(values, self.windows)
        window_ok = np.fromiter((all(r.ok for r in rs) for rs in window_results), bool, len(curves))
        # group by (device, point): one band per group, a Python loop over groups only
        keys: dict[Key, list[int]] = {}
        for i, c in enumerate(curves):
            keys.setdefault((c.device_id, c.point), []).append(i)
        n = len(curves)
        ok = np.ones(n, bool)
        dev = np.zeros(n, np.float32)
        first = np.full(n, -1, np.intp)
        last = np.full(n, -1, np.intp)
        learning = np.zeros(n, bool)
        learned = np.zeros(n, np.int64)
        changed: list[Key] = []
        judged: list[npt.NDArray[np.intp]] = []  # rows to judge, per band
        judged_keys: list[Key] = []
        for key, idx in keys.items():  # a loop over (device, point), not over curves
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = EnvelopeState(p)
            rows = np.asarray(idx, np.intp)
            if state.band is None:
                before = state.learned
                rows = self._teach(
                    state, rows, x=x, window_ok=window_ok, learning=learning, learned=learned
                )
                if state.learned != before:  # taught (and maybe fitted): saved below
                    changed.append(key)
            if len(rows) and state.band is not None:
                judged.append(rows)
                judged_keys.append(key)
        if judged:
            if any(k not in self._bank_index for k in judged_keys):
                self._bank = None  # a band fitted (or restored) since the stack was built
            bank = self._banked()
            rows = np.concatenate(judged)
            index = np.fromiter((self._bank_index[k] for k in judged_keys), np.intp)
            which = np.repeat(index, [len(r) for r in judged])
            result = bank.score(x[rows], which, lengths[rows])
            ok[rows] = result.ok
            dev[rows] = result.max_deviation
            first[rows] = result.first
            last[rows] = result.last
            learned[rows] = p.teach_in
        if changed:
            await self._save(changed)
        return self._verdicts(
            curves,
            ok=ok,
            dev=dev,
            first=first,
            last=last,
            learning=learning,
            learned=learned,
            window_ok=window_ok,
            window_results=window_results,
        )

    @staticmethod
    def _teach(
        state: EnvelopeState,
        rows: npt.NDArray[np.intp],
        *,
        x: npt.NDArray[np.float32],
        window_ok: npt.NDArray[np.bool_],
        learning: npt.NDArray[np.bool_],
        learned: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.intp]:
        """Teach ``state`` the rows it still needs (in order, those that pass the
        windows); returns the rows left to judge against the band it may now have."""
        good = rows[window_ok[rows]]  # a curve that fails a window is not taught
        before = state.learned
        taken = state.teach(x[good])
        teaching = good[:taken]
        learning[teaching] = True
        learned[teaching] = before + np.arange(1, taken + 1)
        rest = np.setdiff1d(rows, teaching)
        learned[rest] = state.learned
        return rest if state.band is not None else rows[:0]

    def _banked(self) -> BandBank:
        if self._bank is None:
            fitted = [(k, s.band) for k, s in self.states.items() if s.band is not None]
            self._bank_index = {k: i for i, (k, _) in enumerate(fitted)}
            self._bank = BandBank([b for _, b in fitted if b is not None])
        return self._bank

    async def _save(self, keys: list[Key]) -> None:
        rows = []
        for key in keys:
            s = self.states[key]
            band = s.band
            rows.append(
                StoredEnvelope(
                    key[0],
                    key[1],
                    self.params.length,
                    s.taught if band is None else np.zeros((0, self.params.length), np.float32),
                    None if band is None else band.centre,
                    None if band is None else band.spread,
                )
            )
        delay = 0.05
        while True:  # the states moved on already: never give the batch back half taught
            try:
                await self.store.save(self.rule.name, rows)
                return
            except Exception as exc:
                log.warning(
                    "cannot save envelopes; retrying",
                    extra={"fields": {"rule": self.rule.name, "error": repr(exc)}},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _verdicts(
        self,
        curves: Sequence[Telemetry],
        *,
        ok: npt.NDArray[np.bool_],
        dev: npt.NDArray[np.float32],
        first: npt.NDArray[np.intp],
        last: npt.NDArray[np.intp],
        learning: npt.NDArray[np.bool_],
        learned: npt.NDArray[np.int64],
        window_ok: npt.NDArray[np.bool_],
        window_results: list[list[WindowResult]],
    ) -> list[Verdict]:
        teach_in = self.params.teach_in
        devs = np.round(dev.astype(np.float64), 4).tolist()
        out: list[Verdict] = []
        for i, c in enumerate(curves):
            envelope: dict[str, Any] = {
                "outside": None,
                "max_deviation": devs[i],
                "learned": int(learned[i]),
                "teach_in": teach_in,
            }
            if first[i] >= 0:
                envelope["outside"] = [int(first[i]), int(last[i])]
            if self.windows:
                envelope["windows"] = [
                    {"name": r.name, "ok": r.ok, "reason": r.reason, "index": r.index}
                    for r in window_results[i]
                ]
            if not window_ok[i]:
                label, good = LABEL_OUT_OF_WINDOW, False
            elif learning[i]:
                label, good = LABEL_LEARNING, True
            elif ok[i]:
                label, good = "ok", True
            else:
                label, good = LABEL_OUT_OF_ENVELOPE, False
            out.append(
                Verdict(
                    c.device_id,
                    c.point,
                    c.ts_ms,
                    c.msg_id,
                    ENVELOPE,
                    MODEL_VERSION,
                    label,
                    {"max_deviation": devs[i]},
                    good,
                    envelope=envelope,
                )
            )
        return out


def not_envelope(rule: RuleConfig) -> FailedPrecondition:
    """The error for an envelope call on a rule that scores with another model."""
    return FailedPrecondition(f"rule {rule.name!r} scores with {rule.model!r}, not {ENVELOPE!r}")
