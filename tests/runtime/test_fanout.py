import asyncio

from linewatch.runtime.fanout import FanOut


async def test_every_subscriber_gets_every_item_in_order() -> None:
    hub: FanOut[int] = FanOut(buffer=10)
    async with hub.subscribe() as a, hub.subscribe() as b:
        assert hub.subscribers == 2
        for i in range(3):
            hub.publish(i)
        assert [a.get_nowait() for _ in range(3)] == [0, 1, 2]
        assert [b.get_nowait() for _ in range(3)] == [0, 1, 2]
    assert hub.subscribers == 0
    hub.publish(9)  # nobody listening: nothing kept, nothing raised


async def test_slow_subscriber_loses_oldest_without_blocking_others() -> None:
    drops: list[int] = []
    hub: FanOut[int] = FanOut(buffer=2, on_drop=lambda: drops.append(1))
    async with hub.subscribe() as slow, hub.subscribe() as fast:
        for i in range(5):
            hub.publish(i)
            fast.get_nowait()
        assert [slow.get_nowait(), slow.get_nowait()] == [3, 4]
        assert slow.empty()
    assert hub.dropped == 3
    assert len(drops) == 3
    await asyncio.sleep(0)
