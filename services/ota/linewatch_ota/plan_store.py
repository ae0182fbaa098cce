"""The tables of rollout plans (waves, gate, schedule) and saved device groups.

A rollout created with waves, a gate or a schedule has one ``ota_rollout_plans`` row and
one ``ota_rollout_waves`` row per wave; a plain rollout has neither and runs as before
(every device at once). Groups are saved inventory filters, resolved when asked.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field

from linewatch_ota.store import Base

__all__ = ["GroupRow", "RolloutPlanRow", "WaveRow"]


class RolloutPlanRow(Base, table=True):
    """How a rollout proceeds: its gate, schedule and which wave is open."""

    __tablename__ = "ota_rollout_plans"

    rollout_id: str = Field(primary_key=True, max_length=32)
    #: ``{"cycles", "confidence", "method", "max_wait_s"}`` ("{}": no gate).
    gate_json: str = Field(default="{}", sa_type=sa.Text)
    #: ``{"start_at", "time_zone", "windows", "idle_s", "line_idle"}``.
    schedule_json: str = Field(default="{}", sa_type=sa.Text)
    #: Devices left out because they already report the target version.
    skipped_json: str = Field(default="[]", sa_type=sa.Text)
    #: The wave now running, soaking or gated.
    current_wave: int = 0


class WaveRow(Base, table=True):
    """One wave of a rollout and where it is."""

    __tablename__ = "ota_rollout_waves"

    rollout_id: str = Field(primary_key=True, max_length=32)
    index: int = Field(primary_key=True)
    size: int
    error_threshold: float
    soak_s: int
    #: pending, running, soaking, gating, passed, regressed.
    state: str = Field(max_length=16)
    started_at: float | None = None
    #: When its last update reached a terminal state (the soak starts).
    installed_at: float | None = None
    #: Failed count in this wave when last resumed (auto-pause needs more).
    failed_baseline: int = 0
    #: The gate's per-device numbers (JSON list), once it ran.
    gate_json: str = Field(default="[]", sa_type=sa.Text)


class GroupRow(Base, table=True):
    """A saved inventory filter."""

    __tablename__ = "ota_groups"

    name: str = Field(primary_key=True, max_length=64)
    #: ``{"hardware", "firmware_versions", "lines", "tags", "attributes", "prefix"}``.
    filter_json: str = Field(sa_type=sa.Text)
    created_at: float
