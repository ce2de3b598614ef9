"""Test data and independent oracles of session 09.

The oracles are plain per-user Python loops written from the definitions in the notebook (never
the reference solution); the tests also compare with scikit-learn and with ``harness.evaluation``.
"""
from __future__ import annotations

import math

import torch

# ---------------------------------------------------------------------------------------------
# Oracles: one user at a time, from the definitions


def ranked(scores: list[float], labels: list[float], mask: list[bool] | None = None) -> list[float]:
    """Labels of one user's real candidates, best score first, ties to the lower column."""
    real = [j for j in range(len(scores)) if mask is None or mask[j]]
    return [float(labels[j]) for j in sorted(real, key=lambda j: (-scores[j], j))]


def gain_of(rel: float, gain: str) -> float:
    return 2.0 ** rel - 1.0 if gain == "exponential" else rel


def oracle_dcg(rels: list[float], k: int, gain: str = "exponential") -> float:
    return sum(gain_of(r, gain) / math.log2(i + 2) for i, r in enumerate(rels[:k]))


def oracle_ndcg(rels: list[float], k: int, gain: str = "exponential") -> float:
    ideal = oracle_dcg(sorted(rels, reverse=True), k, gain)
    return oracle_dcg(rels, k, gain) / ideal if ideal > 0 else 0.0


def oracle_ap(rels: list[float], k: int) -> float:
    n_relevant = sum(1 for r in rels if r > 0)
    hits, total = 0, 0.0
    for i, r in enumerate(rels[:k]):
        if r > 0:
            hits += 1
            total += hits / (i + 1)
    return total / min(k, n_relevant) if n_relevant else 0.0


def oracle_rr(rels: list[float], k: int | None = None) -> float:
    for i, r in enumerate(rels if k is None else rels[:k]):
        if r > 0:
            return 1.0 / (i + 1)
    return 0.0


def oracle_hr(rels: list[float], k: int) -> float:
    return float(any(r > 0 for r in rels[:k]))


def oracle_auc(scores: list[float], labels: list[float], mask: list[bool] | None = None) -> float:
    real = [j for j in range(len(scores)) if mask is None or mask[j]]
    pos = [scores[j] for j in real if labels[j] > 0]
    neg = [scores[j] for j in real if not labels[j] > 0]
    if not pos or not neg:
        return 0.0
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def per_user(fn, scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, *args) -> torch.Tensor:
    """``fn(ranked labels, *args)`` for every user, as a float64 tensor."""
    out = []
    for b in range(len(scores)):
        m = None if mask is None else mask[b].tolist()
        out.append(fn(ranked(scores[b].tolist(), labels[b].tolist(), m), *args))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Data


def random_case(seed: int, users: int = 48, n: int = 30, grades: int = 4, ties: bool = False,
                padding: bool = True, density: float = 0.25):
    """(scores float32, labels int64, mask bool or None), all (users, n).

    Labels are grades 0..grades-1 (about ``density`` of them > 0); rows 0 and 1 have no relevant real
    candidate. Scores are distinct (or small integers when ``ties``). Padding (about 20% of the columns of
    each row, never fewer than 3 real ones) carries high scores and non-zero labels, so that counting it
    shows.
    """
    g = torch.Generator().manual_seed(seed)
    if ties:
        scores = torch.randint(0, 5, (users, n), generator=g).float()
    else:
        scores = torch.stack([torch.randperm(n, generator=g) for _ in range(users)]).float() / n
    relevant = torch.rand(users, n, generator=g) < density
    labels = torch.randint(1, max(grades, 2), (users, n), generator=g) * relevant
    mask = None
    if padding:
        mask = torch.rand(users, n, generator=g) >= 0.2
        mask[:, :3] = True
        scores = torch.where(mask, scores, scores + 10.0)  # padding scores above every real candidate
        labels = torch.where(mask, labels, torch.full_like(labels, max(grades - 1, 1)))
        labels[:2] = torch.where(mask[:2], 0, labels[:2])
    else:
        labels[:2] = 0
    return scores, labels, mask


def in_order(*label_rows: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores that rank the columns in the given order (column 0 first), and the labels as a tensor."""
    labels = torch.tensor(label_rows)
    n = labels.shape[1]
    return torch.arange(n, 0, -1).float().expand(len(label_rows), n).clone(), labels


def expect_unchanged(fn, *tensors, what: str) -> None:
    """Call ``fn(*tensors)`` and check that no input tensor was modified."""
    from harness.autograder.checks import expect

    copies = [t.clone() if isinstance(t, torch.Tensor) else t for t in tensors]
    fn(*tensors)
    for i, (before, after) in enumerate(zip(copies, tensors)):
        if isinstance(before, torch.Tensor):
            expect(torch.equal(before, after), f"{what} leaves its inputs unchanged (argument {i + 1} was modified)",
                   hint="work on copies: masked_fill (not masked_fill_), clone() before writing into a tensor")
