"""Exercise 2: MicroBatcher (a future per request; one call per batch in a thread; failures isolated)."""
import asyncio
import threading
import time

import pytest

from harness.autograder.checks import expect, expect_equal, fail

from .conftest import run_async

pytestmark = [pytest.mark.exercise("MicroBatcher"), pytest.mark.usefixtures("reference_collect")]


async def _with(nb, fn, body, max_batch=8, max_wait_ms=30.0):
    batcher = nb.MicroBatcher(fn, max_batch=max_batch, max_wait_ms=max_wait_ms)
    await batcher.start()
    try:
        out = await body(batcher)
    finally:
        await batcher.stop()
    for value in out if isinstance(out, list) else []:  # a stub's error, gathered with return_exceptions
        if isinstance(value, NotImplementedError):
            raise value
    return out, batcher


def test_each_request_gets_its_own_row(nb):
    calls = []

    def times_ten(items):
        calls.append(list(items))
        return [10 * x for x in items]

    async def body(b):
        return await asyncio.gather(*(b.submit(i) for i in range(20)))

    results, batcher = run_async(_with(nb, times_ten, body))
    expect_equal(list(results), [10 * i for i in range(20)], "20 concurrent requests: each gets fn's row for its item",
                 hint="put (item, future) in the queue; answer each future with the result at its own position")
    expect(max(len(c) for c in calls) > 1, "concurrent requests are batched: fn sees several items per call",
           got=f"fn called {len(calls)} times with sizes {[len(c) for c in calls][:10]}",
           hint="process calls fn once with every item of the batch, not once per item")
    expect(sum(len(c) for c in calls) == 20, "fn sees each item once (no retry when nothing failed)",
           got=sum(len(c) for c in calls))


def test_one_call_per_batch(nb):
    sizes = []

    def record(items):
        sizes.append(len(items))
        return list(items)

    async def body(b):
        return await asyncio.gather(*(b.submit(i) for i in range(8)))

    _, batcher = run_async(_with(nb, record, body, max_batch=8, max_wait_ms=200.0))
    expect_equal(sizes, list(batcher.batch_sizes), "one fn call per batch, with the whole batch",
                 hint="results = await asyncio.to_thread(self.fn, items) with items = every item of the batch")


def test_a_failing_request_does_not_fail_the_others(nb):
    def fragile(items):
        if 13 in items:
            raise ValueError("item 13 breaks the model")
        return [x + 1 for x in items]

    async def body(b):
        return await asyncio.gather(*(b.submit(i) for i in (1, 2, 13, 4, 5)), return_exceptions=True)

    results, _ = run_async(_with(nb, fragile, body, max_batch=8, max_wait_ms=100.0))
    others = [r for i, r in zip((1, 2, 13, 4, 5), results) if i != 13]
    bad = results[2]
    expect(others == [2, 3, 5, 6], "the requests without the bad item get their results",
           got=[repr(r)[:60] for r in others],
           hint="when the batched call raises, call fn on each item alone: only the request that fails alone gets "
                "the error")
    expect(isinstance(bad, ValueError), "the bad request gets its own exception", got=repr(bad)[:100],
           hint="future.set_exception(err) for the item whose own call raised")


def test_every_request_fails_when_fn_always_fails(nb):
    def broken(items):
        raise RuntimeError("the model is broken")

    async def body(b):
        return await asyncio.gather(*(b.submit(i) for i in range(3)), return_exceptions=True)

    results, _ = run_async(_with(nb, broken, body))
    expect(all(isinstance(r, RuntimeError) and "broken" in str(r) for r in results),
           "when fn fails for every item, every request gets fn's error (and none waits forever)",
           got=[repr(r)[:80] for r in results])


def test_the_model_does_not_run_on_the_event_loop(nb):
    loop_threads = []

    def slow(items):
        loop_threads.append(threading.get_ident())
        time.sleep(0.3)
        return list(items)

    async def body(b):
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        t = asyncio.create_task(ticker())
        await b.submit(1)
        t.cancel()
        return ticks, threading.get_ident()

    (ticks, loop_thread), _ = run_async(_with(nb, slow, body, max_wait_ms=1.0))
    expect(loop_threads and loop_threads[0] != loop_thread, "fn runs in a worker thread, not on the event loop",
           hint="await asyncio.to_thread(self.fn, items): while the model runs, the loop accepts the requests that "
                "form the next batch")
    expect(ticks >= 5, "the event loop keeps running during a 0.3 s model call", got=f"{ticks} ticks")


def test_a_cancelled_request_is_skipped(nb):
    def slow(items):
        time.sleep(0.2)
        return [x * 2 for x in items]

    async def body(b):
        tasks = [asyncio.create_task(b.submit(i)) for i in range(3)]
        await asyncio.sleep(0.08)  # the batch is being computed
        tasks[1].cancel()  # that client went away
        return await asyncio.gather(*tasks, return_exceptions=True)

    results, _ = run_async(_with(nb, slow, body, max_wait_ms=20.0))
    expect(isinstance(results[1], asyncio.CancelledError), "the cancelled request stays cancelled",
           got=repr(results[1])[:80])
    expect(results[0] == 0 and results[2] == 4, "the other requests of its batch still get their answers",
           got=[repr(r)[:80] for r in (results[0], results[2])],
           hint="skip futures that are already done (if future.done(): continue): set_result on a cancelled future "
                "raises InvalidStateError and the rest of the batch is never answered")


def test_a_lone_request_is_answered_promptly(nb):
    async def body(b):
        start = time.perf_counter()
        try:
            out = await asyncio.wait_for(b.submit("x"), 3.0)
        except (asyncio.TimeoutError, TimeoutError):
            return None, time.perf_counter() - start
        return out, time.perf_counter() - start

    (out, seconds), _ = run_async(_with(nb, lambda items: list(items), body, max_batch=64, max_wait_ms=20.0))
    if out is None:
        fail("one request with max_batch 64 is answered within max_wait (20 ms)", got="no answer after 3 s",
             hint="submit must return await future, and process must answer every future of its batch")
    expect_equal(out, "x", "the lone request's answer")
    expect(seconds < 1.5, "it is answered promptly", got=f"{seconds * 1e3:.0f} ms")
