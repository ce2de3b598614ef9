"""Exercise 1: bce_with_logits (checked against a float64 oracle, PyTorch's built-in and its gradient sigma(x) - y)."""
import pytest
import torch
import torch.nn.functional as F

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_close, expect_dtype, expect_shape

from .conftest import oracle_bce

pytestmark = pytest.mark.exercise("bce_with_logits")


def _random(shape=(4, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(shape, generator=g)
    labels = (torch.rand(shape, generator=g) < 0.4).float()
    return logits, labels


def test_mean_matches_the_definition(nb):
    logits, labels = _random()
    loss = nb.bce_with_logits(logits, labels)
    expect_shape(loss, (), "the mean loss is a scalar", hint="reduction='mean' averages over every element: loss.mean()")
    expect_close(loss, oracle_bce(logits, labels).mean(), "mean BCE on random logits", rtol=1e-5, atol=1e-6,
                 hint="max(x, 0) - x * y + log1p(exp(-|x|)), averaged over every element")
    expect_close(loss, F.binary_cross_entropy_with_logits(logits, labels), "mean BCE vs F.binary_cross_entropy_with_logits",
                 rtol=1e-5, atol=1e-6)


def test_elementwise_and_sum(nb):
    logits, labels = _random((3, 5), seed=1)
    none = nb.bce_with_logits(logits, labels, reduction="none")
    expect_shape(none, (3, 5), "reduction='none' keeps the logits' shape")
    expect_close(none, oracle_bce(logits, labels), "elementwise BCE", rtol=1e-5, atol=1e-6,
                 hint="check the sign of the x * y term: the loss of a positive falls as its logit rises")
    expect_close(nb.bce_with_logits(logits, labels, reduction="sum"), oracle_bce(logits, labels).sum(),
                 "reduction='sum'", rtol=1e-5, atol=1e-5)


def test_soft_and_bool_labels(nb):
    logits, _ = _random((2, 6), seed=2)
    soft = torch.rand(2, 6, generator=torch.Generator().manual_seed(3))
    expect_close(nb.bce_with_logits(logits, soft, reduction="none"), oracle_bce(logits, soft),
                 "soft labels in [0, 1]", rtol=1e-5, atol=1e-6, hint="y may be any number in [0, 1]; don't round it")
    hard = soft > 0.5
    try:
        out = nb.bce_with_logits(logits, hard, reduction="none")
    except NotImplementedError:
        raise
    except (RuntimeError, TypeError) as err:
        expect(False, "bool labels work", got=f"{type(err).__name__}: {str(err)[:160]}",
               hint="convert the labels first: y = labels.to(logits.dtype)")
    expect_close(out, oracle_bce(logits, hard.float()), "bool labels", rtol=1e-5, atol=1e-6)


def test_gradient_is_sigmoid_minus_label(nb):
    logits, labels = _random((5, 4), seed=4)
    x = logits.clone().requires_grad_(True)
    nb.bce_with_logits(x, labels, reduction="sum").backward()
    expect(x.grad is not None, "the loss carries a gradient to the logits", hint="no .item(), no .detach(), no numpy")
    expect_close(x.grad, torch.sigmoid(logits) - labels, "d loss / d logit = sigmoid(x) - y", rtol=1e-4, atol=1e-6)


def test_extreme_logits_stay_finite(nb):
    x = torch.tensor([-100.0, -60.0, -30.0, 30.0, 60.0, 100.0])
    for y_value in (0.0, 1.0):
        labels = torch.full_like(x, y_value)
        logits = x.clone().requires_grad_(True)
        loss = nb.bce_with_logits(logits, labels, reduction="none")
        expect(bool(torch.isfinite(loss).all()), f"finite losses at logits ±100 with label {y_value:.0f}",
               got=loss.tolist(), hint="log(sigmoid(x)) is log(0) once sigmoid rounds to 0 or 1, and exp(-x) "
               "overflows for x = -100: use max(x, 0) - x * y + log1p(exp(-|x|))")
        expect_close(loss, oracle_bce(x, labels), f"losses at logits ±100 with label {y_value:.0f}", rtol=1e-5, atol=1e-5)
        loss.sum().backward()
        expect(bool(torch.isfinite(logits.grad).all()), f"finite gradients at logits ±100 with label {y_value:.0f}",
               got=logits.grad.tolist(), hint="a NaN gradient often comes from an inf in a branch (torch.where "
               "differentiates both branches): keep every intermediate finite")
        expect_close(logits.grad, torch.sigmoid(x) - labels, f"gradients at logits ±100 with label {y_value:.0f}",
                     atol=1e-6)


def test_confident_right_answers_keep_a_tiny_loss(nb):
    x = torch.tensor([20.0, 25.0, -20.0, -25.0])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    loss = nb.bce_with_logits(x, y, reduction="none")
    expect_close(loss, oracle_bce(x, y), "the loss of confidently right logits (about 2e-9 and 1.4e-11)",
                 rtol=1e-3, atol=0.0, hint="log(1 + z) rounds 1 + z to 1 for z below 1e-7 in float32 and returns 0; "
                 "torch.log1p(z) is exact there")


def test_float64_logits_give_float64(nb):
    logits, labels = _random((3,), seed=5)
    out = nb.bce_with_logits(logits.double(), labels.double())
    expect_dtype(out, torch.float64, "the loss of float64 logits", hint="compute in the logits' dtype")


def test_inputs_unchanged(nb):
    logits, labels = _random(seed=6)
    call_leaving_inputs_unchanged(nb.bce_with_logits, logits, labels, what="bce_with_logits")


def test_written_out_not_the_builtin(nb, monkeypatch):
    logits, labels = _random(seed=7)
    expected = nb.bce_with_logits(logits, labels)  # a stub stops here

    def refuse(*args, **kwargs):
        raise AssertionError("built-in BCE called")

    for module, name in ((F, "binary_cross_entropy_with_logits"), (torch, "binary_cross_entropy_with_logits"),
                         (F, "binary_cross_entropy")):
        monkeypatch.setattr(module, name, refuse)
    try:
        got = nb.bce_with_logits(logits, labels)
    except AssertionError:
        expect(False, "bce_with_logits writes the formula out", got="it calls PyTorch's built-in BCE",
               hint="the exercise is the stable formula itself: clamp_min, abs, exp, log1p")
    expect_close(got, expected, "the same value twice")


def test_unknown_reduction(nb):
    logits, labels = _random(seed=8)
    nb.bce_with_logits(logits, labels)
    with pytest.raises(ValueError):
        nb.bce_with_logits(logits, labels, reduction="average")
