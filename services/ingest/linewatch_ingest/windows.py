"""Monitoring windows: boxes over (time, value) a curve must pass through or avoid.

The evaluation windows of press-fit and screw-driving monitors. A ``pass`` window holds
when the curve is inside the box at some sample of the window's time range, the first
such sample was entered through the window's ``enter`` side, and the curve then leaves
it through its ``exit`` side:

- entered through ``left``: the curve is already inside at the range's first sample;
  through ``top`` / ``bottom``: the sample before was above / below the box;
- left through ``right``: it stays inside to the range's last sample; through ``top`` /
  ``bottom``: the first sample after that is outside is above / below the box.

An ``avoid`` window holds when no sample is inside the box. Judged on the raw samples;
curves of one length are judged together (numpy over the batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from linewatch_ingest.config import MonitorWindow

__all__ = ["WindowResult", "judge_windows"]


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One window's judgement of one curve."""

    name: str
    ok: bool
    reason: str
    index: int
    """The raw sample where it went wrong (-1: none)."""


def _columns(w: MonitorWindow, n: int) -> tuple[int, int]:
    """The window's sample range [c0, c1] in a curve of ``n`` samples (c1 < c0: none)."""
    scale = (n - 1) if w.x_axis == "fraction" else 1.0
    c0 = int(np.ceil(w.x_min * scale - 1e-9))
    c1 = int(np.floor(w.x_max * scale + 1e-9))
    return max(c0, 0), min(c1, n - 1)


def _side(y: npt.NDArray[np.float32], w: MonitorWindow) -> npt.NDArray[np.str_]:
    return np.where(y > w.y_max, "top", "bottom")


def _judge(x: npt.NDArray[np.float32], w: MonitorWindow) -> list[WindowResult]:
    """One window over curves of one length (rows of ``x``)."""
    rows, n = x.shape
    c0, c1 = _columns(w, n)
    if c1 < c0:
        ok = w.mode == "avoid"
        return [WindowResult(w.name, ok, "" if ok else "not reached", -1)] * rows
    seg = x[:, c0 : c1 + 1]
    inside = (seg >= w.y_min) & (seg <= w.y_max)
    has: npt.NDArray[np.bool_] = np.asarray(inside.any(axis=1))
    first = inside.argmax(axis=1)
    if w.mode == "avoid":
        return [
            WindowResult(w.name, not h, "touched" if h else "", c0 + int(f) if h else -1)
            for h, f in zip(has.tolist(), first.tolist(), strict=True)
        ]
    cols = np.arange(seg.shape[1])
    after = (cols[None, :] >= first[:, None]) & ~inside
    leaves: npt.NDArray[np.bool_] = np.asarray(after.any(axis=1))
    leave = after.argmax(axis=1)
    prev = np.take_along_axis(seg, np.maximum(first - 1, 0)[:, None], axis=1)[:, 0]
    enter_side = np.where(first == 0, "left", _side(prev, w))
    out_y = np.take_along_axis(seg, leave[:, None], axis=1)[:, 0]
    exit_side = np.where(leaves, _side(out_y, w), "right")
    out: list[WindowResult] = []
    for h, f, es, ls, lv in zip(
        has.tolist(), first.tolist(), enter_side.tolist(), exit_side.tolist(), leave.tolist(),
        strict=True,
    ):  # fmt: skip
        if not h:
            out.append(WindowResult(w.name, False, "not entered", c0))
        elif w.enter not in ("any", es):
            out.append(WindowResult(w.name, False, f"entered through {es} (not {w.enter})", c0 + f))
        elif w.exit not in ("any", ls):
            at = c0 + (lv if ls != "right" else seg.shape[1] - 1)
            out.append(WindowResult(w.name, False, f"left through {ls} (not {w.exit})", at))
        else:
            out.append(WindowResult(w.name, True, "", -1))
    return out


def judge_windows(
    curves: Sequence[npt.NDArray[np.float32]], windows: Sequence[MonitorWindow]
) -> list[list[WindowResult]]:
    """Per curve, each window's result (in the windows' order)."""
    out: list[list[WindowResult]] = [[] for _ in curves]
    if not windows or not curves:
        return out
    lengths = np.fromiter((len(c) for c in curves), np.intp, len(curves))
    for n in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == n).tolist()
        x = np.stack([curves[i] for i in rows])
        for w in windows:
            for row, result in zip(rows, _judge(x, w), strict=True):
                out[row].append(result)
    return out
