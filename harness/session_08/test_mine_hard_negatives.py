"""Exercise 3: mine_hard_negatives (graded on candidate pools with known excluded items)."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_dtype, expect_equal, expect_shape

from .conftest import padded, random_pools

pytestmark = pytest.mark.exercise("mine_hard_negatives")


def _first_bad_row(out, cands, exclude, skip_top=0):
    """(row, reason) of the first row breaking the rules, or None."""
    for b in range(len(out)):
        got = [int(i) for i in out[b] if int(i) != 0]
        allowed = set(cands[b, skip_top:].tolist()) - set(exclude[b].tolist()) - {0}
        if len(got) != len(set(got)):
            return b, f"repeats an item: {out[b].tolist()}"
        bad = set(got) - allowed
        if bad:
            where = "excluded" if bad & set(exclude[b].tolist()) else (
                "in the skipped top" if bad & set(cands[b, :skip_top].tolist()) else "not among the candidates")
            return b, f"items {sorted(bad)} are {where}"
    return None


def test_shape_and_dtype(nb):
    cands, exclude = random_pools(4, 12, 50, 3, seed=0)
    out = nb.mine_hard_negatives(cands, exclude, 5, generator=torch.Generator().manual_seed(0))
    expect_shape(out, (4, 5), "5 negatives for each of 4 rows")
    expect_dtype(out, torch.int64, "negative item ids")


def test_only_eligible_candidates(nb):
    cands, exclude = random_pools(32, 20, 200, 6, seed=1)
    out = nb.mine_hard_negatives(cands, exclude, 8, generator=torch.Generator().manual_seed(1))
    bad = _first_bad_row(out, cands, exclude)
    expect(bad is None, "every negative is a candidate of its row, distinct, and never an excluded item",
           got=None if bad is None else f"row {bad[0]}: {bad[1]}",
           hint="drop the candidates found in the row's own `exclude` (the target, the history), then draw without "
                "replacement")
    expect(not bool((out == 0).any()), "20 candidates, at most 6 excluded: 8 real negatives in every row",
           got=f"{int((out == 0).sum())} zeros")


def test_rows_that_run_short(nb):
    cands = torch.tensor([[5, 6, 7, 8, 9], [1, 2, 3, 0, 0], [4, 0, 0, 0, 0]])
    exclude = padded([[6, 8, 11], [2, 12, 13], [4, 14, 15]])  # no padding in exclude: 0 must still never be drawn
    out = nb.mine_hard_negatives(cands, exclude, 4, generator=torch.Generator().manual_seed(2))
    expect_shape(out, (3, 4), "4 negatives per row, padded")
    for b, want in enumerate(({5, 7, 9}, {1, 3}, set())):
        real = out[b, :len(want)].tolist()
        expect(set(real) == want and not bool(out[b, len(want):].any()),
               f"row {b} has {len(want)} eligible candidates: all of them first, then zeros",
               expected=f"{sorted(want)} in some order, then {4 - len(want)} zeros", got=str(out[b].tolist()),
               hint="padding (0) and excluded items are never eligible; keep the eligible ones (largest random keys) "
                    "first and fill the rest with 0")


def test_padding_is_never_a_candidate(nb):
    g = torch.Generator().manual_seed(10)
    rows = 64
    lengths = torch.randint(0, 9, (rows,), generator=g)
    cands = torch.stack([torch.cat([torch.randperm(30, generator=g)[:int(m)] + 31, torch.zeros(8 - int(m), dtype=torch.long)])
                         for m in lengths])
    exclude = torch.randint(61, 70, (rows, 4), generator=g)  # full rows, no padding, never a candidate
    out = nb.mine_hard_negatives(cands, exclude, 6, generator=torch.Generator().manual_seed(11))
    want = lengths.clamp_max(6)
    got = (out != 0).sum(dim=1)
    row = int((got != want).nonzero()[0]) if bool((got != want).any()) else None
    expect(row is None, "padding 0 in the candidates is never drawn: a row with m real candidates gets min(m, 6)",
           got=None if row is None else f"row {row}: candidates {cands[row].tolist()} gave {out[row].tolist()}",
           hint="treat 0 as ineligible even when `exclude` has no padding: put a 0 column into the sorted exclude row")


def test_pool_narrower_than_n(nb):
    cands = torch.tensor([[3, 4], [5, 6]])
    out = nb.mine_hard_negatives(cands, padded([[], [6]]), 4, generator=torch.Generator().manual_seed(3))
    expect_shape(out, (2, 4), "n = 4 columns even when only K = 2 candidates exist",
                 hint="topk(n) fails for n > K: take min(n, K), then pad with zero columns")
    expect(set(out[0, :2].tolist()) == {3, 4} and out[1, 0].item() == 5 and not bool(out[:, 2:].any())
           and out[1, 1].item() == 0, "the eligible candidates first, then zeros", got=str(out.tolist()))


def test_draws_uniformly_among_the_eligible(nb):
    rows = 6000
    cands = torch.arange(1, 11).repeat(rows, 1)  # candidates 1..10, best first
    exclude = torch.tensor([[2, 5, 9]]).repeat(rows, 1)  # 7 eligible: 1, 3, 4, 6, 7, 8, 10
    out = nb.mine_hard_negatives(cands, exclude, 2, generator=torch.Generator().manual_seed(4))
    counts = torch.bincount(out.reshape(-1), minlength=11).double()
    eligible = torch.tensor([1, 3, 4, 6, 7, 8, 10])
    expected = 2 * rows / 7
    worst = float(((counts[eligible] - expected).abs() / expected).max())
    expect(worst < 0.08 and int(counts[[0, 2, 5, 9]].sum()) == 0,
           "each eligible candidate is drawn equally often (6,000 rows, 2 of 7 eligible each)",
           expected=f"about {expected:.0f} draws of each of {eligible.tolist()}",
           got=f"{ {int(i): int(counts[i]) for i in range(1, 11)} }",
           hint="draw uniformly WITHOUT replacement: a random key per candidate and the n largest keys; taking the "
                "first n eligible candidates always returns the same, hardest ones")


def test_skip_top(nb):
    cands = torch.arange(1, 9).repeat(500, 1)
    out = nb.mine_hard_negatives(cands, padded([[]] * 500), 3, generator=torch.Generator().manual_seed(5), skip_top=2)
    drawn = set(out.reshape(-1).tolist())
    expect(not drawn & {1, 2}, "skip_top=2: the first two candidates of every row are never drawn",
           got=f"drawn items {sorted(drawn)}", hint="mine from candidates[:, skip_top:]")
    expect(drawn == {3, 4, 5, 6, 7, 8}, "every candidate after the skipped ones can be drawn",
           got=f"drawn items {sorted(drawn)}", hint="skip exactly skip_top candidates, not skip_top + 1")


def test_generator_only(nb):
    cands, exclude = random_pools(16, 15, 100, 4, seed=6)
    state = torch.get_rng_state()
    a = nb.mine_hard_negatives(cands, exclude, 6, generator=torch.Generator().manual_seed(7))
    expect(torch.equal(state, torch.get_rng_state()), "the global RNG is untouched when a generator is given",
           hint="pass generator= to torch.rand / torch.randperm / torch.multinomial")
    b = nb.mine_hard_negatives(cands, exclude, 6, generator=torch.Generator().manual_seed(7))
    c = nb.mine_hard_negatives(cands, exclude, 6, generator=torch.Generator().manual_seed(8))
    expect_equal(a, b, "the same generator seed gives the same negatives")
    expect(not torch.equal(a, c), "another seed gives other negatives", hint="draw at random, with the generator")


def test_inputs_unchanged(nb):
    cands, exclude = random_pools(8, 10, 60, 3, seed=9)
    call_leaving_inputs_unchanged(nb.mine_hard_negatives, cands, exclude, 4, generator=torch.Generator().manual_seed(0),
                                  what="mine_hard_negatives")
