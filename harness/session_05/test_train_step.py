"""Exercise 4: train_step."""
import math

import pytest
import torch
from torch import nn

from harness.autograder.checks import expect, expect_close

from .conftest import ToyData, cpu_fp16_autocast_works, decay, toy_loss, toy_setup

pytestmark = pytest.mark.exercise("train_step")


class Linear(nn.Module):
    """loss = w · c: the gradient is c whatever w is, so clipping and scaling are easy to predict."""

    def __init__(self, n: int = 4):
        super().__init__()
        self.w = nn.Parameter(torch.ones(n))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return (self.w * c).sum()


def linear_loss(model, batch):
    return model(batch)


GRAD = torch.tensor([6.0, 0.0, 8.0, 0.0])  # norm 10


def _batches(n: int = 3) -> list[dict]:
    data = ToyData(4 * n)
    return [{"x": data.x[4 * i: 4 * i + 4], "y": data.y[4 * i: 4 * i + 4]} for i in range(n)]


def test_matches_the_five_line_step(nb):
    batches = _batches()
    model, optimizer, _ = toy_setup(dropout=0.0)
    ref_model, ref_opt, _ = toy_setup(dropout=0.0)
    for i, batch in enumerate(batches):
        out = nb.train_step(model, batch, optimizer, loss_fn=toy_loss)
        ref_opt.zero_grad()
        loss = toy_loss(ref_model, batch)
        loss.backward()
        ref_opt.step()
        expect(isinstance(out, dict) and {"loss", "grad_norm", "lr"} <= set(out),
               "train_step returns a dict with loss, grad_norm and lr", got=out)
        expect(all(isinstance(out[k], float) for k in ("loss", "grad_norm", "lr")),
               "loss, grad_norm and lr are Python floats", got={k: type(out[k]).__name__ for k in ("loss", "grad_norm", "lr")},
               hint="loss.item() and float(grad_norm): a tensor that holds the graph leaks memory in a loop")
        expect_close(out["loss"], loss.item(), f"loss returned by step {i + 1}", rtol=1e-6,
                     hint="compute the loss before the update and return it")
    for (name, a), b in zip(model.named_parameters(), ref_model.parameters()):
        expect_close(a, b, f"parameter `{name}` after 3 steps, compared with loss/zero_grad/backward/step",
                     rtol=1e-5, atol=1e-7, hint="zero the gradients every step (set_to_none=True), or they accumulate")


def test_train_mode(nb):
    model, optimizer, _ = toy_setup()
    model.eval()
    nb.train_step(model, _batches(1)[0], optimizer, loss_fn=toy_loss)
    expect(model.training, "train_step puts the model in train mode (dropout on)",
           hint="model.train() first: an evaluation in between leaves it in eval mode")


def test_returns_the_lr_used_and_steps_the_scheduler(nb):
    model, optimizer, scheduler = toy_setup(lr=0.1)
    lrs = [nb.train_step(model, b, optimizer, loss_fn=toy_loss, scheduler=scheduler)["lr"] for b in _batches(3)]
    expect_close(torch.tensor(lrs), torch.tensor([0.1 * decay(s) for s in range(3)]),
                 "lr returned by 3 steps under LambdaLR(1 / (1 + 0.1 t))",
                 hint="read optimizer.param_groups[0]['lr'] before scheduler.step(): the rate THIS step used")
    expect(scheduler.last_epoch == 3, "the scheduler is stepped once per train_step", got=f"last_epoch {scheduler.last_epoch}",
           hint="scheduler.step() after optimizer.step()")
    expect_close(optimizer.param_groups[0]["lr"], 0.1 * decay(3), "learning rate after 3 steps")


