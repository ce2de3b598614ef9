"""Exercise 6: hit_rate_at_k."""
import pytest
import torch

from harness.autograder.checks import expect_close, expect_dtype, expect_shape
from harness.evaluation import ranks_from_scores

from .conftest import expect_unchanged, in_order, oracle_hr, per_user, random_case

pytestmark = pytest.mark.exercise("hit_rate_at_k")


def test_shape_and_dtype(nb):
    scores, labels = in_order([0, 1, 0], [0, 0, 0])
    out = nb.hit_rate_at_k(scores, labels, 2)
    expect_shape(out, (2,), "one hit per user")
    expect_dtype(out, torch.float32, "hit rate per user", hint="(...).any(dim=1).float()")


def test_hits_and_misses(nb):
    scores, labels = in_order([0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0])
    expect_close(nb.hit_rate_at_k(scores, labels, 3), torch.tensor([1.0, 0.0, 0.0]),
                 "HR@3: a hit at position 2; a relevant item at position 4 (beyond k); nothing relevant", atol=0,
                 hint="look at the first k ranked positions only")


def test_two_hits_are_one_hit(nb):
    scores, labels = in_order([1, 1, 0], [2, 0, 3])
    expect_close(nb.hit_rate_at_k(scores, labels, 3), torch.tensor([1.0, 1.0]),
                 "several relevant items, or a grade above 1, in the top k: still a hit rate of 1", atol=0,
                 hint="any(), not sum(); and test labels > 0 rather than adding grades")


def test_padding_is_ignored(nb):
    scores = torch.tensor([[9.0, 0.5, 0.4, 0.3]])
    labels = torch.tensor([[1, 0, 0, 1]])
    mask = torch.tensor([[False, True, True, True]])
    expect_close(nb.hit_rate_at_k(scores, labels, 2, mask), torch.tensor([0.0]),
                 "a padding column with the top score and label 1 is not a hit (and takes no position)", atol=0)
    expect_close(nb.hit_rate_at_k(scores, labels, 3, mask), torch.tensor([1.0]),
                 "HR@3 of the real list 0, 0, 1 is 1", atol=0)


def test_agrees_with_harness_evaluation(nb):
    g = torch.Generator().manual_seed(17)
    users, n = 64, 40
    scores = torch.randint(0, 6, (users, n), generator=g).float()
    targets = torch.randint(1, n, (users,), generator=g)
    exclude = torch.rand(users, n, generator=g) < 0.2
    exclude[torch.arange(users), targets] = False
    exclude[:, 0] = True
    labels = torch.zeros(users, n, dtype=torch.bool)
    labels[torch.arange(users), targets] = True
    ranks = ranks_from_scores(scores, targets, exclude)
    for k in (1, 5, 10):
        expect_close(nb.hit_rate_at_k(scores, labels, k, ~exclude), (ranks < k).float(),
                     f"HR@{k} from harness.evaluation's ranks (integer scores: ties broken to the lower id)", atol=0,
                     hint="equal scores rank in column order: a stable sort")


def test_random_against_a_loop(nb):
    scores, labels, mask = random_case(18, ties=True)
    for k in (1, 3, 30):
        expect_close(nb.hit_rate_at_k(scores, labels, k, mask), per_user(oracle_hr, scores, labels, mask, k),
                     f"HR@{k} of 48 users with tied scores and padding", atol=0)


def test_inputs_unchanged(nb):
    scores, labels, mask = random_case(19)
    expect_unchanged(lambda s, l, m: nb.hit_rate_at_k(s, l, 5, m), scores, labels, mask, what="hit_rate_at_k")
