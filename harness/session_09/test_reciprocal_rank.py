"""Exercise 5: reciprocal_rank."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_shape
from harness.evaluation import ranks_from_scores

from .conftest import expect_unchanged, in_order, oracle_rr, per_user, random_case

pytestmark = pytest.mark.exercise("reciprocal_rank")


def test_shape_and_dtype(nb):
    scores, labels = in_order([0, 0, 1], [1, 0, 0])
    out = nb.reciprocal_rank(scores, labels)
    expect_shape(out, (2,), "one reciprocal rank per user")
    expect_dtype(out, torch.float32, "reciprocal rank per user")


def test_first_relevant_position(nb):
    scores, labels = in_order([0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0])
    expect_close(nb.reciprocal_rank(scores, labels), torch.tensor([1 / 3, 1.0, 0.5]),
                 "1 / position of the first relevant item (positions from 1)", atol=1e-6,
                 hint="1 / (argmax + 1): argmax is 0-based")


def test_no_relevant_item_is_zero(nb):
    scores, labels = in_order([0, 0, 0], [0, 0, 1])
    out = nb.reciprocal_rank(scores, labels)
    expect(not bool(torch.isnan(out).any()), "no NaN", got=out.tolist())
    expect_close(out, torch.tensor([0.0, 1 / 3]), "a user with no relevant candidate has reciprocal rank 0", atol=1e-6,
                 hint="argmax of an all-False row is 0, which reads as 'first relevant at position 1': check .any(dim=1)")


def test_cut_off(nb):
    scores, labels = in_order([0, 0, 0, 1])
    expect_close(nb.reciprocal_rank(scores, labels, k=3), torch.tensor([0.0]),
                 "k=3: the first relevant item at position 4 does not count", atol=1e-6, hint="cut the ranked row at k")
    expect_close(nb.reciprocal_rank(scores, labels), torch.tensor([0.25]), "k=None: the whole list counts", atol=1e-6)


def test_first_relevant_not_most_relevant(nb):
    scores, labels = in_order([0, 1, 5])
    expect_close(nb.reciprocal_rank(scores, labels), torch.tensor([0.5]),
                 "grades 0, 1, 5: the first relevant item is at position 2 (its grade does not matter)", atol=1e-6,
                 hint="argmax over (labels > 0), not over the grades")


def test_padding_is_ignored(nb):
    scores = torch.tensor([[9.0, 0.5, 0.4]])
    labels = torch.tensor([[1, 0, 1]])
    mask = torch.tensor([[False, True, True]])
    expect_close(nb.reciprocal_rank(scores, labels, mask=mask), torch.tensor([0.5]),
                 "a padding column with the top score and label 1 is not a hit and takes no position", atol=1e-6)


def test_agrees_with_harness_mrr(nb):
    g = torch.Generator().manual_seed(14)
    users, n = 64, 40
    scores = torch.randint(0, 6, (users, n), generator=g).float()
    targets = torch.randint(1, n, (users,), generator=g)
    exclude = torch.rand(users, n, generator=g) < 0.2
    exclude[torch.arange(users), targets] = False
    exclude[:, 0] = True
    labels = torch.zeros(users, n, dtype=torch.bool)
    labels[torch.arange(users), targets] = True
    ranks = ranks_from_scores(scores, targets, exclude).double()
    expect_close(nb.reciprocal_rank(scores, labels, mask=~exclude), 1.0 / (ranks + 1),
                 "reciprocal rank = 1 / (rank + 1) with harness.evaluation's ranks (ties to the lower id)", atol=1e-6,
                 hint="equal scores rank in column order: a stable sort")


def test_random_against_a_loop(nb):
    scores, labels, mask = random_case(15, ties=True)
    for k in (None, 2, 10):
        expect_close(nb.reciprocal_rank(scores, labels, k, mask), per_user(oracle_rr, scores, labels, mask, k),
                     f"reciprocal rank (k={k}) of 48 users with tied scores and padding", atol=1e-6)


def test_inputs_unchanged(nb):
    scores, labels, mask = random_case(16)
    expect_unchanged(lambda s, l, m: nb.reciprocal_rank(s, l, None, m), scores, labels, mask, what="reciprocal_rank")
