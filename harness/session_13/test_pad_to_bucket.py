"""Exercise 5: pad_to_bucket."""
import pytest
import torch

from harness.autograder.checks import expect, expect_equal, expect_shape

pytestmark = pytest.mark.exercise("pad_to_bucket")

BUCKETS = (16, 4, 8)  # deliberately unsorted


def _batch(n):
    g = torch.Generator().manual_seed(n)
    history = torch.randint(1, 50, (n, 6), generator=g)
    mask = torch.rand(n, 6, generator=g) > 0.3
    dense = torch.randn(n, 3, 2, generator=g)
    return history, mask, dense


def test_smallest_bucket_that_holds_the_batch(nb):
    for n, want in ((5, 8), (1, 4), (9, 16), (3, 4)):
        padded, got_n = nb.pad_to_bucket(_batch(n), BUCKETS)
        expect_equal(got_n, n, f"the real batch size returned for a batch of {n}")
        expect_equal(int(padded[0].shape[0]), want, f"padded size of a batch of {n} rows with buckets {BUCKETS}",
                     hint="min(b for b in buckets if b >= n): the buckets may come in any order")


def test_exact_fit_is_not_padded_further(nb):
    padded, n = nb.pad_to_bucket(_batch(8), BUCKETS)
    expect_equal((int(padded[0].shape[0]), n), (8, 8), "a batch of exactly 8 rows with a bucket of 8",
                 hint="b >= n, not b > n")


def test_values_dtypes_and_zero_padding(nb):
    batch = _batch(5)
    copies = [t.clone() for t in batch]
    padded, n = nb.pad_to_bucket(batch, BUCKETS)
    expect(isinstance(padded, (list, tuple)) and len(padded) == 3, "one padded tensor per input tensor",
           got=type(padded).__name__)
    for name, original, out in zip(("history", "mask", "dense"), copies, padded):
        expect_shape(out, (8, *original.shape[1:]), f"padded {name}")
        expect_equal(out.dtype, original.dtype, f"dtype of the padded {name}")
        expect(torch.equal(out[:5], original), f"the first 5 rows of the padded {name} are the batch's rows",
               hint="out[:n] = t")
        expect(not out[5:].any(), f"the padded rows of {name} are zeros (False for the mask: empty histories)",
               got=out[5:].flatten()[:6].tolist(), hint="torch.zeros((size, *t.shape[1:]), dtype=t.dtype, "
               "device=t.device); repeating the last row would make fake users that look real")
    for original, before in zip(batch, copies):
        expect(torch.equal(original, before), "the caller's tensors are unchanged", hint="build new tensors")


def _value_error(call, what: str, hint: str) -> str:
    try:
        result = call()
    except ValueError as err:
        return str(err)
    expect(False, f"{what} raises ValueError", got=f"no error: returned padded size "
           f"{int(result[0][0].shape[0]) if isinstance(result, tuple) and result[0] else result}", hint=hint)


def test_too_large_is_an_error(nb):
    message = _value_error(lambda: nb.pad_to_bucket(_batch(20), BUCKETS), "a batch of 20 rows with buckets up to 16",
                           "if no bucket is >= n, raise ValueError: never truncate the batch or pad past the buckets")
    expect("20" in message and "16" in message, "a batch larger than every bucket raises ValueError naming its size "
           "and the buckets", got=message, hint="never truncate a batch silently: say what to do (split it, or add "
           "a bucket)")


def test_mismatched_sizes_are_an_error(nb):
    history, mask, _ = _batch(5)
    _value_error(lambda: nb.pad_to_bucket((history, mask[:4]), BUCKETS), "tensors of 5 and 4 rows in one batch",
                 "check that every tensor has the same size along dim 0")
