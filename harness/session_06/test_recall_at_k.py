"""Exercise 1: recall_at_k."""
import math

import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_shape

pytestmark = pytest.mark.exercise("recall_at_k")


def _recall(nb, topk, relevant, k):
    return nb.recall_at_k(torch.tensor(topk), torch.tensor(relevant), k)


def test_shape_and_dtype(nb):
    out = _recall(nb, [[5, 3, 9, 0], [2, 4, 6, 8]], [[3, 7], [8, 0]], 3)
    expect_shape(out, (2,), "one recall per user")
    expect_dtype(out, torch.float32, "recall per user", hint="divide as floats: found.sum(1).float() / n.float()")


def test_known_values(nb):
    topk, relevant = [[5, 3, 9, 0], [2, 4, 6, 8]], [[3, 7], [8, 0]]
    expect_close(_recall(nb, topk, relevant, 3), torch.tensor([0.5, 0.0]),
                 "recall@3: user 0 finds 3 of {3, 7}; user 1's item 8 is in 4th place", atol=1e-6)
    expect_close(_recall(nb, topk, relevant, 4), torch.tensor([0.5, 1.0]),
                 "recall@4: now user 1 finds 8, its only relevant item", atol=1e-6)


def test_divides_by_the_number_of_relevant_items(nb):
    topk = [list(range(1, 51))]
    out = _recall(nb, topk, [[7, 42]], 50)
    expect_close(out, torch.tensor([1.0]), "a user with 2 relevant items, both in the top 50, has recall 1",
                 atol=1e-6, hint="divide by the number of relevant items (|R|), not by k")


def test_padding_is_not_relevant(nb):
    out = _recall(nb, [[4, 1, 2]], [[4, 0, 0]], 3)
    expect_close(out, torch.tensor([1.0]), "relevant = [4, 0, 0] is one relevant item, found", atol=1e-6,
                 hint="count the relevant items with (relevant != 0).sum(1), not relevant.shape[1]")
    out = _recall(nb, [[4, 0, 0]], [[7, 0]], 3)
    expect_close(out, torch.tensor([0.0]), "a padding 0 in the list does not 'hit' a padding 0 in the relevant row",
                 atol=1e-6, hint="AND the match with (relevant != 0) before counting")


def test_only_the_first_k_count(nb):
    out = _recall(nb, [[1, 2, 3, 4, 5]], [[4, 5]], 3)
    expect_close(out, torch.tensor([0.0]), "items after position k do not count", atol=1e-6,
                 hint="cut the list first: topk[:, :k]")


def test_duplicates_in_the_list_count_once(nb):
    out = _recall(nb, [[3, 3, 3]], [[3, 7]], 3)
    expect_close(out, torch.tensor([0.5]), "recall is |top-k ∩ relevant| / |relevant|: item 3 is found once",
                 atol=1e-6, hint="ask, per relevant item, whether it is anywhere in the list: .any(dim=1) over k")


def test_no_relevant_item_is_nan(nb):
    out = _recall(nb, [[1, 2], [1, 2]], [[0, 0], [2, 0]], 2)
    expect(math.isnan(float(out[0])), "a user with no relevant item has no recall (0/0 = NaN)", got=out.tolist(),
           hint="divide by the count of relevant items without clamping; averages use torch.nanmean")
    expect_close(out[1:], torch.tensor([1.0]), "the other user is unaffected", atol=1e-6)


def test_random_against_a_loop(nb):
    g = torch.Generator().manual_seed(0)
    B, K, R, N = 64, 20, 6, 60
    topk = torch.stack([torch.randperm(N, generator=g)[:K] + 1 for _ in range(B)])
    relevant = torch.stack([torch.randperm(N, generator=g)[:R] + 1 for _ in range(B)])
    lengths = torch.randint(1, R + 1, (B,), generator=g)
    relevant[torch.arange(R)[None, :] >= lengths[:, None]] = 0
    expected = torch.tensor([len(set(topk[b, :10].tolist()) & (set(relevant[b].tolist()) - {0})) / int(lengths[b])
                             for b in range(B)])
    expect_close(nb.recall_at_k(topk, relevant, 10), expected, "recall@10 of 64 random users", atol=1e-6)


def test_more_relevant_items_than_k(nb):
    topk = torch.tensor([[1, 2, 3, 9]])
    relevant = torch.tensor([[1, 2, 3, 4, 5, 6]])
    out = nb.recall_at_k(topk, relevant, k=3)
    expect_close(out, torch.tensor([0.5]), "3 of 6 relevant items in the top 3: recall 3/6",
                 hint="divide by |R| (the number of relevant items), not by min(|R|, k): with min it is 'precision "
                      "among what fits', and a perfect top-3 would look like recall 1 while half the relevant items "
                      "are missing")
