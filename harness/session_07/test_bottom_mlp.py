"""Exercise 2: BottomMLP."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_shape
from harness.autograder.modules import expect_same_function, share_weights

from .conftest import DIM

pytestmark = pytest.mark.exercise("BottomMLP")

MEAN = torch.tensor([4.0, -2.0, 30.0])
STD = torch.tensor([2.0, 0.5, 10.0])


def _dense(n: int = 8, seed: int = 0) -> torch.Tensor:
    """Raw dense rows around the training statistics (columns on very different scales)."""
    g = torch.Generator().manual_seed(seed)
    return MEAN + STD * torch.randn(n, 3, generator=g)


def _module(nb, mean=MEAN, std=STD, hidden=(5, 4)):
    torch.manual_seed(0)
    return nb.BottomMLP(mean.clone(), std.clone(), hidden, DIM)


def test_shape_and_final_relu(nb):
    out = _module(nb)(_dense()).detach()
    expect_shape(out, (8, DIM), "bottom MLP output: (B, dim)")
    expect(bool((out >= 0).all()), "every layer is followed by a ReLU, the last one too: z >= 0",
           got=f"min {float(out.min()):.3f}", hint="nn.Sequential(Linear, ReLU, ..., Linear(h, dim), ReLU())")


def test_statistics_are_buffers(nb):
    module = _module(nb)
    buffers, params = dict(module.named_buffers()), dict(module.named_parameters())
    for name, want in (("dense_mean", MEAN), ("dense_std", STD)):
        expect(name in buffers, f"`{name}` is a registered buffer", got=sorted(buffers),
               hint=f"self.register_buffer('{name}', ...): saved in the state_dict, moved by .to(), never trained")
        expect(name not in params, f"`{name}` is not a parameter: the optimiser must not change the statistics",
               hint="register_buffer, not nn.Parameter")
        expect_close(buffers[name], want, f"`{name}` holds the given statistics", atol=0)
        expect(buffers[name].dtype == torch.float32, f"`{name}` is float32", got=str(buffers[name].dtype))
    expect({"dense_mean", "dense_std"} <= set(module.state_dict()), "both statistics are in the state_dict",
           hint="persistent buffers (the default): a saved model must carry its statistics")


def test_standardises_with_the_given_statistics(nb):
    with_stats = _module(nb)
    plain = _module(nb, torch.zeros(3), torch.ones(3))
    plain.load_state_dict({k: v for k, v in with_stats.state_dict().items() if not k.startswith("dense_")},
                          strict=False)
    x = _dense()
    expect_close(with_stats(x), plain((x - MEAN) / STD), "BottomMLP(mean, std)(x) equals the MLP on (x - mean) / std",
                 rtol=1e-5, atol=1e-6, hint="standardise first: (dense - self.dense_mean) / self.dense_std, then "
                                            "the MLP; the raw columns differ in scale by 20x")


def test_rows_are_independent(nb):
    module = _module(nb)
    x = _dense(8)
    alone = torch.cat([module(x[i:i + 1]) for i in range(3)])
    expect_close(module(x)[:3], alone, "each row's output does not depend on the other rows of the batch",
                 rtol=1e-5, atol=1e-6, hint="use the training statistics (the buffers), never the batch's own "
                                            "mean and std: a batch of one user's candidates is not the training data")
    module.train()
    train_out = module(x)
    module.eval()
    expect_close(train_out, module(x), "train and eval mode give the same output", atol=1e-6)


def test_input_not_modified(nb):
    module = _module(nb)
    x = _dense()
    before = x.clone()
    module(x)
    expect(torch.equal(x, before), "the caller's dense tensor is left unchanged",
           hint="(dense - mean) / std makes a new tensor; sub_ / div_ would standardise the caller's batch in place")


def test_statistics_survive_a_training_step(nb):
    module = _module(nb)
    module(_dense()).sum().backward()
    with torch.no_grad():  # one step of plain gradient descent on everything the optimiser would see
        for param in module.parameters():
            if param.grad is not None:
                param -= 0.5 * param.grad
    expect_close(module.dense_mean, MEAN, "dense_mean after an optimiser step", atol=0,
                 hint="the statistics are buffers, not parameters")
    expect_close(module.dense_std, STD, "dense_std after an optimiser step", atol=0)


def test_same_function_as_specified(nb, reference):
    learner, ref = _module(nb), _module(reference)
    share_weights(learner, ref, "BottomMLP")
    x = _dense(8, seed=4)
    x[0] = 0.0  # a row far from the mean
    expect_same_function(learner, ref, (x,), "BottomMLP",
                         hint="mlp((dense - dense_mean) / dense_std), with Linear + ReLU pairs, a ReLU after the last")
    learner, ref = _module(nb, hidden=()), _module(reference, hidden=())
    share_weights(learner, ref, "BottomMLP with hidden=()")
    expect_same_function(learner, ref, (x,), "BottomMLP with hidden=()",
                         hint="with no hidden layer the MLP is Linear(D, dim), ReLU()")
