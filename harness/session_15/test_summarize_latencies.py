"""Exercise 4: summarize_latencies (nearest-rank percentiles of successful requests, QPS, errors)."""
import math

import numpy as np
import pytest

from harness.autograder.checks import expect, expect_close, expect_equal

pytestmark = pytest.mark.exercise("summarize_latencies")

KEYS = {"requests", "errors", "error_rate", "qps", "p50", "p95", "p99", "mean", "max"}


def test_keys_and_a_hundred_requests(nb):
    out = nb.summarize_latencies(np.arange(1, 101, dtype=float)[::-1], np.ones(100, bool), 10.0)
    expect(isinstance(out, dict) and KEYS <= set(out), "a dict with every key", got=sorted(out) if isinstance(out, dict)
           else type(out).__name__, hint=f"keys: {sorted(KEYS)}")
    for key, want in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("mean", 50.5), ("max", 100.0), ("qps", 10.0)):
        expect_close(float(out[key]), want, f"latencies 1..100 ms over 10 s: {key}",
                     hint="sort first; the p-th percentile is the value at rank ceil(p * n / 100), counted from 1")
    expect_equal((out["requests"], out["errors"]), (100, 0), "requests and errors")


def test_nearest_rank_not_interpolation(nb):
    lat = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0])
    out = nb.summarize_latencies(lat, np.ones(7, bool), 1.0)
    expect_close(float(out["p50"]), 5.0, "p50 of [1, 2, 3, 5, 7, 8, 9]: the 4th value")
    expect_close(float(out["p95"]), 9.0, "p95 of 7 samples: rank ceil(6.65) = 7, the largest",
                 hint="nearest rank returns a latency that happened; np.percentile's default interpolates (8.7 here): "
                      "use method='inverted_cdf' or index the sorted array")
    expect_equal(list(lat), [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0], "the caller's array is left unsorted",
                 hint="np.sort(x) returns a copy; x.sort() sorts the caller's array in place")
    rng = np.random.default_rng(0)
    many = rng.lognormal(1.0, 0.6, 997)
    out = nb.summarize_latencies(many, np.ones(997, bool), 5.0)
    for p in (50, 95, 99):
        expect_close(float(out[f"p{p}"]), float(np.percentile(many, p, method="inverted_cdf")),
                     f"p{p} of 997 random latencies (nearest rank)")


def test_failures_are_counted_not_timed(nb):
    lat = np.concatenate([np.full(90, 20.0), np.full(10, 0.5)])  # ten fast 4xx answers
    ok = np.concatenate([np.ones(90, bool), np.zeros(10, bool)])
    out = nb.summarize_latencies(lat, ok, 9.0)
    expect_close(float(out["p50"]), 20.0, "percentiles over successful requests only",
                 hint="a fast error would make the service look quicker: latencies[ok]")
    expect_close(float(out["qps"]), 10.0, "QPS counts successful answers per second (90 in 9 s)")
    expect_equal((out["requests"], out["errors"]), (100, 10), "requests and errors")
    expect_close(float(out["error_rate"]), 0.1, "error rate = errors / requests")


def test_nothing_succeeded(nb):
    for lat, ok in ((np.array([]), np.array([], bool)), (np.array([3.0, 4.0]), np.array([False, False]))):
        out = nb.summarize_latencies(lat, ok, 2.0)
        expect(math.isnan(out["p99"]) and math.isnan(out["p50"]) and math.isnan(out["mean"]),
               f"no successful request among {len(lat)}: percentiles and mean are NaN", got=out,
               hint="check n == 0 before indexing the sorted array")
        expect_close(float(out["qps"]), 0.0, "and QPS is 0")
        expect_close(float(out["error_rate"]), 0.0 if len(lat) == 0 else 1.0, "the error rate (0 for no request)")
