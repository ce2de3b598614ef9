"""Exercise 3: RMSNorm."""
import pytest
import torch

from harness.autograder.modules import expect_same_function, share_weights
from harness.autograder.checks import expect, expect_close

pytestmark = pytest.mark.exercise("RMSNorm")


def _reference(x, weight, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def test_matches_the_formula(nb):
    torch.manual_seed(0)
    norm = nb.RMSNorm(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = torch.randn(3, 5, 8) * 3 + 1
    expect_close(norm(x), _reference(x, norm.weight, 1e-6), "RMSNorm(x)", rtol=1e-5, atol=1e-5,
                 hint="x / sqrt(mean(x ** 2, last dim) + eps) * weight; no mean subtraction (that is LayerNorm)")


def test_normalises_the_last_dimension(nb):
    norm = nb.RMSNorm(4)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
    out = norm(x)
    expect_close(out[0], out[1], "rows that differ by a scale normalise to the same values", atol=1e-5,
                 hint="take the mean over dim=-1 with keepdim=True, not over the batch")


def test_gain_is_a_parameter(nb):
    norm = nb.RMSNorm(6)
    params = dict(norm.named_parameters())
    expect(len(params) == 1 and next(iter(params.values())).shape == (6,), "one learned gain of shape (dim,)",
           got={k: tuple(v.shape) for k, v in params.items()}, hint="self.weight = nn.Parameter(torch.ones(dim)); no bias")
    expect_close(next(iter(params.values())), torch.ones(6), "the gain starts at ones")


def test_eps_inside_the_square_root(nb):
    norm = nb.RMSNorm(4, eps=1e-2)
    x = torch.full((1, 4), 1e-3)
    expect_close(norm(x), _reference(x, torch.ones(4), 1e-2), "a tiny input is scaled by 1/sqrt(mean + eps)",
                 rtol=1e-4, atol=1e-7, hint="add eps to the mean square before the square root")


def test_bfloat16_keeps_dtype_and_precision(nb):
    torch.manual_seed(0)
    norm = nb.RMSNorm(64)
    x = torch.randn(4, 64) * 50
    out = norm(x.bfloat16())
    expect(out.dtype == torch.bfloat16, "a bf16 input gives a bf16 output", got=str(out.dtype))
    expect_close(out.float(), _reference(x.bfloat16().float(), torch.ones(64), 1e-6), "bf16 output vs float32 reference",
                 rtol=2e-2, atol=2e-2, hint="compute the statistic in float32 (x.float()), then cast back to x.dtype")


def test_float16_does_not_overflow(nb):
    norm = nb.RMSNorm(8)
    x = torch.full((2, 8), 300.0)
    out = norm(x.half())
    expect(bool(torch.isfinite(out).all()) and bool((out != 0).all()), "a float16 input of 300s normalises to ones",
           got=out.float().tolist()[0], hint="300 ** 2 = 90,000 overflows float16 (max 65,504): square in float32")
    expect_close(out.float(), torch.ones(2, 8), "RMSNorm of a constant row", atol=1e-2)


def test_same_function_as_specified(nb, reference):
    learner, ref = nb.RMSNorm(16, eps=1e-5), reference.RMSNorm(16, eps=1e-5)
    share_weights(learner, ref, "RMSNorm")
    x = torch.randn(3, 4, 16) * 3 + 0.5
    expect_same_function(learner, ref, (x,), "RMSNorm (float32)")
    expect_same_function(learner, ref, (x.bfloat16(),), "RMSNorm of a bfloat16 input", grads=False, rtol=1e-2, atol=1e-2,
                         hint="the statistic in float32, the result cast back to x.dtype before the gain")
