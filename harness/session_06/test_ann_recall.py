"""Exercise 7: ann_recall."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_type

pytestmark = pytest.mark.exercise("ann_recall")


def _recall(nb, approx, exact):
    return nb.ann_recall(torch.tensor(approx), torch.tensor(exact))


def test_identical_lists(nb):
    out = _recall(nb, [[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 5, 6]])
    expect_type(out, float, "ann_recall's result", hint="return a Python float: float(...)")
    expect_close(out, 1.0, "the exact search's own lists have recall 1")


def test_order_does_not_matter(nb):
    out = _recall(nb, [[3, 1, 2], [6, 4, 5]], [[1, 2, 3], [4, 5, 6]])
    expect_close(out, 1.0, "the same items in another order still have recall 1",
                 hint="membership, not position: (approx == exact) compares rank by rank")


def test_partial_overlap(nb):
    out = _recall(nb, [[1, 9, 3, 8]], [[1, 2, 3, 4]])
    expect_close(out, 0.5, "2 of the exact top-4 found")


def test_padding_in_the_exact_list(nb):
    out = _recall(nb, [[4, 5, 9, 8]], [[4, 5, 0, 0]])
    expect_close(out, 1.0, "the exact list holds 2 items (then padding), both found",
                 hint="divide by the number of real items in the exact list, not by k")
    out = _recall(nb, [[7, 0, 0]], [[4, 0, 0]])
    expect_close(out, 0.0, "padding 0s in both lists are not a match",
                 hint="ignore padding: only exact ids != 0 are items to find")


def test_averaged_per_query(nb):
    out = _recall(nb, [[1, 2, 3, 4], [9, 8, 7, 6]], [[1, 2, 3, 4], [5, 0, 0, 0]])
    expect_close(out, 0.5, "mean of per-query recalls (1.0 and 0.0), not hits over all exact items (4 / 5)",
                 hint="compute each query's recall, then average over queries")


def test_queries_with_nothing_to_find_are_left_out(nb):
    out = _recall(nb, [[1, 2], [3, 4]], [[1, 2], [0, 0]])
    expect(out == pytest.approx(1.0), "a query whose exact list is all padding is left out of the mean",
           got=out, hint="per-query recall is NaN there (0/0); average with torch.nanmean")
