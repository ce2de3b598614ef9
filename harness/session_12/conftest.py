"""Fixtures of session 12: vectors with planted hierarchical structure, and a deterministic k-means spy.

``SpyKmeans`` stands in for the notebook's provided ``kmeans`` (patched into the notebook's globals):
it records every call (its input, k, seed, niter) and returns a k-means answer that depends on
nothing but its arguments, so a learner's ``residual_kmeans`` can be compared call by call with
the reference's.
"""
from __future__ import annotations

import pytest
import torch

from harness.autograder.loader import load_session


@pytest.fixture
def reference():
    """Session 12's reference solution."""
    return load_session(12, "solutions")


def planted_vectors(n_top: int = 4, n_sub: int = 4, per: int = 12, dim: int = 16, seed: int = 0) -> torch.Tensor:
    """float32 (n_top * n_sub * per, dim): residual structure, as residual k-means assumes it.

    n_top far-apart centres, each shifted by one of n_sub offsets shared by all centres (what level 2
    can find in the residuals of level 1), plus small noise.
    """
    g = torch.Generator().manual_seed(seed)
    top = 4.0 * torch.randn(n_top, dim, generator=g)
    sub = 1.0 * torch.randn(n_sub, dim, generator=g)
    centers = (top[:, None, :] + sub[None, :, :]).reshape(-1, dim)
    points = centers.repeat_interleave(per, dim=0) + 0.15 * torch.randn(len(centers) * per, dim, generator=g)
    return points[torch.randperm(len(points), generator=g)]


class SpyKmeans:
    """Deterministic stand-in for ``kmeans``: centroids = k rows of x chosen by the seed, nearest assignment."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, x, k, *, seed=0, niter=20):
        x = x.detach().to("cpu", torch.float32)
        self.calls.append({"x": x.clone(), "k": int(k), "seed": int(seed), "niter": int(niter)})
        rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(1000 + int(seed)))[:k]
        centroids = x[rows].clone() + 0.01 * (torch.arange(k, dtype=torch.float32)[:, None] + 1)
        codes = torch.cdist(x.double(), centroids.double()).argmin(dim=1)
        return centroids, codes


def spy_kmeans(monkeypatch, nb) -> SpyKmeans:
    spy = SpyKmeans()
    monkeypatch.setitem(nb._globals(), "kmeans", spy)
    return spy
