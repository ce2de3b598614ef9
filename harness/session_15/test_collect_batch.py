"""Exercise 1: collect_batch (up to max_batch items; at most max_wait_ms after the first; never unbounded)."""
import asyncio
import time

import pytest

from harness.autograder.checks import expect, expect_equal

from .conftest import run_async

pytestmark = pytest.mark.exercise("collect_batch")


async def _queue(items):
    q = asyncio.Queue()
    for item in items:
        q.put_nowait(item)
    return q


def test_a_full_batch_without_waiting(nb):
    collect_batch = nb.collect_batch  # (the first look-up loads the notebook: not part of the timing)

    async def main():
        q = await _queue(range(10))
        start = time.perf_counter()
        batch = await collect_batch(q, 4, 1000.0)
        return batch, time.perf_counter() - start, q.qsize()

    batch, seconds, left = run_async(main())
    expect_equal(list(batch), [0, 1, 2, 3], "10 waiting items, max_batch 4: the first four, in order",
                 hint="take items already waiting with queue.get_nowait(); stop at max_batch")
    expect(seconds < 0.5, "a full batch is returned at once, not after max_wait (1 s here)",
           got=f"{seconds * 1e3:.0f} ms", hint="wait only while the batch is not full")
    expect_equal(left, 6, "items left in the queue for the next batch")


def test_waiting_items_are_taken_even_with_zero_wait(nb):
    async def main():
        q = await _queue(["a", "b", "c"])
        return await nb.collect_batch(q, 8, 0.0)

    expect_equal(list(run_async(main())), ["a", "b", "c"], "max_wait 0: every item already in the queue joins",
                 hint="try queue.get_nowait() before looking at the deadline")


def test_a_lone_request_waits_at_most_max_wait(nb):
    async def main():
        q = await _queue(["only"])
        start = time.perf_counter()
        batch = await nb.collect_batch(q, 8, 80.0)
        return batch, time.perf_counter() - start

    batch, seconds = run_async(main())
    expect_equal(list(batch), ["only"], "one request and nothing else: a batch of one")
    expect(seconds >= 0.06, "a lone request waits up to max_wait (80 ms) for company", got=f"{seconds * 1e3:.0f} ms",
           hint="deadline = loop.time() + max_wait_ms / 1000 (milliseconds, not seconds); wait until then")
    expect(seconds < 0.6, "and not much longer: the batch closes at the deadline", got=f"{seconds * 1e3:.0f} ms",
           hint="asyncio.wait_for(queue.get(), remaining) with remaining = deadline - loop.time()")


def test_requests_arriving_during_the_wait_join(nb):
    async def main():
        q = asyncio.Queue()

        async def producer():
            for i in range(1, 4):
                await asyncio.sleep(0.02)
                q.put_nowait(i)

        task = asyncio.create_task(producer())
        q.put_nowait(0)
        start = time.perf_counter()
        batch = await nb.collect_batch(q, 4, 2000.0)
        seconds = time.perf_counter() - start
        await task
        return batch, seconds

    batch, seconds = run_async(main())
    expect_equal(list(batch), [0, 1, 2, 3], "requests arriving within max_wait join the batch, in order")
    expect(seconds < 1.0, "the batch closes as soon as it is full (4 items after ~60 ms), not at the deadline (2 s)",
           got=f"{seconds * 1e3:.0f} ms")


def test_a_steady_trickle_cannot_hold_the_batch(nb):
    async def main():
        q = asyncio.Queue()
        stop = asyncio.Event()

        async def trickle():
            i = 1
            while not stop.is_set():
                await asyncio.sleep(0.015)
                q.put_nowait(i)
                i += 1

        task = asyncio.create_task(trickle())
        q.put_nowait(0)
        start = time.perf_counter()
        try:
            batch = await asyncio.wait_for(nb.collect_batch(q, 1000, 60.0), 2.0)
        except (asyncio.TimeoutError, TimeoutError):
            batch = None
        seconds = time.perf_counter() - start
        stop.set()
        await task
        return batch, seconds

    batch, seconds = run_async(main())
    expect(batch is not None and seconds < 0.5,
           "a request every 15 ms, max_wait 60 ms: the batch closes about 60 ms after its first request",
           got="still waiting after 2 s" if batch is None else f"{seconds * 1e3:.0f} ms",
           hint="fix the deadline once, from the first item; a timeout restarted at every arrival never expires "
                "under steady traffic, and the first request waits forever")
    expect(batch is None or 2 <= len(batch) <= 12, "it holds the requests that arrived within those 60 ms",
           got=None if batch is None else f"{len(batch)} items")


def test_an_empty_queue_is_waited_on(nb):
    async def main():
        q = asyncio.Queue()
        task = asyncio.create_task(nb.collect_batch(q, 4, 10.0))
        await asyncio.sleep(0.15)
        early = task.done()
        if early:
            return early, task.result()
        q.put_nowait("late")
        return early, await asyncio.wait_for(task, 2.0)

    early, batch = run_async(main())
    expect(not early, "with nothing queued, collect_batch waits for the first item (no empty batch, no busy loop)",
           got=f"returned {batch!r} at once", hint="batch = [await queue.get()]: an idle server sleeps here")
    expect_equal(list(batch), ["late"], "the item that finally arrives")
