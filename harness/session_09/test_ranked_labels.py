"""Exercise 1: ranked_labels."""
import pytest
import torch

from harness.autograder.checks import expect_dtype, expect_equal, expect_shape

from .conftest import expect_unchanged, random_case, ranked

pytestmark = pytest.mark.exercise("ranked_labels")


def test_shape_and_dtype(nb):
    out = nb.ranked_labels(torch.tensor([[0.2, 0.9, 0.5]]), torch.tensor([[1, 0, 2]]))
    expect_shape(out, (1, 3), "ranked labels of 1 user with 3 candidates")
    expect_dtype(out, torch.float32, "ranked labels from int64 labels",
                 hint="labels.to(dtype=torch.float32): the gains downstream need floating point")
    out = nb.ranked_labels(torch.tensor([[0.2, 0.9, 0.5]]), torch.tensor([[True, False, True]]))
    expect_dtype(out, torch.float32, "ranked labels from bool labels")


def test_sorted_by_descending_score(nb):
    out = nb.ranked_labels(torch.tensor([[0.2, 0.9, 0.5, -1.0]]), torch.tensor([[1, 2, 3, 4]]))
    expect_equal(out, torch.tensor([[2.0, 3.0, 1.0, 4.0]]), "labels in the order of the scores, highest first",
                 hint="argsort(scores, dim=1, descending=True), then labels.gather(1, order)")


def test_ties_keep_column_order(nb):
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (4, 300), generator=g).float()
    labels = torch.arange(1, 301).float().expand(4, -1).clone()  # the label is the column number + 1
    expected = torch.tensor([ranked(scores[b].tolist(), labels[b].tolist()) for b in range(4)])
    expect_equal(nb.ranked_labels(scores, labels), expected,
                 "300 candidates with only 3 distinct scores: equal scores keep their column order",
                 hint="sort with stable=True: an unstable sort returns ties in any order (and on CPU it does)")


def test_padding_goes_last_as_zero(nb):
    scores = torch.tensor([[5.0, 1.0, 9.0, 3.0], [0.5, 0.1, 0.3, 0.2]])
    labels = torch.tensor([[1, 2, 7, 3], [4, 5, 6, 7]])
    mask = torch.tensor([[True, True, False, True], [False, True, True, False]])
    expect_equal(nb.ranked_labels(scores, labels, mask), torch.tensor([[1.0, 3.0, 2.0, 0.0], [6.0, 5.0, 0.0, 0.0]]),
                 "padding (mask False) is ranked after every real candidate, whatever its score, with label 0",
                 hint="scores.masked_fill(~real, -math.inf) before sorting, labels.masked_fill(~real, 0) before gather")


def test_mask_none_means_every_column(nb):
    scores, labels = torch.tensor([[0.1, 0.3, 0.2]]), torch.tensor([[1, 2, 3]])
    expect_equal(nb.ranked_labels(scores, labels, None), nb.ranked_labels(scores, labels, torch.ones(1, 3, dtype=torch.bool)),
                 "mask=None ranks every column")


def test_inputs_unchanged(nb):
    scores, labels, mask = random_case(1)
    expect_unchanged(nb.ranked_labels, scores, labels, mask, what="ranked_labels")


def test_random_against_a_loop(nb):
    scores, labels, mask = random_case(2, ties=True)
    expected = torch.tensor([ranked(scores[b].tolist(), labels[b].tolist(), mask[b].tolist())
                             + [0.0] * int((~mask[b]).sum()) for b in range(len(scores))])
    expect_equal(nb.ranked_labels(scores, labels, mask), expected, "48 users, tied scores and padding")
