"""Exercise 1: item_log_q."""
import math

import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close, expect_dtype, expect_shape

pytestmark = pytest.mark.exercise("item_log_q")

COUNTS = torch.tensor([99, 3, 0, 1])  # slot 0 is padding: its count must not enter the normalisation


def test_values(nb):
    out = nb.item_log_q(COUNTS)
    expect_shape(out, (4,), "log q for 3 items + padding")
    expected = torch.tensor([0.0, math.log(4 / 7), math.log(1 / 7), math.log(2 / 7)])
    expect_close(out, expected, "log((c + 1) / sum(c + 1)) over items 1..n, 0 for padding", atol=1e-6,
                 hint="add one to every item's count, normalise over counts[1:] only, natural log")


def test_finite_for_unseen_items(nb):
    out = nb.item_log_q(torch.tensor([0, 5, 0, 0]))
    expect(bool(torch.isfinite(out).all()), "log q is finite even for items never seen in training",
           got=out.tolist(), hint="add-one smoothing: log(0) would be -inf and break the loss")


def test_is_a_log_distribution(nb):
    counts = torch.randint(0, 1000, (501,), generator=torch.Generator().manual_seed(0))
    out = nb.item_log_q(counts)
    expect_dtype(out, torch.float32, "log q", hint="return .float()")
    expect_close(out[1:].double().exp().sum(), 1.0, "exp(log q) sums to 1 over the items", atol=1e-4,
                 hint="natural log (torch.log), not log10 or log2")
    expect(float(out[0]) == 0.0, "the padding slot holds 0", got=float(out[0]))


def test_counts_are_not_modified(nb):
    counts = torch.tensor([0.0, 4, 0, 9, 2], dtype=torch.float64)
    out = call_leaving_inputs_unchanged(nb.item_log_q, counts, what="item_log_q",
                                        hint="counts[1:].to(torch.float64) is a view of a float64 input: write "
                                             "`counts[1:].to(torch.float64) + 1.0` (a new tensor), never `+= 1`")
    expect_dtype(out, torch.float32, "log q from float64 counts")
