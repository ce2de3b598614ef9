"""Exercise 4: mixed_negatives (counts by largest remainder, each source from its own distribution, refills)."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_dtype, expect_equal, expect_shape

from .conftest import padded, popularity, random_pools

pytestmark = pytest.mark.exercise("mixed_negatives")

N_ITEMS = 60


def _call(nb, n, shares, B=6, seed=0, **kwargs):
    cands, exclude = random_pools(B, 15, N_ITEMS, 4, seed=seed)
    args = dict(candidates=cands, exclude=exclude, probs=popularity(N_ITEMS, list(range(1, 21))),
                generator=torch.Generator().manual_seed(seed))
    args.update(kwargs)
    return nb.mixed_negatives(n, shares, **args), args


def test_shapes_and_codes(nb):
    (negatives, source), _ = _call(nb, 8, {"uniform": 0.25, "popularity": 0.25, "hard": 0.5})
    expect_shape(negatives, (6, 8), "negatives (B, n)")
    expect_shape(source, (6, 8), "source (B, n)")
    expect_dtype(negatives, torch.int64, "negatives")
    expect_dtype(source, torch.int64, "source codes", hint="int64 indices into SOURCES")
    expect_equal(source[0], torch.tensor([0, 0, 1, 1, 2, 2, 2, 2]),
                 "shares 1/4, 1/4, 1/2 of 8: 2 uniform, 2 popularity, 4 hard, in that column order",
                 hint="one block per source, concatenated in SOURCES order; source[b, j] is the index of column j's source")


@pytest.mark.parametrize("n,shares,counts", [
    (5, {"uniform": 1, "popularity": 1, "hard": 1}, (2, 2, 1)),
    (7, {"uniform": 1, "popularity": 1, "hard": 1}, (3, 2, 2)),
    (4, {"uniform": 2, "hard": 1}, (3, 0, 1)),
    (6, {"hard": 3.0}, (0, 0, 6)),
    (3, {"uniform": 0.1, "popularity": 0.1, "hard": 0.8}, (0, 0, 3)),
])
def test_counts_by_largest_remainder(nb, n, shares, counts):
    (negatives, source), _ = _call(nb, n, shares, seed=1)
    expect_shape(negatives, (6, n), f"n = {n} negatives per row, whatever the shares",
                 hint="rounding each share on its own can hand out n ± 1: floor every count, then give the leftover "
                      "ones to the largest remainders")
    got = tuple(int((source[0] == code).sum()) for code in range(3))
    expect(got == counts, f"n = {n}, shares {shares}: negatives per source (uniform, popularity, hard)",
           expected=str(counts), got=str(got),
           hint="largest remainder: floor(n * share / total) each, then +1 to the largest fractional parts, ties "
                "in the order uniform, popularity, hard")


def test_never_excluded_never_padding(nb):
    (negatives, _), args = _call(nb, 9, {"uniform": 1, "popularity": 1, "hard": 1}, B=40, seed=2)
    for b in range(len(negatives)):
        bad = set(negatives[b].tolist()) & (set(args["exclude"][b].tolist()) | {0})
        expect(not bad, "no negative is padding or one of the row's positives", got=f"row {b}: {sorted(bad)}",
               hint="pass `exclude` as the positives of every source: sample_negatives(probs, exclude, ...) and "
                    "mine_hard_negatives(candidates, exclude, ...)")


def test_each_source_draws_from_its_distribution(nb):
    B = 200
    hot = list(range(1, 6))
    cands = torch.arange(40, 50).repeat(B, 1)
    exclude = padded([[2, 41]] * B)
    negatives, source = nb.mixed_negatives(6, {"uniform": 1, "popularity": 1, "hard": 1}, candidates=cands,
                                           exclude=exclude, probs=popularity(N_ITEMS, hot),
                                           generator=torch.Generator().manual_seed(3))
    popular = set(negatives[source == 1].tolist())
    expect(popular <= {1, 3, 4, 5}, "popularity negatives come from `probs` (here all its mass is on items 1..5, "
           "2 excluded)", got=f"items {sorted(popular)[:12]}", hint="sample_negatives(probs, exclude, n_popular, generator)")
    hard = set(negatives[source == 2].tolist())
    expect(hard <= set(range(40, 50)) - {41}, "hard negatives come from the candidates", got=f"items {sorted(hard)[:12]}",
           hint="mine_hard_negatives(candidates, exclude, n_hard, ...)")
    uniform = set(negatives[source == 0].tolist())
    expect(len(uniform) > 30, "uniform negatives spread over the whole catalog (1..60), not over `probs`",
           got=f"{len(uniform)} distinct items: {sorted(uniform)[:12]}",
           hint="uniform: every item 1..n_items equally, e.g. popularity_distribution(torch.ones_like(probs), 0.0)")


def test_short_pools_are_refilled_uniformly(nb):
    cands = torch.tensor([[7, 8, 9, 10], [0, 0, 0, 0], [11, 0, 0, 0]])
    exclude = padded([[8], [], [12]])
    negatives, source = nb.mixed_negatives(3, {"hard": 1}, candidates=cands, exclude=exclude,
                                           probs=popularity(N_ITEMS, [1, 2]), generator=torch.Generator().manual_seed(4))
    expect(not bool((negatives == 0).any()), "every slot holds a negative, even where the pool runs short",
           got=str(negatives.tolist()), hint="replace the zeros of mine_hard_negatives by uniform draws")
    expect_equal(source, torch.tensor([[2, 2, 2], [0, 0, 0], [2, 0, 0]]),
                 "sources: hard where the pool had an eligible candidate, uniform (0) where a slot was refilled",
                 hint="source = where(hard == 0, 0, 2) for the hard block")
    expect(set(negatives[0].tolist()) <= {7, 9, 10} and negatives[2, 0].item() == 11,
           "the refilled rows keep their real hard negatives first", got=str(negatives.tolist()))


def test_generator_only(nb):
    state = torch.get_rng_state()
    (a, sa), _ = _call(nb, 6, {"uniform": 1, "popularity": 1, "hard": 1}, seed=5)
    expect(torch.equal(state, torch.get_rng_state()), "the global RNG is untouched when a generator is given",
           hint="pass generator= to every draw (sample_negatives and mine_hard_negatives take it)")
    (b, sb), _ = _call(nb, 6, {"uniform": 1, "popularity": 1, "hard": 1}, seed=5)
    expect_equal(a, b, "the same generator seed gives the same negatives")


def test_inputs_unchanged(nb):
    cands, exclude = random_pools(5, 10, N_ITEMS, 3, seed=6)
    probs = popularity(N_ITEMS, list(range(1, 30)))
    call_leaving_inputs_unchanged(nb.mixed_negatives, 5, {"uniform": 1, "popularity": 1, "hard": 2}, candidates=cands,
                                  exclude=exclude, probs=probs, generator=torch.Generator().manual_seed(0),
                                  what="mixed_negatives")


def test_bad_shares(nb):
    _call(nb, 4, {"uniform": 1})
    for shares in ({"uniform": -1, "hard": 2}, {"uniform": 0, "popularity": 0, "hard": 0}, {"random": 1}):
        with pytest.raises(ValueError):
            _call(nb, 4, shares)
