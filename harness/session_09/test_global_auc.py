"""Exercise 8: global_auc."""
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.autograder.checks import expect, expect_close, expect_type

from .conftest import random_case

pytestmark = pytest.mark.exercise("global_auc")


def test_returns_a_float(nb):
    out = nb.global_auc(torch.tensor([[0.9, 0.1]]), torch.tensor([[1, 0]]))
    expect_type(out, float, "global_auc's result", hint="return float(...)")
    expect_close(out, 1.0, "one pair, ordered right", atol=1e-6)


def test_pools_pairs_across_users(nb):
    scores = torch.tensor([[10.0, 9.0], [2.0, 1.0]])
    labels = torch.tensor([[1, 0], [1, 0]])
    expect_close(nb.global_auc(scores, labels), 0.75,
                 "each user orders their pair right, but user 1's positive (2) is below user 0's negative (9): "
                 "3 of 4 pooled pairs are right", atol=1e-6,
                 hint="pool every real candidate of every user into one list, then one AUC: not the mean of per-user AUCs")


def test_matches_sklearn_on_the_pooled_candidates(nb):
    scores, labels, mask = random_case(24, ties=True)
    expected = roc_auc_score((labels[mask] > 0).numpy(), scores[mask].numpy())
    expect_close(nb.global_auc(scores, labels, mask), expected,
                 "pooled AUC of 48 users (tied scores, padding) against roc_auc_score of the flattened real candidates",
                 atol=1e-5, hint="select the real candidates with the mask before pooling: scores[real], labels[real]")


def test_no_pair_is_zero(nb):
    out = nb.global_auc(torch.tensor([[0.3, 0.2], [0.1, 0.5]]), torch.tensor([[0, 0], [0, 0]]))
    expect(out == 0.0, "a batch with no relevant candidate has no pair: 0.0, not NaN", got=out)


def test_padding_is_not_pooled(nb):
    scores = torch.tensor([[0.5, 0.6, -5.0], [0.7, 0.1, 9.0]])
    labels = torch.tensor([[1, 0, 0], [0, 1, 1]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    expect_close(nb.global_auc(scores, labels, mask), 0.0,
                 "real candidates: positives 0.5 and 0.1, negatives 0.6 and 0.7, every pair wrong; the padding "
                 "negative at -5 and padding positive at 9 must not be pooled", atol=1e-6,
                 hint="pool scores[real] and labels[real] only, with real = real_candidates(scores, mask)")
