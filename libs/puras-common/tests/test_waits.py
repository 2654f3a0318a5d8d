"""Timed waits on events and queues: woken by what they wait for, or given up on in time."""

from __future__ import annotations

import asyncio

from puras_common.waits import next_item, woken


async def test_an_event_set_during_the_wait_wakes_it_and_silence_times_out() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await woken(event, 5)
    assert await woken(event, 0)  # set already: no wait at all
    event.clear()
    assert not await woken(event, 0.01)


async def test_a_queue_gives_its_items_in_order_then_none_after_the_wait() -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(1)
    asyncio.get_running_loop().call_later(0.01, queue.put_nowait, 2)
    assert await next_item(queue, 5) == 1
    assert await next_item(queue, 5) == 2
    assert await next_item(queue, 0.01) is None
    queue.put_nowait(3)  # a getter given up on leaves nothing behind to swallow the next item
    assert await next_item(queue, 0) == 3
