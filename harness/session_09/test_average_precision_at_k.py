"""Exercise 4: average_precision_at_k."""
import pytest
import torch
from sklearn.metrics import average_precision_score

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_shape

from .conftest import expect_unchanged, in_order, oracle_ap, per_user, random_case

pytestmark = pytest.mark.exercise("average_precision_at_k")


def test_shape_and_dtype(nb):
    scores, labels = in_order([1, 0, 1], [0, 0, 1])
    out = nb.average_precision_at_k(scores, labels, 3)
    expect_shape(out, (2,), "one AP per user")
    expect_dtype(out, torch.float32, "AP per user")


def test_hand_worked_example(nb):
    scores, labels = in_order([1, 0, 1, 0, 0, 1])
    expect_close(nb.average_precision_at_k(scores, labels, 6), torch.tensor([(1 + 2 / 3 + 3 / 6) / 3]),
                 "AP@6 of 1, 0, 1, 0, 0, 1: (P@1 + P@3 + P@6) / 3", atol=1e-5,
                 hint="precision at position i (from 1) = relevant items in the first i / i")


def test_divides_by_min_of_k_and_relevant(nb):
    scores, labels = in_order([1, 1, 1, 1, 0, 1, 1])
    expect_close(nb.average_precision_at_k(scores, labels, 3), torch.tensor([1.0]),
                 "6 relevant items, the top 3 all relevant: AP@3 = 1", atol=1e-5,
                 hint="divide by min(k, number of relevant items), not by the number of relevant items")


def test_does_not_divide_by_hits(nb):
    scores, labels = in_order([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    expect_close(nb.average_precision_at_k(scores, labels, 10), torch.tensor([0.25]),
                 "4 relevant items, only one in the top 10 (at position 1): AP@10 = 1 / 4", atol=1e-5,
                 hint="the denominator counts relevant candidates in the whole list (capped at k), not the hits in the top k")


def test_only_the_top_k_count(nb):
    scores, labels = in_order([0, 0, 1], [0, 1, 1])
    expect_close(nb.average_precision_at_k(scores, labels, 2), torch.tensor([0.0, 0.5 / 2]),
                 "AP@2: relevant items below position 2 add no precision term", atol=1e-5, hint="cut at k")


def test_binary_relevance(nb):
    scores, _ = in_order([0, 0, 0, 0])
    graded = nb.average_precision_at_k(scores, torch.tensor([[3, 0, 2, 5]]), 4)
    binary = nb.average_precision_at_k(scores, torch.tensor([[1, 0, 1, 1]]), 4)
    expect_close(graded, binary, "AP is binary: grades 3, 0, 2, 5 give the AP of 1, 0, 1, 1", atol=1e-6,
                 hint="relevant = label > 0; count hits with the flags, not with the grades")


def test_matches_sklearn_average_precision(nb):
    scores, labels, _ = random_case(11, padding=False, grades=4, density=0.3)
    scores, labels = scores[2:], labels[2:]
    n = scores.shape[1]
    expected = torch.tensor([average_precision_score((labels[b] > 0).numpy(), scores[b].numpy())
                             for b in range(len(scores))])
    expect_close(nb.average_precision_at_k(scores, labels, n), expected,
                 f"AP@{n} (the whole list) against scikit-learn's average_precision_score on 46 random users",
                 atol=1e-5)


def test_no_relevant_item_is_zero_not_nan(nb):
    scores, labels = in_order([0, 0, 0], [0, 1, 0])
    out = nb.average_precision_at_k(scores, labels, 3)
    expect(not bool(torch.isnan(out).any()), "a user with no relevant candidate gets AP 0, not NaN", got=out.tolist(),
           hint="clamp the denominator to at least 1: the numerator is 0 anyway")
    expect_close(out, torch.tensor([0.0, 0.5]), "AP of a user with nothing relevant, and of one hit at position 2",
                 atol=1e-5)


def test_padding_is_ignored(nb):
    scores = torch.tensor([[0.9, 5.0, 0.5, 0.1, 0.05]])
    labels = torch.tensor([[1, 1, 0, 1, 2]])
    mask = torch.tensor([[True, False, True, True, False]])
    expect_close(nb.average_precision_at_k(scores, labels, 3, mask), torch.tensor([(1 + 2 / 3) / 2]),
                 "padding columns with labels > 0 are neither hits nor counted relevant: the real list is 1, 0, 1",
                 atol=1e-5)


def test_random_against_a_loop(nb):
    scores, labels, mask = random_case(12, ties=True)
    for k in (1, 5, 30):
        expect_close(nb.average_precision_at_k(scores, labels, k, mask), per_user(oracle_ap, scores, labels, mask, k),
                     f"AP@{k} of 48 users with tied scores and padding", atol=1e-5)


def test_inputs_unchanged(nb):
    scores, labels, mask = random_case(13)
    expect_unchanged(lambda s, l, m: nb.average_precision_at_k(s, l, 5, m), scores, labels, mask,
                     what="average_precision_at_k")
