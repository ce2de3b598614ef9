"""Fixtures of session 07: a small feature spec, batches with padding, unknown codes and empty bags.

The spec mimics the feature builder's (``harness.pipeline.features``) without a dataset: three
sparse features, two bags of different widths, three dense columns on very different scales.
"""
from __future__ import annotations

import pytest
from torch.overrides import TorchFunctionMode

from harness.autograder.loader import load_session
from harness.pipeline.features import BagFeature, FeatureSpec, SparseFeature, example_batch

DIM = 6


def tiny_spec() -> FeatureSpec:
    return FeatureSpec(
        sparse=(SparseFeature("user_id", 7, "user"), SparseFeature("gender", 3, "user"),
                SparseFeature("item_id", 11, "item")),
        bags=(BagFeature("history", 11, 5, "user"), BagFeature("genres", 6, 3, "item")),
        dense=("log_item_count", "log_user_count", "log_price"),
        dense_mean=(4.0, -2.0, 30.0), dense_std=(2.0, 0.5, 10.0))


def padded_batch(spec: FeatureSpec | None = None, batch_size: int = 6, seed: int = 0) -> dict:
    """A batch with unknown codes, left padding, an empty bag (row 0) and a full one (row 1)."""
    return example_batch(spec or tiny_spec(), batch_size=batch_size, seed=seed)


def position(spec: FeatureSpec, name: str) -> int:
    return [f.name for f in spec.tables].index(name)


class FactorySpy(TorchFunctionMode):
    """Records the torch functions called inside its ``with`` block (by name)."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


@pytest.fixture
def reference():
    """Session 07's reference solution."""
    return load_session(7, "solutions")


@pytest.fixture
def spec() -> FeatureSpec:
    return tiny_spec()
