"""Fixtures of session 15: the tiny bundle (as in session 14), the reference, an asyncio runner.

Async code is run in a fresh event loop on a helper thread (``run_async``), which works both under
pytest and in a notebook's inline check (whose kernel already runs a loop). Tests of one exercise
use the reference for the others: ``collect_batch`` inside the micro-batcher, ``rank_candidates``
(session 14) inside ``rank_batch``.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.autograder.loader import load_session


def run_async(coroutine, timeout: float = 8.0):
    """Run ``coroutine`` in a fresh loop on a helper thread; fail clearly if it waits more than ``timeout`` s."""
    from harness.autograder.checks import fail

    async def bounded():
        try:
            return await asyncio.wait_for(coroutine, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return _TIMED_OUT

    with ThreadPoolExecutor(1) as pool:
        out = pool.submit(asyncio.run, bounded()).result()
    if out is _TIMED_OUT:
        fail(f"the code under test did not finish within {timeout:g} s: it waits for something that never comes",
             hint="look for an await without a deadline (queue.get() with no timeout, a future nobody answers), "
                  "or milliseconds used as seconds")
    return out


_TIMED_OUT = object()


@pytest.fixture(scope="session")
def reference():
    return load_session(15, "solutions")


@pytest.fixture(scope="session")
def reference14():
    return load_session(14, "solutions")


@pytest.fixture(scope="session")
def bundle_path():
    from harness.serving.testing import tiny_bundle

    return tiny_bundle()


@pytest.fixture(scope="session")
def served_bundle(bundle_path):
    """The tiny bundle loaded once and prepared as a server prepares it (eval mode, no gradients)."""
    from harness.serving.bundle import load_for_inference

    return load_for_inference(bundle_path)


@pytest.fixture
def reference_collect(nb, reference, monkeypatch):
    """The micro-batcher's worker uses the reference's collect_batch (graded by its own tests)."""
    monkeypatch.setitem(nb._globals(), "collect_batch", reference.collect_batch)
