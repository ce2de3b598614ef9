"""Exercise 3: ndcg_at_k."""
import math

import pytest
import torch
from sklearn.metrics import ndcg_score

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_shape
from harness.evaluation import ranks_from_scores

from .conftest import expect_unchanged, in_order, oracle_ndcg, per_user, random_case

pytestmark = pytest.mark.exercise("ndcg_at_k")

WIKI = [3, 2, 3, 0, 1, 2]


def test_shape_and_dtype(nb):
    scores, labels = in_order(WIKI, [0, 0, 0, 0, 0, 1])
    out = nb.ndcg_at_k(scores, labels, 6)
    expect_shape(out, (2,), "one NDCG per user")
    expect_dtype(out, torch.float32, "NDCG per user")


def test_wikipedia_example(nb):
    scores, labels = in_order(WIKI)
    expect_close(nb.ndcg_at_k(scores, labels, 6, gain="linear"), torch.tensor([0.960808]),
                 "NDCG@6 of 3, 2, 3, 0, 1, 2, linear gain: 6.861 / 7.141 (ideal order 3, 3, 2, 2, 1, 0)", atol=1e-4,
                 hint="IDCG is the DCG of the same labels sorted in descending order")
    expect_close(nb.ndcg_at_k(scores, labels, 6), torch.tensor([0.948811]),
                 "NDCG@6 of 3, 2, 3, 0, 1, 2, exponential gain: 13.848 / 14.595", atol=1e-4,
                 hint="the same gain for DCG and IDCG: pass `gain` on to both")


def test_matches_sklearn_ndcg_score(nb):
    scores, labels, _ = random_case(6, padding=False, grades=5, density=0.4)
    scores, labels = scores[2:], labels[2:]  # scikit-learn: rows with a relevant item (the zero rows are tested below)
    for k in (1, 5, 10, 30):
        for gain, target in (("linear", labels.numpy()), ("exponential", 2.0 ** labels.numpy() - 1)):
            expected = torch.tensor([ndcg_score(target[b:b + 1], scores[b:b + 1].numpy(), k=k)
                                     for b in range(len(scores))])
            expect_close(nb.ndcg_at_k(scores, labels, k, gain=gain), expected,
                         f"NDCG@{k} with {gain} gain against scikit-learn's ndcg_score on 46 random users",
                         rtol=1e-5, atol=1e-5)


def test_ideal_from_all_relevant_candidates(nb):
    scores, labels = in_order([1, 0, 0, 3])
    expected = 1.0 / (7.0 + 1.0 / math.log2(3))  # DCG@2 = g(1) = 1; ideal top 2 = 3, 1
    expect_close(nb.ndcg_at_k(scores, labels, 2), torch.tensor([expected]),
                 "NDCG@2 of the ranked grades 1, 0, 0, 3: the ideal top 2 is (3, 1), from every relevant candidate",
                 atol=1e-5, hint="IDCG from all the labels (dcg_at_k(labels, labels, k, ...)), not from re-sorting "
                                 "the labels of the retrieved top k: that would call this list perfect")


def test_ideal_is_cut_at_k(nb):
    scores, labels = in_order([1, 1, 1, 0, 1, 1])
    expect_close(nb.ndcg_at_k(scores, labels, 3), torch.tensor([1.0]),
                 "5 relevant items, the top 3 all relevant: NDCG@3 = 1", atol=1e-5,
                 hint="the ideal list is cut at k too: IDCG@3 sums 3 positions, not all 5 relevant items")


def test_perfect_ranking_scores_one(nb):
    _, labels, mask = random_case(7, grades=5, density=0.5)
    scores = labels.float() + torch.rand(labels.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    out = nb.ndcg_at_k(scores, labels, 10, mask)
    expect(bool(((out >= 0) & (out <= 1 + 1e-6)).all()), "NDCG is in [0, 1]", got=out.tolist())
    expect_close(out[2:], torch.ones(len(out) - 2), "a list sorted by label has NDCG 1", atol=1e-5,
                 hint="padding must enter neither DCG nor IDCG; rank the ideal list with the same mask")


def test_no_relevant_item_is_zero_not_nan(nb):
    scores, labels = in_order([0, 0, 0], [0, 2, 0])
    out = nb.ndcg_at_k(scores, labels, 3)
    expect(not bool(torch.isnan(out).any()), "a user with no relevant candidate gets NDCG 0, not NaN (0/0)",
           got=out.tolist(), hint="torch.where(ideal > 0, dcg / ideal.clamp_min(1e-12), 0)")
    expect_close(out, torch.tensor([0.0, 1 / math.log2(3)]), "NDCG of a user with nothing relevant, and of one with "
                 "a single relevant item at position 2", atol=1e-5)


def test_padding_is_not_in_the_ideal(nb):
    scores = torch.tensor([[0.9, 0.1, 0.5]])
    labels = torch.tensor([[1, 3, 0]])
    mask = torch.tensor([[True, False, True]])
    expect_close(nb.ndcg_at_k(scores, labels, 2, mask), torch.tensor([1.0]),
                 "the only real relevant item is first; a padding column with label 3 is not in the ideal list",
                 atol=1e-5, hint="pass the mask to the ideal DCG too")


def test_agrees_with_harness_evaluation(nb):
    """One relevant item per user: NDCG@K = 1 / log2(rank + 2), with the harness's ranks (ties to the lower id)."""
    g = torch.Generator().manual_seed(8)
    users, n = 64, 40
    scores = torch.randint(0, 6, (users, n), generator=g).float()
    targets = torch.randint(1, n, (users,), generator=g)
    exclude = torch.rand(users, n, generator=g) < 0.2
    exclude[torch.arange(users), targets] = False
    exclude[:, 0] = True
    labels = torch.zeros(users, n, dtype=torch.bool)
    labels[torch.arange(users), targets] = True
    ranks = ranks_from_scores(scores, targets, exclude).double()
    for k in (1, 5, 10):
        expected = torch.where(ranks < k, 1.0 / torch.log2(ranks + 2), torch.zeros_like(ranks))
        expect_close(nb.ndcg_at_k(scores, labels, k, ~exclude), expected,
                     f"NDCG@{k} from harness.evaluation's ranks (integer scores: many ties, broken to the lower id)",
                     atol=1e-5, hint="equal scores rank in column order: a stable sort")


def test_random_against_a_loop(nb):
    scores, labels, mask = random_case(9, ties=True)
    for gain in ("exponential", "linear"):
        expect_close(nb.ndcg_at_k(scores, labels, 5, mask, gain), per_user(oracle_ndcg, scores, labels, mask, 5, gain),
                     f"NDCG@5 ({gain}) of 48 users with tied scores and padding", atol=1e-5)


def test_inputs_unchanged(nb):
    scores, labels, mask = random_case(10)
    expect_unchanged(lambda s, l, m: nb.ndcg_at_k(s, l, 5, m), scores, labels, mask, what="ndcg_at_k")
