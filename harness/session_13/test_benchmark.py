"""Exercise 1: benchmark (a fake asynchronous GPU stands in for CUDA where there is none)."""
import json
import time

import pytest
import torch

from harness.autograder.checks import expect, expect_equal

pytestmark = pytest.mark.exercise("benchmark")

KERNEL_MS = 15.0


def test_waits_for_the_device(nb, fake_gpu):
    result = nb.benchmark(lambda: fake_gpu.launch(KERNEL_MS), device="cuda", warmup=2, repeats=8)
    expect(0.6 * KERNEL_MS <= result["median_ms"] <= 4 * KERNEL_MS,
           f"on a (simulated) GPU whose kernel takes {KERNEL_MS:g} ms, the median time per call is about that",
           got=f"{result['median_ms']:.3f} ms", hint="a CUDA call returns as soon as the kernel is queued: call "
           "synchronize(device) after fn() and before you stop the clock, in every timed call; without it you time "
           "only the launch")
    expect(fake_gpu.syncs >= 8, "the device is synchronised at least once per timed call", got=fake_gpu.syncs,
           hint="synchronize(device) after each fn(), inside the timed region")


def test_queue_drained_before_the_clock_starts(nb, fake_gpu):
    calls = {"n": 0}

    def fn():  # the first (warm-up) call queues a long kernel, as a first compiled call does
        calls["n"] += 1
        fake_gpu.launch(300.0 if calls["n"] == 1 else 5.0)

    result = nb.benchmark(fn, device="cuda", warmup=2, repeats=6)
    expect(max(result["times_ms"]) < 100, "the warm-up's queued GPU work is not billed to the first timed call",
           got=f"times {[round(t, 1) for t in result['times_ms']]} ms",
           hint="after the warm-up loop, synchronize(device) once before the first timed call starts its clock")


def test_warm_up_calls_are_not_timed(nb):
    calls = {"n": 0}

    def fn():  # the first call "compiles"
        calls["n"] += 1
        time.sleep(0.25 if calls["n"] == 1 else 0.002)

    result = nb.benchmark(fn, device="cpu", warmup=2, repeats=6)
    expect_equal(calls["n"], 8, "calls of fn with warmup=2, repeats=6 (exactly warmup + repeats)",
                 hint="warmup untimed calls, then repeats timed calls, one sample each")
    expect_equal(len(result["times_ms"]), 6, "samples in times_ms (one per timed call)")
    expect(max(result["times_ms"]) < 100, "the first (compiling) call is a warm-up call, never a sample",
           got=f"times {[round(t, 1) for t in result['times_ms']]} ms",
           hint="run fn() warmup times before timing anything, and keep those calls out of times_ms")


def test_median_and_spread(nb):
    pattern = [2.0] * 8 + [40.0] * 2  # ms: most calls fast, two slow ones (a GC pause, a busy neighbour)
    calls = {"n": 0}

    def fn():
        time.sleep(pattern[(calls["n"] - 1) % len(pattern)] / 1000.0 if calls["n"] else 0.0)
        calls["n"] += 1

    result = nb.benchmark(fn, device="cpu", warmup=1, repeats=10)
    times = result["times_ms"]
    expect(1.5 <= result["median_ms"] < 8, "median_ms is the median of the samples (8 calls of 2 ms, 2 of 40 ms)",
           got=f"{result['median_ms']:.2f} ms (mean of the samples {sum(times) / len(times):.2f} ms)",
           hint="np.percentile(times, 50), not the mean: a few slow calls must not move it")
    expect(result["mean_ms"] > result["median_ms"] + 3, "mean_ms is the mean of the samples",
           got=f"mean {result['mean_ms']:.2f}, median {result['median_ms']:.2f}")
    expect(result["iqr_ms"] < 10, "iqr_ms is the 75th minus the 25th percentile (two outliers in ten barely move it)",
           got=f"{result['iqr_ms']:.2f} ms", hint="np.percentile(times, 75) - np.percentile(times, 25); the standard "
           "deviation is not a robust spread")
    expect(result["min_ms"] <= result["median_ms"] <= result["max_ms"] and result["max_ms"] > 30,
           "min_ms <= median_ms <= max_ms, and max_ms is the slowest sample", got=result)
    expect(abs(result["median_ms"] - sorted(times)[4] / 2 - sorted(times)[5] / 2) < 1e-6,
           "median_ms is the median of the times_ms you return (in milliseconds)",
           got=f"median {result['median_ms']:.4f}, samples {[round(t, 3) for t in times]}")
    json.dumps(result)  # plain Python numbers: the bench writes them to JSON
    expect(isinstance(result["median_ms"], float) and all(isinstance(t, float) for t in times),
           "times are Python floats", got=type(result["median_ms"]).__name__)
    expect_equal((result["warmup"], result["repeats"], result["device"]), (1, 10, "cpu"),
                 "warmup, repeats and device in the result")


def test_cuda_events_are_fine_too(nb, fake_gpu):
    """Whatever clock you use on CUDA (synchronize + perf_counter, or CUDA events), the numbers must be right."""
    result = nb.benchmark(lambda: fake_gpu.launch(KERNEL_MS), device=torch.device("cuda"), warmup=1, repeats=5)
    expect_equal(fake_gpu.launches, 6, "calls of fn with warmup=1, repeats=5")
    expect(0.6 * KERNEL_MS <= result["median_ms"] <= 4 * KERNEL_MS, "median per call of a 15 ms kernel, in ms",
           got=f"{result['median_ms']:.3f} ms", hint="milliseconds, not seconds: (stop - start) * 1000")
