"""Fixtures of session 13: the reference notebook, and a fake asynchronous GPU for the timing tests.

``fake_gpu`` stands in for CUDA on a machine without one: a "kernel" launched by a test function is
queued and the call returns at once, as a CUDA call does; ``torch.cuda.synchronize`` (and
``torch.accelerator.synchronize``, which ``torch.utils.benchmark`` uses) waits until the queue is
empty; ``torch.cuda.Event`` records the time the queue reaches it. A timer that does not wait for
the device measures only the launches, as it would on a real GPU.
"""
from __future__ import annotations

import time

import pytest
import torch

from harness.autograder.loader import load_session


@pytest.fixture(scope="session")
def reference():
    """Session 13's reference solution (the provided BrokenScorer, scorer_batch, and reference exercises)."""
    return load_session(13, "solutions")


class FakeGPU:
    """One CUDA stream, simulated on the host clock: ``launch(ms)`` queues work and returns at once."""

    def __init__(self):
        self.busy_until = 0.0
        self.launches = 0
        self.syncs = 0

    def launch(self, ms: float) -> None:
        now = time.perf_counter()
        self.busy_until = max(now, self.busy_until) + ms / 1000.0
        self.launches += 1

    def wait_until(self, t: float) -> None:
        remaining = t - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)

    def synchronize(self, *args, **kwargs) -> None:
        self.syncs += 1
        self.wait_until(self.busy_until)

    def event_class(self):
        gpu = self

        class Event:
            def __init__(self, enable_timing: bool = False, **kwargs):
                self.t = None

            def record(self, stream=None):
                self.t = max(time.perf_counter(), gpu.busy_until)  # when the stream reaches this point

            def synchronize(self):
                gpu.wait_until(self.t)

            def wait(self, stream=None):
                pass

            def query(self):
                return time.perf_counter() >= self.t

            def elapsed_time(self, end) -> float:
                return (end.t - self.t) * 1000.0

        return Event


@pytest.fixture
def fake_gpu(monkeypatch) -> FakeGPU:
    gpu = FakeGPU()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "synchronize", gpu.synchronize)
    monkeypatch.setattr(torch.cuda, "Event", gpu.event_class())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: None)
    if hasattr(torch, "accelerator"):
        monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
        monkeypatch.setattr(torch.accelerator, "synchronize", gpu.synchronize)
    return gpu


def no_cache_entries(fn) -> bool:
    """True when Dynamo holds no compiled code for ``fn`` (it was reset after compiling)."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    code = getattr(fn, "__code__", None) or type(fn).forward.__code__
    return len(_debug_get_cache_entry_list(code)) == 0
