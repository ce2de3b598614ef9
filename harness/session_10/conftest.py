"""Fixtures of session 10: FAISS indexes over random embeddings, a recording ranker, bootstrap oracles.

The oracles follow the notebook's definitions (the resampling ``torch.randint(0, U, (R, U), generator=
torch.Generator().manual_seed(seed))`` is part of the specification); session 06's search comes from the
reference, so a learner stuck there can still do this session.
"""
from __future__ import annotations

import faiss
import pytest
import torch

from harness.autograder.loader import load_session
from harness.session_06.conftest import padded, random_queries as queries  # noqa: F401 (used by the tests)


def embeddings(n_items: int, dim: int, seed: int) -> torch.Tensor:
    """float32 (n_items + 1, dim), unit rows, zero padding row."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n_items + 1, dim, generator=g)
    emb = emb / emb.norm(dim=1, keepdim=True)
    emb[0] = 0.0
    return emb


def flat_index(emb: torch.Tensor):
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb[1:].numpy().astype("float32"))
    return index


def reference_candidates(index, q, seen, K) -> torch.Tensor:
    return load_session(6, "solutions").search_excluding_seen(index, q, seen, K)


class RecordingRanker:
    """rank_fn(users, candidates) -> scores from ``score(users, candidates)``; records every call."""

    def __init__(self, score):
        self.score = score
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, users, candidates):
        self.calls.append((users.clone(), candidates.clone()))
        return self.score(users, candidates)


def hashed_scores(users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """A deterministic 'ranker' unrelated to the retriever's order: a hash of (user, item) in [0, 1)."""
    x = (users[:, None] * 7919 + candidates * 104729) % 1009
    return x.float() / 1009.0


def oracle_bootstrap(values: torch.Tensor, R: int, c: float, seed: int) -> tuple[float, float, float]:
    v = values.double()
    idx = torch.randint(0, len(v), (R, len(v)), generator=torch.Generator().manual_seed(seed))
    means = v[idx].mean(dim=1).sort().values
    lo, hi = torch.quantile(means, torch.tensor([(1 - c) / 2, (1 + c) / 2], dtype=torch.float64))
    return float(v.mean()), float(lo), float(hi)


def skewed_values(U: int, seed: int) -> torch.Tensor:
    """Per-user values like NDCG@10: mostly 0, a tail of 1 / log2(r + 2)."""
    g = torch.Generator().manual_seed(seed)
    hit = torch.rand(U, generator=g) < 0.2
    rank = torch.randint(0, 10, (U,), generator=g).double()
    return torch.where(hit, 1.0 / torch.log2(rank + 2.0), torch.zeros(U, dtype=torch.float64)).float()


@pytest.fixture
def reference():
    """Session 10's reference solution."""
    return load_session(10, "solutions")
