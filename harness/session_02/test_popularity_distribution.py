"""Exercise 3: popularity_distribution."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close, expect_dtype

pytestmark = pytest.mark.exercise("popularity_distribution")

COUNTS = torch.tensor([7, 1, 4, 0, 16])  # slot 0 is padding: its count must not matter


def test_proportional_to_counts(nb):
    p = nb.popularity_distribution(COUNTS, 1.0)
    expect_close(p, torch.tensor([0, 1, 4, 0, 16]) / 21, "alpha = 1: probabilities proportional to counts",
                 hint="zero the padding slot before normalising")


def test_alpha_is_an_exponent(nb):
    p = nb.popularity_distribution(COUNTS, 0.5)
    expect_close(p, torch.tensor([0, 1, 2, 0, 4]) / 7, "alpha = 0.5: proportional to sqrt(counts)",
                 hint="raise counts to the power alpha (counts ** alpha), do not multiply by alpha")


def test_alpha_zero_is_uniform_over_the_catalog(nb):
    p = nb.popularity_distribution(COUNTS, 0.0)
    expect_close(p, torch.tensor([0, 0.25, 0.25, 0.25, 0.25]), "alpha = 0: uniform over items 1..n_items",
                 hint="0 ** 0 is 1, so items never seen are still sampled uniformly; only padding gets 0")


def test_is_a_distribution(nb):
    counts = torch.randint(0, 10_000, (5001,), generator=torch.Generator().manual_seed(0))
    p = nb.popularity_distribution(counts, 0.75)
    expect(p.is_floating_point(), "probabilities are floating point", got=str(p.dtype))
    expect(float(p[0]) == 0.0, "padding has probability 0", got=float(p[0]))
    expect(bool((p >= 0).all()), "no negative probability")
    expect_close(p.sum(), 1.0, "probabilities sum to 1", atol=1e-9, hint="divide by the sum")


def test_input_not_modified(nb):
    counts = COUNTS.clone()
    nb.popularity_distribution(counts, 1.0)
    expect(torch.equal(counts, COUNTS), "the counts tensor is not modified in place",
           hint="convert (counts.double()) before editing: it makes a copy")


def test_float64_and_input_unchanged(nb):
    counts = torch.tensor([7.0, 1, 4, 0, 16], dtype=torch.float64)
    p = call_leaving_inputs_unchanged(nb.popularity_distribution, counts, 0.75, what="popularity_distribution",
                                      hint="counts.to(torch.float64) returns counts itself when it is float64 "
                                           "already: set probs[0] = 0 on a new tensor (pow, clone), not on the input")
    expect_dtype(p, torch.float64, "the probabilities", hint="float64, as specified: sums of 10^5 float32 "
                 "probabilities drift from 1 by more than torch.multinomial tolerates in long catalogs")
    p = nb.popularity_distribution(torch.tensor([0, 3, 1]), 1.0)
    expect_dtype(p, torch.float64, "the probabilities from int64 counts")
