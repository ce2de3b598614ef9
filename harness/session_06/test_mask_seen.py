"""Exercise 2: mask_seen."""
import pytest
import torch

from harness.autograder.checks import expect, expect_equal, expect_shape

from .conftest import padded

pytestmark = pytest.mark.exercise("mask_seen")


def _scores(b, n, seed=0):
    return torch.randn(b, n + 1, generator=torch.Generator().manual_seed(seed))


def test_seen_and_padding_are_minus_inf(nb):
    scores = _scores(2, 6)
    out = nb.mask_seen(scores, padded([[3, 5], [1]]))
    expect_shape(out, (2, 7), "masked scores")
    expect(bool(torch.isneginf(out[:, 0]).all()), "column 0 (padding) is -inf", got=out[:, 0].tolist(),
           hint="out[:, 0] = -math.inf")
    expect(bool(torch.isneginf(out[0, [3, 5]]).all() and torch.isneginf(out[1, 1])),
           "each user's seen items are -inf", got=f"user 0: {out[0].tolist()}, user 1: {out[1].tolist()}",
           hint="out.scatter_(1, seen, -math.inf)")


def test_other_scores_unchanged_and_no_cross_user_masking(nb):
    scores = _scores(2, 6)
    out = nb.mask_seen(scores, padded([[3, 5], [1]]))
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[:, 0] = False
    keep[0, [3, 5]] = False
    keep[1, 1] = False
    expect_equal(out[keep], scores[keep], "every other score is left as it was",
                 hint="mask row b with row b's own seen items only; scores[:, seen.flatten()] masks user 1's "
                      "item 3 and 5 too")


def test_input_not_modified(nb):
    scores = _scores(3, 10)
    before = scores.clone()
    nb.mask_seen(scores, padded([[1, 2], [3], []]))
    expect_equal(scores, before, "the caller's score tensor is unchanged",
                 hint="work on scores.clone(); in-place writes (scatter_, masked_fill_, out[...] =) on the input "
                      "change the caller's tensor")


def test_padding_in_seen_lists(nb):
    scores = _scores(3, 8, seed=1)
    out = nb.mask_seen(scores, padded([[2, 0, 0, 0], [], [8, 7, 6, 5]], width=4))
    expect(int(torch.isneginf(out).sum(dim=1)[1]) == 1, "a user with no history loses only column 0",
           got=f"{int(torch.isneginf(out).sum(dim=1)[1])} entries at -inf")
    expect_equal(torch.isneginf(out).sum(dim=1), torch.tensor([2, 1, 5]), "-inf entries per user (padding + seen)")


def test_random_against_a_dense_mask(nb):
    g = torch.Generator().manual_seed(2)
    B, N = 64, 500
    scores = torch.randn(B, N + 1, generator=g)
    dense = torch.rand(B, N + 1, generator=g) < 0.1
    dense[:, 0] = False
    rows = [torch.nonzero(dense[b]).flatten().tolist() for b in range(B)]
    out = nb.mask_seen(scores, padded(rows))
    dense[:, 0] = True
    expect_equal(torch.isneginf(out), dense, "-inf exactly at padding and each user's own seen items")
