"""Exercise 4: paired_bootstrap (same resampled users for every system; checked against bootstrap_ci's recipe)."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close

from .conftest import oracle_bootstrap, skewed_values

pytestmark = pytest.mark.exercise("paired_bootstrap")

KEYS = ("mean", "low", "high", "delta", "delta_low", "delta_high")


def _systems(U=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = skewed_values(U, seed)
    better = (base + 0.02 * torch.rand(U, generator=g)).clamp(0, 1)  # a small, consistent gain for every user
    other = skewed_values(U, seed + 100)  # unrelated
    return {"retriever": base, "ranker": better, "other": other}


def test_structure(nb):
    out = nb.paired_bootstrap(_systems(100), "retriever", n_resamples=50)
    expect(list(out) == ["retriever", "ranker", "other"], "one entry per system, in the order given", got=str(list(out)))
    for name, row in out.items():
        expect(set(row) == set(KEYS) and all(isinstance(row[k], float) for k in KEYS),
               f"{name}: the keys {KEYS} as Python floats", got=repr(row)[:200])
    expect(all(out["retriever"][k] == 0.0 for k in ("delta", "delta_low", "delta_high")),
           "the baseline's difference to itself is 0", got=repr(out["retriever"]))


def test_each_system_matches_bootstrap_ci(nb):
    systems = _systems(400, 1)
    out = nb.paired_bootstrap(systems, "retriever", n_resamples=300, confidence=0.9, seed=5)
    for name, values in systems.items():
        want = oracle_bootstrap(values, 300, 0.9, 5)
        expect_close(torch.tensor([out[name][k] for k in ("mean", "low", "high")]), torch.tensor(want),
                     f"{name}: mean and 90% interval as bootstrap_ci computes them with the same seed", atol=1e-9,
                     hint="the resamples are torch.randint(0, U, (R, U), generator=torch.Generator().manual_seed(seed)), "
                          "drawn once and used for every system")


def test_differences_are_paired(nb):
    systems = _systems(500, 2)
    R, seed = 400, 3
    out = nb.paired_bootstrap(systems, "retriever", n_resamples=R, seed=seed)
    for name in ("ranker", "other"):
        diff = systems[name].double() - systems["retriever"].double()
        want = oracle_bootstrap(diff, R, 0.95, seed)  # the same users in both means: the bootstrap of the differences
        expect_close(torch.tensor(out[name]["delta"]), torch.tensor(want[0]), f"{name}: delta = its mean - the baseline's",
                     atol=1e-9, hint="system minus baseline, not the other way round")
        expect_close(torch.tensor([out[name]["delta_low"], out[name]["delta_high"]]), torch.tensor(want[1:]),
                     f"{name}: the interval of the difference, from the SAME resampled users for both systems",
                     atol=1e-9, hint="means = values[:, idx].mean(-1) for all systems with one idx; deltas = means - "
                                      "means[baseline]; an unpaired bootstrap draws other users for each system")
    r = out["ranker"]
    expect(r["delta_low"] > 0, "a small gain shared by every user is detected: the paired interval excludes 0",
           got=f"[{r['delta_low']:+.4f}, {r['delta_high']:+.4f}]")


def test_unknown_baseline_and_ragged_systems(nb):
    systems = _systems(60, 4)
    nb.paired_bootstrap(systems, "retriever", n_resamples=20)
    with pytest.raises(ValueError):
        nb.paired_bootstrap(systems, "popularity", n_resamples=20)
    with pytest.raises(ValueError):
        nb.paired_bootstrap({**systems, "short": systems["other"][:50]}, "retriever", n_resamples=20)


def test_seeded_and_inputs_unchanged(nb):
    systems = _systems(80, 5)
    state = torch.get_rng_state()
    a = nb.paired_bootstrap(systems, "retriever", n_resamples=100, seed=1)
    expect(torch.equal(state, torch.get_rng_state()), "the global RNG is untouched")
    expect(a == nb.paired_bootstrap(systems, "retriever", n_resamples=100, seed=1), "the same seed, the same table")
    values = {k: v.clone() for k, v in systems.items()}
    nb.paired_bootstrap(values, "retriever", n_resamples=30)
    expect(all(torch.equal(values[k], systems[k]) for k in systems), "the per-user values are left unchanged")
