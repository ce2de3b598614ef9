"""Exercise 4: recommend_popular."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_dtype, expect_equal, expect_shape

pytestmark = pytest.mark.exercise("recommend_popular")


def _seen(rows, n_items):
    mask = torch.zeros(len(rows), n_items + 1, dtype=torch.bool)
    for b, items in enumerate(rows):
        mask[b, list(items)] = True
    return mask


def test_shape_and_dtype(nb):
    counts = torch.tensor([0, 5, 3, 9, 1, 7])
    out = nb.recommend_popular(counts, _seen([[], [3]], 5), k=3)
    expect_shape(out, (2, 3), "recommendations for 2 users, k=3")
    expect_dtype(out, torch.int64, "recommended item ids", hint="return indices (item ids), not scores")


def test_most_popular_first(nb):
    counts = torch.tensor([0, 5, 3, 9, 1, 7])
    out = nb.recommend_popular(counts, _seen([[]], 5), k=3)
    expect_equal(out, torch.tensor([[3, 5, 1]]), "a user with no history gets the global top 3, most popular first",
                 hint="sort in descending order of counts")


def test_seen_items_excluded(nb):
    counts = torch.tensor([0, 5, 3, 9, 1, 7])
    out = nb.recommend_popular(counts, _seen([[3, 5], [1]], 5), k=2)
    expect_equal(out, torch.tensor([[1, 2], [3, 5]]), "seen items are skipped and the next popular ones take their place",
                 hint="set the scores of seen items to -inf (masked_fill) before sorting")


def test_no_seen_item_on_random_histories(nb):
    g = torch.Generator().manual_seed(1)
    counts = torch.randint(0, 100, (301,), generator=g)
    seen = torch.rand(64, 301, generator=g) < 0.3
    seen[:, 0] = False
    out = nb.recommend_popular(counts, seen, k=20)
    leaked = seen.gather(1, out)
    if leaked.any():
        b, j = (int(i) for i in leaked.nonzero()[0])
        expect(False, "no user is recommended an item they have seen",
               got=f"user row {b} got item {int(out[b, j])}, which is in their history",
               hint="mask with the user's own row of `seen`: `scores.masked_fill(seen, -inf)`")


def test_padding_never_recommended(nb):
    counts = torch.tensor([1000, 5, 3, 9])  # a buggy count for padding must not matter
    out = nb.recommend_popular(counts, _seen([[]], 3), k=3)
    expect(not (out == 0).any(), "item 0 (padding) is never recommended", got=out.tolist(),
           hint="set column 0 to -inf as well")


def test_ties_broken_by_lower_id(nb):
    counts = torch.cat([torch.zeros(1, dtype=torch.long), torch.full((2000,), 4)])
    counts[1500] = 5
    seen = _seen([[2, 3], []], 2000)
    out = nb.recommend_popular(counts, seen, k=6)
    expect_equal(out, torch.tensor([[1500, 1, 4, 5, 6, 7], [1500, 1, 2, 3, 4, 5]]),
                 "equal counts come out in increasing id order",
                 hint="torch.topk and an unstable sort return ties in no fixed order; use "
                      "torch.sort(..., descending=True, stable=True)")


def test_float_counts(nb):
    counts = torch.tensor([0.0, 0.5, 2.5, 1.5])
    out = nb.recommend_popular(counts, _seen([[]], 3), k=2)
    expect_equal(out, torch.tensor([[2, 3]]), "float popularity scores work too")


def test_too_few_unseen_items(nb):
    counts = torch.tensor([0, 5, 3, 9])
    seen = _seen([[], [1, 2]], 3)
    with pytest.raises(ValueError):
        nb.recommend_popular(counts, seen, k=2)
        expect(False, "a ValueError when a user has fewer than k unseen items",
               got="no error: user row 1 has 1 unseen item and k=2",
               hint="count (~seen[:, 1:]).sum(dim=1) and raise when it is below k")


def test_seen_items_are_excluded_not_just_scored_low(nb):
    # item 1 (seen) and items 4, 5 (never interacted with) all have count 0: a seen item given a
    # low *finite* score (0, or -1e9 next to negative scores) ties with them and wins on its lower id.
    counts = torch.tensor([0, 0, 6, 5, 0, 0])
    out = nb.recommend_popular(counts, _seen([[1]], 5), k=4)
    expect_equal(out, torch.tensor([[2, 3, 4, 5]]), "a seen item never appears, even when unseen items have count 0",
                 hint="masked_fill(seen, -inf): any finite value can tie with (or beat) an unseen item's score")


def test_counts_are_not_modified(nb):
    counts = torch.tensor([0.0, 5, 3, 9, 1, 7], dtype=torch.float64)
    call_leaving_inputs_unchanged(nb.recommend_popular, counts, _seen([[3], [1]], 5), 3,
                                  what="recommend_popular")
