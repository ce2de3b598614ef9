"""Glue the retrieval sessions share: windowed training data and two-tower evaluation.

The components themselves (dataset and collate of session 02, towers and scoring of
session 03) come through :func:`harness.upstream`, so the same glue runs on the
reference or, in ``python -m harness pipeline --impl sessions``, on your own code.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Subset

from ..evaluation import ScoreFn, evaluate_scores
from ..autograder.loader import upstream


def window_indices(sequences: Sequence, max_len: int, min_history: int = 1) -> np.ndarray:
    """Indices, into a ``NextItemDataset(sequences, max_len, min_history=...)``, of non-overlapping windows.

    A causal model trained on a window of ``max_len`` items gets a target at every
    position, so one example per window ending at t = len - 1, len - 1 - max_len, ...
    covers every position once, instead of once per example that contains it.
    The dataset orders examples by user, then position t = min_history .. len - 1.
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    per_user = np.maximum(lengths - min_history, 0)
    first = np.cumsum(per_user) - per_user  # index of (user, t = min_history)
    out = []
    for user in np.nonzero(per_user)[0]:
        ends = np.arange(lengths[user] - 1, min_history - 1, -max_len)
        out.append(first[user] + ends - min_history)
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def windowed_examples(sequences: Sequence, max_len: int, item_categories: torch.Tensor | None = None):
    """Session 02's ``NextItemDataset``, restricted to non-overlapping windows (see :func:`window_indices`)."""
    dataset = upstream(2).NextItemDataset(sequences, max_len=max_len, item_categories=item_categories)
    return Subset(dataset, window_indices(sequences, max_len).tolist())


def history_batch(sequences: Sequence, users: Sequence[int], max_len: int) -> dict:
    """The last ``max_len`` items of each user, collated (left padding) by session 02's ``collate_sequences``."""
    examples = [{"user_id": int(u), "history": torch.tensor(np.asarray(sequences[int(u)][-max_len:]), dtype=torch.long),
                 "target": 0} for u in users]
    return upstream(2).collate_sequences(examples, padding_side="left")


def two_tower_score_fn(model: torch.nn.Module, dataset, split: str, max_len: int,
                       device: torch.device | str = "cpu") -> ScoreFn:
    """Scores over the whole catalog for users of ``split``, from the history visible before it."""
    sequences = dataset.sequences(upto=split)
    score_all_items = upstream(3).score_all_items

    @torch.no_grad()
    def score(users: torch.Tensor) -> torch.Tensor:
        batch = history_batch(sequences, users.tolist(), max_len)
        return score_all_items(model, batch["history"].to(device), batch["mask"].to(device)).float()

    return score


def evaluate_two_tower(model: torch.nn.Module, dataset, split: str = "test", max_len: int = 50,
                       ks: Sequence[int] = (10, 50), device: torch.device | str = "cpu") -> dict[str, float]:
    """HR/NDCG/Recall@K of a two-tower model on ``split`` (full catalog, seen items excluded)."""
    was_training = model.training
    model.eval()
    try:
        return evaluate_scores(two_tower_score_fn(model, dataset, split, max_len, device), dataset, split, ks=ks,
                               batch_size=256)
    finally:
        model.train(was_training)
