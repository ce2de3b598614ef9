"""Exercise 3: long_tail_share."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close

pytestmark = pytest.mark.exercise("long_tail_share")

# 10 items; slot 0 is padding. Sorted: 10, 5, 3, 1, 1, 0, ... (total 20).
COUNTS = torch.tensor([0, 0, 3, 0, 10, 1, 0, 5, 0, 1, 0])


def _share(nb, counts, fraction):
    out = nb.long_tail_share(counts, fraction)
    expect(isinstance(out, float), "long_tail_share returns a Python float", got=type(out).__name__,
           hint="wrap the result in float(...) (a 0-d tensor is not a float)")
    return out


def test_head_share(nb):
    expect_close(_share(nb, COUNTS, 0.2), 15 / 20, "share of the top 2 of 10 items (10 + 5 of 20)",
                 hint="sort counts in descending order: the head is the most popular items, whatever their ids")


def test_padding_slot_is_not_an_item(nb):
    # with 11 "items" the head would be ceil(2.2) = 3 items: 18 / 20
    expect_close(_share(nb, COUNTS, 0.2), 0.75, "n_items excludes slot 0",
                 hint="the catalog is counts[1:]; slot 0 is padding")


def test_head_size_rounds_up(nb):
    # ceil(0.25 * 10) = 3 items -> (10 + 5 + 3) / 20
    expect_close(_share(nb, COUNTS, 0.25), 18 / 20, "head of ceil(0.25 * 10) = 3 items",
                 hint="use math.ceil(head_fraction * n_items): a head is never empty")


def test_uniform_popularity(nb):
    counts = torch.cat([torch.zeros(1, dtype=torch.long), torch.full((50,), 7)])
    expect_close(_share(nb, counts, 0.2), 0.2, "with uniform popularity the top 20% take 20%",
                 hint="divide by the total of all items, not of the head")


def test_integer_counts_give_fractions(nb):
    counts = torch.tensor([0, 1, 1, 1], dtype=torch.int32)
    expect_close(_share(nb, counts, 0.34), 2 / 3, "share with int32 counts (ceil(1.02) = 2 of 3 items)",
                 hint="avoid integer division: convert to float before dividing")


def test_counts_are_not_modified(nb):
    counts = torch.tensor([4, 0, 3, 0, 10, 1])  # a non-zero padding slot: the function must ignore it, not zero it
    call_leaving_inputs_unchanged(nb.long_tail_share, counts, 0.2, what="long_tail_share",
                                  hint="skip the padding slot with counts[1:] instead of writing counts[0] = 0")
