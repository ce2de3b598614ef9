"""Fixtures of session 08: float64 oracles of the losses, candidate pools with planted structure, a tiny DLRM.

The oracles are written from the notebook's definitions (never the reference solution); the DLRM and
the feature spec are session 07's reference pieces, so a learner stuck there can still do this session.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.autograder.loader import load_session
from harness.session_06.conftest import padded  # noqa: F401 (used by the tests)
from harness.pipeline.features import BagFeature, FeatureSpec, SparseFeature, example_batch


def oracle_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Elementwise BCE on logits in float64, from log sigma(x) = -log(1 + e^-x) written two stable ways."""
    x, y = logits.double(), labels.double()
    return torch.where(x >= 0, (1 - y) * x + torch.log1p(torch.exp(-x)), -y * x + torch.log1p(torch.exp(x)))


def oracle_bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Elementwise -log sigma(pos_b - neg_bj) in float64, shaped like ``neg`` ((B,) or (B, N))."""
    diff = (pos.double()[:, None] - neg.double()) if neg.ndim == 2 else pos.double() - neg.double()
    return torch.where(diff >= 0, torch.log1p(torch.exp(-diff)), -diff + torch.log1p(torch.exp(diff)))



def random_pools(B: int, K: int, n_items: int, n_exclude: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(candidates (B, K) distinct per row, exclude (B, n_exclude + 3)): exclude holds some of the candidates,
    some other items, and padding."""
    g = torch.Generator().manual_seed(seed)
    cands = torch.stack([torch.randperm(n_items, generator=g)[:K] + 1 for _ in range(B)])
    rows = []
    for b in range(B):
        inside = cands[b, torch.randperm(K, generator=g)[:n_exclude]].tolist()
        outside = (torch.randperm(n_items, generator=g)[:2] + 1).tolist()
        rows.append(inside + outside)
    return cands, padded(rows, n_exclude + 3)


def popularity(n_items: int, hot: list[int]) -> torch.Tensor:
    """float64 (n_items + 1,): all the mass on the ``hot`` items, equally; 0 elsewhere and at padding."""
    probs = torch.zeros(n_items + 1, dtype=torch.float64)
    probs[hot] = 1.0
    return probs / probs.sum()


def tiny_spec() -> FeatureSpec:
    return FeatureSpec(
        sparse=(SparseFeature("user_id", 7, "user"), SparseFeature("item_id", 11, "item")),
        bags=(BagFeature("history", 11, 4, "user"),),
        dense=("log_item_count", "log_user_count"), dense_mean=(3.0, 2.0), dense_std=(1.5, 0.8))


def group_batch(B: int = 3, G: int = 5, seed: int = 0) -> dict:
    """A batch of B groups of G rows (the positive first), as the workbook's RankingCollate makes them."""
    batch = example_batch(tiny_spec(), batch_size=B * G, seed=seed)
    batch["group_size"] = G
    return batch


def tiny_dlrm(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return load_session(7, "solutions").DLRM(tiny_spec(), dim=4, bottom=(6,), top=(8,))


class FixedLogits(nn.Module):
    """A 'model' returning the given logits whatever the batch (to test what happens after the forward)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits.clone())
        self.calls = 0

    def forward(self, batch) -> torch.Tensor:
        self.calls += 1
        return self.logits * 1.0


@pytest.fixture
def reference():
    """Session 08's reference solution."""
    return load_session(8, "solutions")
