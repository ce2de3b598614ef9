"""Exercise 2: item_popularity."""
import time

import pytest
import torch

from harness.autograder.checks import expect, expect_dtype, expect_equal, expect_shape

pytestmark = pytest.mark.exercise("item_popularity")


def test_counts_per_item_id(nb):
    ids = torch.tensor([3, 1, 3, 2, 3, 2])
    counts = nb.item_popularity(ids, n_items=5)
    expect_shape(counts, (6,), "counts for n_items=5",
                 hint="one slot per id 0..n_items: use `minlength=n_items + 1`, so items nobody touched count 0")
    expect_equal(counts, torch.tensor([0, 1, 2, 3, 0, 0]), "interactions per item id")


def test_dtype_is_int64(nb):
    counts = nb.item_popularity(torch.tensor([1, 2, 2]), n_items=3)
    expect_dtype(counts, torch.int64, "counts", hint="counts are integers: `torch.bincount` returns int64")


def test_padding_is_not_counted(nb):
    ids = torch.tensor([0, 0, 1, 0, 2, 0])  # a padded batch: 0 is padding, not an item
    counts = nb.item_popularity(ids, n_items=2)
    expect(int(counts[0]) == 0, "counts[0] is 0: padding is not an item", got=f"counts[0] = {int(counts[0])}",
           hint="set counts[0] = 0 after counting")
    expect_equal(counts[1:], torch.tensor([1, 1]), "counts of the real items")


def test_catalog_tail_included(nb):
    counts = nb.item_popularity(torch.tensor([1, 1]), n_items=1000)
    expect_shape(counts, (1001,), "counts when the last 999 items have no interaction",
                 hint="`torch.bincount(ids)` alone stops at the largest id present; pass `minlength`")


@pytest.mark.time_limit(20)
def test_vectorised(nb):
    ids = torch.randint(1, 50_001, (2_000_000,), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    counts = nb.item_popularity(ids, n_items=50_000)
    seconds = time.perf_counter() - start
    expect_equal(int(counts.sum()), 2_000_000, "counts sum to the number of ids")
    expect(seconds < 3.0, "counting 2M interactions takes well under a second", got=f"{seconds:.1f} s",
           hint="no Python loop over interactions: `torch.bincount` does it in one call")
