"""Fixtures: the OTA service in-process on free ports with a download server; fleets."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from linewatch_dev.ota_simulator import SimulatedFleet
from linewatch_dev.ota_testing import OtaRunner


@pytest.fixture
async def ota(
    tmp_path: Path, database_url: str, mqtt_url: str, topic_prefix: str
) -> AsyncIterator[OtaRunner]:
    """The OTA service running on both databases and the real broker."""
    runner = OtaRunner(
        tmp_path=tmp_path, database_url=database_url, mqtt_url=mqtt_url, topic_root=topic_prefix
    )
    await runner.start()
    try:
        yield runner
    finally:
        await runner.close()


@pytest.fixture
async def fleets() -> AsyncIterator[list[SimulatedFleet]]:
    """Fleets a test starts; all stopped at the end."""
    started: list[SimulatedFleet] = []
    yield started
    for fleet in started:
        with contextlib.suppress(Exception):
            await fleet.stop()
