"""Exercise 3: bootstrap_ci (the resampling is specified, so the interval is checked exactly)."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close

from .conftest import oracle_bootstrap, skewed_values

pytestmark = pytest.mark.exercise("bootstrap_ci")


def test_returns_three_floats(nb):
    out = nb.bootstrap_ci(skewed_values(100, 0), n_resamples=50)
    expect(isinstance(out, tuple) and len(out) == 3 and all(isinstance(x, float) for x in out),
           "returns (mean, low, high) as Python floats", got=repr(out)[:120], hint="float(...) of each tensor")


def test_matches_the_specified_resampling(nb):
    values = skewed_values(943, 1)
    for R, c, seed in ((1000, 0.95, 0), (400, 0.9, 3)):
        mean, low, high = nb.bootstrap_ci(values, n_resamples=R, confidence=c, seed=seed)
        want = oracle_bootstrap(values, R, c, seed)
        expect_close(torch.tensor(mean), torch.tensor(want[0]), "the mean of the values", atol=1e-9)
        expect_close(torch.tensor([low, high]), torch.tensor(want[1:]),
                     f"the {c:.0%} interval with R = {R}, seed {seed}: the ({(1 - c) / 2:.3f}, {(1 + c) / 2:.3f}) "
                     "quantiles of the R resampled means", atol=1e-9,
                     hint="idx = torch.randint(0, U, (R, U), generator=torch.Generator().manual_seed(seed)); "
                          "means = values.double()[idx].mean(1); torch.quantile(means, [(1 - c) / 2, (1 + c) / 2])")


def test_interval_is_sensible(nb):
    values = skewed_values(2000, 2)
    mean, low, high = nb.bootstrap_ci(values, seed=1)
    se = float(values.double().std() / len(values) ** 0.5)
    expect(low < mean < high, "the interval contains the mean", got=f"{low:.4f} < {mean:.4f} < {high:.4f}?")
    width = high - low
    expect(3.0 * se < width < 4.8 * se, "a 95% interval of a mean of 2,000 users is about 2 x 1.96 standard errors wide",
           expected=f"about {3.92 * se:.4f}", got=f"{width:.4f}",
           hint="resample U users WITH replacement (torch.randint); a permutation of the same users has no spread")


def test_seeded_and_global_rng_untouched(nb):
    values = skewed_values(300, 4)
    state = torch.get_rng_state()
    a = nb.bootstrap_ci(values, seed=7)
    expect(torch.equal(state, torch.get_rng_state()), "the global RNG is untouched",
           hint="draw with torch.Generator().manual_seed(seed)")
    expect(a == nb.bootstrap_ci(values, seed=7), "the same seed gives the same interval")
    expect(a != nb.bootstrap_ci(values, seed=8), "another seed gives another interval")


def test_accepts_bools_and_leaves_inputs(nb):
    hits = skewed_values(200, 5) > 0
    mean, low, high = nb.bootstrap_ci(hits, n_resamples=200)
    expect_close(torch.tensor(mean), hits.double().mean(), "the mean of bool per-user hits", atol=1e-9,
                 hint="convert to float64 first")
    call_leaving_inputs_unchanged(nb.bootstrap_ci, skewed_values(50, 6), what="bootstrap_ci")