def test_clipping_bounds_the_norm(nb):
    for max_norm, expected_move in ((1.0, 1.0), (None, 10.0), (50.0, 10.0)):
        model = Linear()
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        before = model.w.detach().clone()
        out = nb.train_step(model, GRAD, optimizer, loss_fn=linear_loss, max_grad_norm=max_norm)
        moved = float((model.w.detach() - before).norm())
        expect_close(out["grad_norm"], 10.0, f"grad_norm returned with max_grad_norm={max_norm}",
                     hint="return the norm BEFORE clipping: clip_grad_norm_ returns it")
        expect_close(moved, expected_move, f"size of the SGD(lr=1) update with gradient norm 10 and max_grad_norm={max_norm}",
                     hint="torch.nn.utils.clip_grad_norm_(params, max_grad_norm) after backward, before optimizer.step(); "
                          "None means no clipping (use math.inf)")
        expect(float(model.w.grad.norm()) <= (max_norm or math.inf) * (1 + 1e-5),
               "after train_step the gradient norm is at most max_grad_norm", got=float(model.w.grad.norm()))


def test_unscale_before_clip_with_a_grad_scaler(nb):
    model = Linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    before = model.w.detach().clone()
    out = nb.train_step(model, GRAD, optimizer, loss_fn=linear_loss, scaler=scaler, max_grad_norm=1.0)
    moved = float((model.w.detach() - before).norm())
    expect_close(out["grad_norm"], 10.0, "grad_norm with a GradScaler (scale 1024) is the TRUE gradient norm",
                 hint="scaler.unscale_(optimizer) before clip_grad_norm_: otherwise you measure 1024 x the norm")
    expect_close(moved, 1.0, "size of the update with a scaler, gradient norm 10, max_grad_norm=1",
                 hint="clip after scaler.unscale_(optimizer); clipping scaled gradients shrinks the update by the scale "
                      "(here to 1/1024)", rtol=1e-4)
    expect_close(scaler.get_scale(), 1024.0, "loss scale after a clean step", hint="scaler.update() after scaler.step()")


def test_grad_scaler_skips_an_overflowing_step(nb):
    model = Linear()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=3e38)  # scaled gradients overflow to inf
    before = model.w.detach().clone()
    nb.train_step(model, GRAD, optimizer, loss_fn=linear_loss, scaler=scaler, max_grad_norm=1.0)
    expect(torch.equal(model.w.detach(), before), "with a GradScaler, a step whose scaled gradients overflow is skipped",
           got=f"weights {model.w.detach().tolist()}",
           hint="scaler.step(optimizer), not optimizer.step(): it skips the update when unscale_ found inf/NaN")
    expect(scaler.get_scale() < 3e38, "after an overflow the loss scale is reduced", got=scaler.get_scale(),
           hint="call scaler.update() after scaler.step(optimizer)")


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_loss_stops_before_the_update(nb, bad):
    model, optimizer, scheduler = toy_setup()
    batch = _batches(1)[0]
    nb.train_step(model, batch, optimizer, loss_fn=toy_loss, scheduler=scheduler)  # AdamW has state now
    weights = [p.detach().clone() for p in model.parameters()]
    steps = [int(s["step"]) for s in optimizer.state.values()]

    def poisoned(m, b):
        return toy_loss(m, b) * bad

    try:
        nb.train_step(model, batch, optimizer, loss_fn=poisoned, scheduler=scheduler, max_grad_norm=1.0)
    except FloatingPointError as err:
        message = str(err)
    else:
        message = None
    expect(message is not None, f"a loss of {bad} raises FloatingPointError",
           hint="if not math.isfinite(loss.item()): raise FloatingPointError('... what to try ...')")
    expect(any(w in message.lower() for w in ("nan", "inf")), "the message says the loss is not finite", got=message[:200])
    expect(any(w in message.lower() for w in ("learning rate", "lr", "warm", "clip", "precision", "amp", "fp32")),
           "the message says what to try (learning rate, warm-up, clipping, fp32...)", got=message[:300])
    for (name, p), w in zip(model.named_parameters(), weights):
        expect(torch.equal(p.detach(), w), f"after a non-finite loss the weights are unchanged (`{name}`)",
               hint="check the loss BEFORE backward and optimizer.step(): one NaN update poisons every weight")
    expect([int(s["step"]) for s in optimizer.state.values()] == steps, "the optimizer did not step")
    expect(scheduler.last_epoch == 1, "the scheduler did not step", got=scheduler.last_epoch)


