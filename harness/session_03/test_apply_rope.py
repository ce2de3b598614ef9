"""Exercise 4: apply_rope."""
import math

import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_shape

pytestmark = pytest.mark.exercise("apply_rope")


def test_known_rotation(nb):
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]])  # one row, d = 4: pairs (1, 0) and (1, 0)
    out = nb.apply_rope(x, torch.tensor([1.0]), base=100.0)
    # theta = 100 ** (-0/4) = 1 and 100 ** (-2/4) = 0.1
    expected = torch.tensor([[math.cos(1.0), math.sin(1.0), math.cos(0.1), math.sin(0.1)]])
    expect_close(out, expected, "RoPE of (1, 0, 1, 0) at position 1 with base 100", atol=1e-6,
                 hint="pairs are (x[2i], x[2i+1]) (interleaved), angle = position * base ** (-2i / d)")


def test_position_zero_is_identity_and_shape_kept(nb):
    x = torch.randn(2, 3, 5, 8)
    out = nb.apply_rope(x, torch.arange(5))
    expect_shape(out, (2, 3, 5, 8), "RoPE output")
    expect_close(out[..., 0, :], x[..., 0, :], "position 0 is not rotated", atol=1e-6)


def test_norm_preserved(nb):
    x = torch.randn(4, 6, 16)
    out = nb.apply_rope(x, torch.arange(6) * 7)
    expect_close(out.norm(dim=-1), x.norm(dim=-1), "a rotation keeps each vector's norm", rtol=1e-5, atol=1e-5,
                 hint="rotate pairs with cos and sin of the same angle: (a cos - b sin, a sin + b cos)")


def test_scores_depend_on_relative_position(nb):
    torch.manual_seed(0)
    q, k = torch.randn(1, 16), torch.randn(1, 16)

    def score(m, n):
        return (nb.apply_rope(q, torch.tensor([float(m)])) * nb.apply_rope(k, torch.tensor([float(n)]))).sum()

    expect_close(score(3, 1), score(12, 10), "q·k at positions (3, 1) equals q·k at (12, 10)", rtol=1e-4, atol=1e-4,
                 hint="rotate q and k by angles proportional to their positions: only the difference remains")
    expect_close(score(5, 5), (q * k).sum(), "q·k at equal positions equals the unrotated q·k", rtol=1e-4, atol=1e-4)


def test_keeps_the_input_dtype(nb):
    torch.manual_seed(0)
    x = torch.randn(2, 2, 5, 8)
    out = nb.apply_rope(x.bfloat16(), torch.arange(5))
    expect(out.dtype == torch.bfloat16, "a bf16 input comes back bf16 (mixed precision, session 05)", got=str(out.dtype),
           hint="compute the angles in float32, then cast cos and sin to x.dtype before rotating: bf16 * float32 "
                "promotes to float32 and doubles the memory of every attention layer")
    expect_close(out.float(), nb.apply_rope(x, torch.arange(5)), "bf16 rotation vs float32 rotation", rtol=2e-2, atol=2e-2)
