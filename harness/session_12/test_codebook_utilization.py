"""Exercise 3: codebook_utilization."""
import math

import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close, expect_dtype, expect_shape

pytestmark = pytest.mark.exercise("codebook_utilization")

PERPLEXITY_HINT = ("p = counts / counts.sum() per level; H = -(p * log p) over the codes with p > 0 (natural log); "
                   "perplexity = exp(H). log2 goes with 2 ** H, never with exp")


def test_keys_shapes_dtypes(nb):
    codes = torch.tensor([[0, 1], [1, 1], [2, 0], [2, 1]])
    out = nb.codebook_utilization(codes, [4, 2])
    expect(isinstance(out, dict) and {"used", "perplexity"} <= set(out), "a dict with 'used' and 'perplexity'",
           got=sorted(out) if isinstance(out, dict) else type(out).__name__)
    for key in ("used", "perplexity"):
        expect_shape(out[key], (2,), f"{key!r}: one value per level, (L,)")
        expect_dtype(out[key], torch.float32, f"{key!r}")


def test_uniform_and_constant_levels(nb):
    K = 8
    codes = torch.stack([torch.arange(64) % K, torch.full((64,), 3)], dim=1)
    out = nb.codebook_utilization(codes, [K, K])
    expect_close(out["used"], torch.tensor([1.0, 1 / K]), "share of codes used: all 8 at level 1, 1 of 8 at level 2",
                 rtol=1e-5, hint="distinct codes of the level / its codebook size K_l (not / N), level by level")
    expect_close(out["perplexity"], torch.tensor([float(K), 1.0]),
                 "perplexity: 8 for uniform use of 8 codes, 1 when every item has the same code", rtol=1e-4,
                 hint=PERPLEXITY_HINT)
    expect(bool(torch.isfinite(out["perplexity"]).all()), "unused codes (p = 0) give no NaN",
           got=out["perplexity"], hint="0 log 0 = 0: keep only p > 0 before the log")


def test_skewed_distribution(nb):
    codes = torch.tensor([0, 0, 1, 2])[:, None]  # p = (1/2, 1/4, 1/4, 0)
    out = nb.codebook_utilization(codes, [4])
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    expect_close(out["perplexity"], torch.tensor([math.exp(entropy)]), "perplexity of p = (1/2, 1/4, 1/4, 0): 2.83",
                 rtol=1e-4, hint=PERPLEXITY_HINT)
    expect_close(out["used"], torch.tensor([0.75]), "3 of 4 codes used", rtol=1e-5)


def test_codebook_sizes_per_level(nb, reference):
    g = torch.Generator().manual_seed(0)
    codes = torch.stack([torch.randint(0, 5, (200,), generator=g), torch.randint(0, 30, (200,), generator=g),
                         torch.randint(0, 2, (200,), generator=g)], dim=1)
    sizes = [5, 40, 2]
    out = call_leaving_inputs_unchanged(nb.codebook_utilization, codes, sizes, what="codebook_utilization")
    want = reference.codebook_utilization(codes, sizes)
    expect_close(out["used"], want["used"], "share used with codebooks of 5, 40 and 2 codes", rtol=1e-5,
                 hint="each level separately, over its own K_l")
    expect_close(out["perplexity"], want["perplexity"], "perplexity per level", rtol=1e-4, hint=PERPLEXITY_HINT)