def _recording(dtypes):
    def loss_fn(model, batch):
        out = model(batch["x"])
        dtypes.append(out.dtype)
        return torch.nn.functional.mse_loss(out.squeeze(-1).float(), batch["y"])

    return loss_fn


def test_bf16_autocast_on_cpu(nb):
    model, optimizer, _ = toy_setup()
    before = [p.detach().clone() for p in model.parameters()]
    dtypes = []
    for batch in _batches(2):
        out = nb.train_step(model, batch, optimizer, loss_fn=_recording(dtypes), amp_dtype=torch.bfloat16,
                            device_type="cpu", max_grad_norm=1.0)
        expect(math.isfinite(out["loss"]), "bf16 steps give a finite loss", got=out["loss"])
    expect(dtypes and all(d == torch.bfloat16 for d in dtypes), "with amp_dtype=bfloat16 the forward runs under autocast",
           got=f"Linear output dtypes {dtypes}",
           hint="with torch.autocast(device_type=device_type, dtype=amp_dtype, enabled=amp_dtype is not None): loss = ...")
    expect(all(p.dtype == torch.float32 for p in model.parameters()), "parameters stay float32 (master weights)",
           hint="autocast casts the computation, never the parameters: do not call model.to(bfloat16)")
    expect(all(not torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before)), "bf16 steps update the weights")
    dtypes.clear()
    nb.train_step(model, _batches(1)[0], optimizer, loss_fn=_recording(dtypes), amp_dtype=None)
    expect(dtypes == [torch.float32], "with amp_dtype=None there is no autocast (fp32)", got=str(dtypes))


def test_fp16_with_grad_scaler_on_cpu(nb):
    model, optimizer, _ = toy_setup()
    nb.train_step(model, _batches(1)[0], optimizer, loss_fn=toy_loss)  # the exercise itself, before any skip
    if not cpu_fp16_autocast_works():
        pytest.skip(f"torch {torch.__version__} has no fp16 autocast on CPU")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    before = [p.detach().clone() for p in model.parameters()]
    dtypes = []
    for batch in _batches(2):
        out = nb.train_step(model, batch, optimizer, loss_fn=_recording(dtypes), scaler=scaler,
                            amp_dtype=torch.float16, device_type="cpu", max_grad_norm=1.0)
        expect(math.isfinite(out["loss"]) and math.isfinite(out["grad_norm"]), "fp16 + GradScaler steps are finite",
               got=out)
        expect(out["grad_norm"] < 1e3, "grad_norm under a scaler of 256 is the unscaled norm", got=out["grad_norm"],
               hint="scaler.unscale_(optimizer) before measuring and clipping")
    expect(all(d == torch.float16 for d in dtypes), "the forward runs under fp16 autocast", got=str(dtypes))
    expect(all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters()),
           "parameters stay finite float32")
    expect(all(not torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before)),
           "fp16 + GradScaler steps update the weights", hint="scaler.step(optimizer); scaler.update()")


def test_cuda_amp(nb):
    model, optimizer, _ = toy_setup()
    nb.train_step(model, _batches(1)[0], optimizer, loss_fn=toy_loss)  # the exercise itself, before any skip
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the bf16 / fp16 GPU paths are checked on a GPU machine")
    for dtype in (torch.bfloat16, torch.float16):
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            continue
        model, optimizer, _ = toy_setup()
        model.cuda()
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        dtypes = []
        for batch in _batches(3):
            batch = {k: v.cuda() for k, v in batch.items()}
            out = nb.train_step(model, batch, optimizer, loss_fn=_recording(dtypes), scaler=scaler, amp_dtype=dtype,
                                device_type="cuda", max_grad_norm=1.0)
            expect(math.isfinite(out["loss"]), f"{dtype} CUDA steps give a finite loss", got=out["loss"])
        expect(all(d == dtype for d in dtypes), f"the CUDA forward runs under {dtype} autocast", got=str(dtypes))
        expect(all(p.dtype == torch.float32 for p in model.parameters()), "parameters stay float32 on CUDA")
