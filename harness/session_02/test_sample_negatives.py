"""Exercise 4: sample_negatives."""
import time

import pytest
import torch

from harness.autograder.checks import expect, expect_dtype, expect_equal, expect_shape

pytestmark = pytest.mark.exercise("sample_negatives")


def _uniform(n_items):
    p = torch.ones(n_items + 1, dtype=torch.float64)
    p[0] = 0
    return p / p.sum()


def test_shape_and_dtype(nb):
    out = nb.sample_negatives(_uniform(50), torch.tensor([[1, 2, 0], [3, 0, 0]]), 7, torch.Generator().manual_seed(0))
    expect_shape(out, (2, 7), "negatives for 2 users, 7 each")
    expect_dtype(out, torch.int64, "negatives")


def test_never_a_positive_nor_padding(nb):
    g = torch.Generator().manual_seed(0)
    probs = _uniform(30)
    positives = torch.randint(1, 31, (64, 25), generator=g)
    positives[:, 20:] = 0  # padding
    out = nb.sample_negatives(probs, positives, 40, g)
    clash = (out.unsqueeze(-1) == positives.unsqueeze(1)).any(-1)
    if clash.any():
        b, j = (int(i) for i in clash.nonzero()[0])
        expect(False, "no negative is one of the user's positives",
               got=f"row {b} drew item {int(out[b, j])}, which is a positive of that row",
               hint="find the draws that hit a positive of their row and draw those again, until none is left")
    expect(not bool((out == 0).any()), "padding (item 0) is never drawn", hint="sample from probs, whose slot 0 is 0")
    expect(bool(((out >= 1) & (out <= 30)).all()), "negatives are item ids in 1..n_items", got=out.unique().tolist()[:10])


def test_every_item_can_be_drawn(nb):
    out = nb.sample_negatives(_uniform(5), torch.zeros(1, 1, dtype=torch.long), 4000, torch.Generator().manual_seed(1))
    drawn = sorted(out.unique().tolist())
    expect(drawn == [1, 2, 3, 4, 5], "with a uniform distribution over 5 items, all of 1..5 appear",
           got=drawn, hint="torch.randint's upper bound is exclusive: sampling from probs avoids the off-by-one")


def test_follows_the_distribution(nb):
    probs = torch.tensor([0.0, 0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    positives = torch.tensor([[2, 0]]).expand(20_000, 2)  # item 2 excluded: renormalise 0.5, 0.15, 0.05
    out = nb.sample_negatives(probs, positives, 5, torch.Generator().manual_seed(2))
    freq = torch.bincount(out.flatten(), minlength=5).double() / out.numel()
    expected = torch.tensor([0, 0.5, 0, 0.15, 0.05], dtype=torch.float64) / 0.7
    worst = float((freq - expected).abs().max())
    expect(worst < 0.01, "sampled frequencies match probs restricted to the non-positives",
           expected=[round(x, 3) for x in expected.tolist()], got=[round(x, 3) for x in freq.tolist()],
           hint="draw with torch.multinomial(probs, ...); uniform draws ignore the distribution")


def test_reproducible_with_a_generator(nb):
    positives = torch.randint(1, 200, (16, 10), generator=torch.Generator().manual_seed(3))
    probs = _uniform(200)
    a = nb.sample_negatives(probs, positives, 20, torch.Generator().manual_seed(7))
    b = nb.sample_negatives(probs, positives, 20, torch.Generator().manual_seed(7))
    c = nb.sample_negatives(probs, positives, 20, torch.Generator().manual_seed(8))
    expect_equal(a, b, "two calls with generators seeded alike draw the same negatives",
                 hint="pass generator=generator to every torch.multinomial / torch.randint call")
    expect(not torch.equal(a, c), "a different seed draws different negatives")


def test_global_rng_untouched(nb):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    nb.sample_negatives(_uniform(100), torch.tensor([[1, 2, 3]]), 10, torch.Generator().manual_seed(0))
    expect(torch.equal(state, torch.get_rng_state()), "the global random state is not consumed when a generator is given",
           hint="a call without generator=... draws from the global RNG, which shifts dropout and shuffling")


def test_all_mass_on_positives_raises(nb):
    probs = torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError):
        nb.sample_negatives(probs, torch.tensor([[1, 2]]), 3, torch.Generator().manual_seed(0))
        expect(False, "a ValueError when the positives hold all of the probability mass",
               got="no error", hint="compute the mass left outside each row's positives first")


@pytest.mark.time_limit(30)
def test_scales_to_a_large_catalog(nb):
    g = torch.Generator().manual_seed(4)
    probs = _uniform(300_000)
    positives = torch.randint(1, 300_001, (1024, 50), generator=g)
    start = time.perf_counter()
    out = nb.sample_negatives(probs, positives, 100, g)
    seconds = time.perf_counter() - start
    expect_shape(out, (1024, 100), "negatives for 1,024 users")
    expect(seconds < 5.0, "1,024 x 100 negatives from 300K items in well under a second", got=f"{seconds:.1f} s",
           hint="vectorise: no Python loop over users, and no (B, n_items) matrix")
