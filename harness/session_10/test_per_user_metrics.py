"""Exercise 2: per_user_metrics (lists with the held-out item at known positions)."""
import math

import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close, expect_dtype, expect_shape
from harness.evaluation import metrics_from_ranks

pytestmark = pytest.mark.exercise("per_user_metrics")


def _lists(positions, L=15, seed=0):
    """Lists of length L with the target (item 1000 + b) at the given 0-based positions (None: absent)."""
    g = torch.Generator().manual_seed(seed)
    ranked = torch.randint(1, 900, (len(positions), L), generator=g)
    targets = torch.arange(1000, 1000 + len(positions))
    for b, p in enumerate(positions):
        if p is not None:
            ranked[b, p] = targets[b]
    return ranked, targets


def _ndcg(p, k):
    return 0.0 if p is None or p >= k else 1.0 / math.log2(p + 2)


def test_keys_shapes_dtypes(nb):
    ranked, targets = _lists([0, 3, None])
    out = nb.per_user_metrics(ranked, targets, (5, 10))
    expect(list(out) == ["HR@5", "NDCG@5", "HR@10", "NDCG@10"], "keys HR@k, NDCG@k for each k, in the order of ks",
           got=str(list(out)))
    for key, value in out.items():
        expect_shape(value, (3,), f"{key}: one value per user", hint="keep the metrics per user: no .mean()")
        expect_dtype(value, torch.float32, key)


def test_values_by_position(nb):
    positions = [0, 1, 4, 9, 10, 14, None]
    ranked, targets = _lists(positions)
    out = nb.per_user_metrics(ranked, targets, (1, 5, 10))
    for k in (1, 5, 10):
        expect_close(out[f"HR@{k}"], torch.tensor([float(p is not None and p < k) for p in positions]),
                     f"HR@{k} for held-out items at positions {positions}", atol=1e-6,
                     hint="scores must DECREASE along the list (e.g. L - position): the first entry is the best")
        expect_close(out[f"NDCG@{k}"], torch.tensor([_ndcg(p, k) for p in positions]),
                     f"NDCG@{k} = 1 / log2(position + 2) for positions {positions} (0 beyond k)", atol=1e-6,
                     hint="one relevant item: the ideal DCG is 1 when it is in the list")


def test_padded_lists_and_k_beyond_the_list(nb):
    ranked = torch.tensor([[5, 7, 0, 0], [0, 0, 0, 0], [3, 9, 4, 0]])
    targets = torch.tensor([7, 8, 4])
    out = nb.per_user_metrics(ranked, targets, (2, 50))
    expect_close(out["HR@2"], torch.tensor([1.0, 0.0, 0.0]), "HR@2 of padded lists", atol=1e-6)
    expect_close(out["HR@50"], torch.tensor([1.0, 0.0, 1.0]), "HR@50 of lists of 4: the whole list counts", atol=1e-6)
    expect_close(out["NDCG@50"], torch.tensor([1 / math.log2(3), 0.0, 0.5]), "NDCG@50 of lists of 4", atol=1e-6)


def test_agrees_with_the_harness(nb):
    g = torch.Generator().manual_seed(3)
    positions = [int(p) if p < 30 else None for p in torch.randint(0, 45, (200,), generator=g)]
    ranked, targets = _lists(positions, L=30, seed=4)
    out = nb.per_user_metrics(ranked, targets, (10, 30))
    ranks = torch.tensor([30 if p is None else p for p in positions])
    want = metrics_from_ranks(ranks, ks=(10, 30), list_length=30)
    for key in ("HR@10", "NDCG@10", "HR@30", "NDCG@30"):
        expect_close(out[key].double().mean(), torch.tensor(want[key]), f"mean {key} over 200 users vs harness.evaluation",
                     atol=1e-6)


def test_inputs_unchanged(nb):
    ranked, targets = _lists([2, None, 0])
    call_leaving_inputs_unchanged(nb.per_user_metrics, ranked, targets, (3,), what="per_user_metrics")
