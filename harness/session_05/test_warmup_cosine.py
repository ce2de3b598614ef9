"""Exercise 1: warmup_cosine."""
import math

import pytest
import torch

from harness.autograder.checks import expect, expect_close

pytestmark = pytest.mark.exercise("warmup_cosine")

W, T = 10, 110  # warm-up steps, total steps


def test_warmup_is_linear_and_reaches_one_on_its_last_step(nb):
    got = [nb.warmup_cosine(s, W, T, 0.1) for s in range(W)]
    expect(all(isinstance(v, float) for v in got), "returns a Python float", got=type(got[0]).__name__,
           hint="math.cos and plain arithmetic give floats; avoid returning tensors or numpy scalars")
    expect_close(got[0], 1 / W, "multiplier at step 0 (the very first optimizer step)",
                 hint="LambdaLR calls f(0) for the first step: (step + 1) / warmup_steps, so it is 1/W, not 0")
    expect_close(got[W - 1], 1.0, f"multiplier at step {W - 1}, the last warm-up step",
                 hint="with (step + 1) / W the ramp reaches 1.0 on its last step; step / W is one step late")
    expect_close(torch.tensor(got), torch.arange(1, W + 1) / W, "the whole warm-up ramp, steps 0..W-1",
                 hint="(step + 1) / warmup_steps")
    expect_close(nb.warmup_cosine(W, W, T, 0.1), 1.0, f"multiplier at step {W}, the first cosine step",
                 hint="the cosine starts at progress 0: (step - W) / (T - W)")


def test_cosine_middle_and_end(nb):
    expect_close(nb.warmup_cosine(60, W, T, 0.0), 0.5, "multiplier half-way through the cosine (min_ratio=0)",
                 hint="progress = (step - W) / (T - W) = 0.5 gives 0.5 * (1 + cos(pi / 2)) = 0.5; measure progress "
                      "from the end of the warm-up, over T - W steps")
    expect_close(nb.warmup_cosine(60, W, T, 0.1), 0.55, "half-way with min_ratio=0.1",
                 hint="min_ratio + (1 - min_ratio) * 0.5 * (1 + cos(pi * progress))")
    quarter = 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))
    expect_close(nb.warmup_cosine(35, W, T, 0.1), quarter, "a quarter of the way through the cosine")
    expect_close(nb.warmup_cosine(T, W, T, 0.1), 0.1, "multiplier at step T (total_steps)",
                 hint="the cosine ends at min_ratio, not at 0")
    expect_close(nb.warmup_cosine(T, W, T, 0.0), 0.0, "multiplier at step T with min_ratio=0", atol=1e-9)


def test_flat_after_total_steps(nb):
    for step in (T + 1, T + 37, 2 * T, 10 * T):
        expect_close(nb.warmup_cosine(step, W, T, 0.1), 0.1, f"multiplier at step {step}, after total_steps={T}",
                     hint="clamp progress at 1: past T the cosine would climb back up to the peak")


def test_shape_of_the_whole_curve(nb):
    values = [nb.warmup_cosine(s, 50, 1000, 0.05) for s in range(1200)]
    up, down = values[:50], values[49:]
    expect(all(a < b for a, b in zip(up, up[1:])), "the multiplier rises on every warm-up step")
    bad = next((s for s, (a, b) in enumerate(zip(down, down[1:]), start=49) if b > a + 1e-12), None)
    expect(bad is None, "after the warm-up the multiplier never rises", got=f"it rises at step {bad}")
    expect(min(values) > 0 and max(values) <= 1.0 + 1e-12, "every value lies in (0, 1]",
           got=f"range [{min(values):.4g}, {max(values):.4g}]")
    expect(min(values[50:]) >= 0.05 - 1e-12, "after the warm-up the multiplier never drops below min_ratio",
           got=f"minimum {min(values[50:]):.4g}")


def test_no_warmup(nb):
    expect_close(nb.warmup_cosine(0, 0, 100), 1.0, "with warmup_steps=0, step 0 is at the peak",
                 hint="no warm-up: go straight to the cosine (and never divide by warmup_steps = 0)")
    expect_close(nb.warmup_cosine(50, 0, 100), 0.5, "with warmup_steps=0, half-way through 100 steps")
    expect_close(nb.warmup_cosine(100, 0, 100), 0.0, "the default min_ratio is 0", atol=1e-9)


def test_drives_lambdalr(nb):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: nb.warmup_cosine(s, 4, 20, 0.1))
    seen = []
    for _ in range(24):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expect_close(seen[0], 0.5 / 4, "learning rate of the first optimizer step under LambdaLR")
    expect_close(seen[3], 0.5, "learning rate of the 4th step (end of warm-up)")
    expect_close(seen[20], 0.05, "learning rate at step total_steps")
    expect_close(seen[23], 0.05, "learning rate after total_steps")
