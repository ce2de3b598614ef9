# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Session 05 — The training loop: mixed precision, clipping, schedules, checkpoints
#
# Session 04 gave you the five lines of a training step. Between those five lines and a run
# you can leave alone for a night on a rented GPU lies everything this session builds: the
# learning rate must rise and fall on a schedule, gradients must be kept from exploding,
# the GPU's fast low-precision units must be used without losing small gradients, every
# number must be logged somewhere you can look at it, and a run that dies at step 40,000
# must continue from step 40,000, *exactly* as if nothing had happened.
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `warmup_cosine` | the learning-rate multiplier: linear warm-up, then cosine decay to a floor |
# | 2 | `save_checkpoint` | everything a run needs to continue, written atomically |
# | 3 | `load_checkpoint` | ... and read back, RNG states included, with clear errors |
# | 4 | `train_step` | autocast, loss scaling, clipping, the NaN guard, the scheduler |
# | 5 | `fit` | the loop: deterministic data order, logging, checkpoints, resume, DDP |
#
# The workbook provides W&B set up to work with no account (`harness.tracking.init_run`, offline
# by default), the config schema (`harness/configs/two_tower.yaml`), `train_two_tower` (which
# wires sessions 02–04 into your loop) and `python -m harness train`, the same loop under
# `torchrun`.
#
# **Before:** [readings/session_05.md](../readings/session_05.md): the PyTorch AMP recipe,
# `clip_grad_norm_` and the learning-rate scheduler docs (about 45 minutes).

# %% tags=["export"]
import math
import os
import random
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from harness.autograder.loader import upstream
from harness.env import amp_dtype as default_amp_dtype
from harness.env import needs_grad_scaler, pick_device
from harness.seeding import seed_everything

# %%
from harness import Checker

check = Checker(session=5, namespace=globals())

# %% [markdown]
# ## 1. The learning-rate schedule
#
# Adam divides each gradient by a running estimate of its root mean square. In the first steps
# that estimate rests on a handful of samples, so the effective step size is erratic, and a
# Transformer hit with the full learning rate at step 0 can diverge or park itself in a bad
# region for good. **Warm-up** ramps the rate up linearly while the statistics settle. After
# it, **cosine decay** keeps the rate high for a long time and then lands it smoothly on a
# floor, which usually beats step decay and needs one setting fewer. With $W$ warm-up steps,
# $T$ total steps and a floor $r$ (a ratio of the peak):
#
# $$\frac{\eta_t}{\eta_{\max}} = \begin{cases} \dfrac{t+1}{W} & 0 \le t < W \\[2mm]
#   r + (1 - r)\,\tfrac{1}{2}\left(1 + \cos\left(\pi\,\dfrac{t - W}{T - W}\right)\right) & W \le t \le T \\[2mm]
#   r & t > T \end{cases}$$
#
# $t$ counts optimizer steps from 0. `torch.optim.lr_scheduler.LambdaLR(optimizer, f)` sets the
# rate of each parameter group to `base_lr * f(t)`; it calls `f(0)` when it is built (so the
# very first step uses `f(0)`) and `f(t + 1)` on each `scheduler.step()`. Hence the `t + 1` in
# the warm-up: with `t / W` the first step would run at a learning rate of exactly 0, a wasted
# step, and the peak would be reached one step late. The autograder checks that boundary.
#
# ## Exercise 1 — `warmup_cosine`

# %% tags=["export"]
def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based), for ``LambdaLR``.

    Args:
        step: optimizer steps taken so far (``LambdaLR`` passes its ``last_epoch``).
        warmup_steps: W; steps 0 .. W-1 ramp linearly, ``(step + 1) / W``, reaching 1.0 at step W - 1.
            W = 0 means no warm-up.
        total_steps: T; the cosine reaches ``min_ratio`` at step T and stays there after.
        min_ratio: the floor r, as a fraction of the peak learning rate.

    Returns:
        a Python float in (0, 1]; never below ``min_ratio`` after the warm-up.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 1 `warmup_cosine` (session 05) is not implemented yet: replace this line with your code")


# %%
check("warmup_cosine")

# %%
import matplotlib.pyplot as plt

steps = np.arange(1200)
fig, ax = plt.subplots(figsize=(7, 2.8))
for warmup, floor in ((50, 0.1), (200, 0.0)):
    ax.plot(steps, [warmup_cosine(int(s), warmup, 1000, floor) for s in steps], label=f"W={warmup}, r={floor}")
ax.axvline(1000, color="grey", linestyle=":", linewidth=1)
ax.set_xlabel("optimizer step t (T = 1000)")
ax.set_ylabel("lr / peak lr")
ax.legend()
plt.show()

# %% [markdown]
# ## 2. Checkpoints: what goes in, and why atomically
#
# A checkpoint that holds only the weights resumes a *different* run. To continue the same one,
# save everything that determines the next step:
#
# | state | why it matters on resume |
# | --- | --- |
# | model `state_dict` | the weights (and buffers) |
# | optimizer `state_dict` | AdamW's moment estimates $m, v$ and its step count: without them Adam restarts its bias correction and the first updates jolt the weights |
# | scheduler `state_dict` | where we are on the warm-up/cosine curve |
# | GradScaler `state_dict` | the current loss scale (fp16 only) |
# | RNG states: Python, NumPy, torch CPU, every CUDA device | the dropout masks of the next steps, and anything else random |
# | step, epoch, batches done in the epoch | where the data order continues |
#
# **Atomic writes.** `torch.save(state, path)` opens `path` for writing, which *truncates it
# first*. If the process dies midway (out of memory, a preempted spot instance, a full disk),
# the file is half written and the previous good checkpoint is gone with it. The fix costs two
# lines: write to a temporary file **in the same folder**, then `os.replace(tmp, path)`. A rename
# within one file system is atomic (POSIX and Windows): a reader sees the old file or the new
# one, never half of each. (A temporary file in `/tmp` may sit on another file system, where the
# "rename" becomes a copy and the guarantee is lost.)
#
# **DDP.** Under `DistributedDataParallel` the model you hold is a wrapper, and its
# `state_dict` keys all start with `module.`. Save the wrapped module's own `state_dict`
# (`model.module`), so that a checkpoint loads into a plain model, on one GPU or on a laptop.
#
# A checkpoint is a pickle (RNG states hold NumPy arrays, which `weights_only=True` refuses):
# load only files you wrote yourself.
#
# ## Exercise 2 — `save_checkpoint`

# %% tags=["export"]
def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: torch.amp.GradScaler | None = None, step: int, epoch: int,
                    extra: dict | None = None) -> Path:
    """Write a training checkpoint atomically; returns ``Path(path)``.

    The file holds a dict with the keys ``model``, ``optimizer``, ``scheduler``, ``scaler`` (each a
    ``state_dict()``, or None when not given), ``step`` and ``epoch`` (ints), ``extra`` (as given),
    and ``rng``: ``{"python": random.getstate(), "numpy": np.random.get_state(),
    "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() or None without CUDA}``.

    ``model`` may be wrapped in ``DistributedDataParallel``: its ``.module`` is saved. The file is
    written to a temporary file in the same folder, then moved over ``path`` with ``os.replace``; if
    anything fails, the temporary file is removed, the previous checkpoint is left as it was, and
    the error propagates. Missing parent folders are created.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 2 `save_checkpoint` (session 05) is not implemented yet: replace this line with your code")


# %%
check("save_checkpoint")

# %% [markdown]
# ## Exercise 3 — `load_checkpoint`
#
# The inverse, plus two errors that say what to do: a missing file (`FileNotFoundError`) and
# an unreadable or foreign one (`RuntimeError`). Load with `map_location="cpu"`: the weights are
# copied into the model's own tensors wherever they live, the optimizer moves its state to its
# parameters' device, and the RNG setters want CPU tensors anyway. Restore the RNG states
# **last**, after everything else, so that nothing consumes random numbers between the restore
# and the next training step.

# %% tags=["export"]
def load_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: torch.amp.GradScaler | None = None) -> dict:
    """Restore a checkpoint written by ``save_checkpoint`` into the given objects; RNG states too.

    ``model`` may be DDP-wrapped (its ``.module`` is loaded, so the checkpoint's keys never carry DDP's
    ``module.`` prefix). Weights load strictly: a checkpoint of another model (a missing, unexpected or
    misshapen key) raises ``load_state_dict``'s RuntimeError, rather than resuming a half-loaded model.
    Objects passed as None are skipped.

    Returns:
        ``{"step": int, "epoch": int, "extra": dict | None}``.

    Raises:
        FileNotFoundError: no file at ``path``; the message names the checkpoint and how to start fresh.
        RuntimeError: the file cannot be read (truncated, corrupt) or is not such a checkpoint;
            the message names the file and what to do.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 3 `load_checkpoint` (session 05) is not implemented yet: replace this line with your code")


# %%
check("load_checkpoint")

# %% [markdown]
# ## 3. Mixed precision and clipping
#
# A GPU's tensor cores multiply 16-bit numbers several times faster than 32-bit ones, and
# 16-bit activations halve the memory traffic. **Autocast** (`torch.autocast(device_type,
# dtype)`) runs the operations that profit (matrix products, convolutions) in 16 bits and keeps
# the fragile ones (softmax, log, sums, norms, losses) in float32. The parameters and the
# optimizer state stay float32 ("master weights"): only the computation is cast.
#
# The two 16-bit formats split their bits differently, which the next cell measures:

# %%
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    info = torch.finfo(dtype)
    print(f"{str(dtype):>15}: max {info.max:.3g}, smallest normal {info.tiny:.3g}, "
          f"relative precision {info.eps:.3g}, 1e-8 -> {torch.tensor(1e-8).to(dtype).item():.3g}")

# %% [markdown]
# **fp16** has 5 exponent bits: nothing above 65,504 and nothing (but a few subnormals) below
# $6\cdot10^{-5}$. Gradients are routinely smaller than that, and they silently become 0.
# **Loss scaling** (`torch.amp.GradScaler`) multiplies the loss by a large $S$ before
# `backward()`, so that every gradient is $S$ times larger and lands in fp16's range, and divides
# them by $S$ again before the update:
#
# $$\nabla_\theta (S \cdot L) = S \cdot \nabla_\theta L, \qquad g = \frac{S \nabla_\theta L}{S}$$
#
# If any scaled gradient overflowed to inf/NaN, `scaler.step(optimizer)` *skips* the update and
# `scaler.update()` halves $S$; after 2,000 clean steps it doubles $S$ again. So an fp16 step is:
#
# ```python
# scaler.scale(loss).backward()   # gradients are S times too large
# scaler.unscale_(optimizer)      # now true gradients (and inf/NaN recorded)
# clip_grad_norm_(params, c)      # clip the TRUE norm
# scaler.step(optimizer)          # skipped if unscale_ found inf/NaN
# scaler.update()                 # adjust S
# ```
#
# **bf16** keeps fp32's 8 exponent bits (same range, down to $10^{-38}$) and pays with precision
# (7 mantissa bits, about 3 significant digits). Nothing underflows, so **bf16 needs no
# scaler**: on GPUs that have it (Ampere and newer) it is the default, and `harness.env.amp_dtype`
# picks it. On a CPU, bf16 autocast works but is emulated on most chips and slower than fp32,
# so the workbook trains in fp32 there.
#
# **Gradient clipping** rescales all gradients together when their global norm exceeds $c$:
#
# $$\lVert g \rVert = \sqrt{\textstyle\sum_{p} \lVert g_p \rVert_2^2}, \qquad g \leftarrow g \cdot \min\left(1, \frac{c}{\lVert g \rVert}\right)$$
#
# `torch.nn.utils.clip_grad_norm_(params, c)` does it in place and returns the norm *before*
# clipping, the number to log (a spiking gradient norm is the earliest warning of divergence).
# With a scaler, unscale **first**: the scaled norm is $S\lVert g\rVert$, so clipping it at $c$
# would clip the true gradient to $c / S$, a learning rate silently divided by 65,536.
#
# **The NaN guard.** A NaN loss, once backpropagated, turns every weight it touches into NaN and
# the run is dead; every later step just carries the NaN along. Check the loss (`math.isfinite`)
# *before* `backward` and the update, and stop with a message that says what to try. (Under fp16
# an inf *gradient* is normal: that is what the scaler's skipped steps are for.)
#
# ## Exercise 4 — `train_step`
#
# `loss_fn(model, batch)` computes the loss; for the two-tower model it is session 04's
# `contrastive_batch_loss` with the temperature and logQ bound in. Return the loss, the gradient
# norm before clipping, and the learning rate this step used, all as Python floats.

# %% tags=["export"]
def train_step(model: nn.Module, batch: Any, optimizer: torch.optim.Optimizer, *,
               loss_fn: Callable[[nn.Module, Any], torch.Tensor], scheduler: Any = None,
               scaler: torch.amp.GradScaler | None = None, amp_dtype: torch.dtype | None = None,
               device_type: str = "cpu", max_grad_norm: float | None = None) -> dict:
    """One optimisation step with optional autocast, loss scaling, clipping and LR schedule.

    Args:
        model: the module to train (put in train mode); may be a DDP wrapper.
        batch: whatever ``loss_fn`` takes, already on the device.
        optimizer: steps over ``optimizer.param_groups``; clipping covers those parameters.
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``; runs under
            ``torch.autocast(device_type, dtype=amp_dtype)`` when ``amp_dtype`` is not None.
        scheduler: stepped once after the optimizer (per-step schedule), if given.
        scaler: a ``GradScaler`` (fp16): scale the loss, ``unscale_`` BEFORE clipping, ``scaler.step``,
            ``scaler.update``. None: plain ``backward`` and ``optimizer.step``.
        max_grad_norm: clip the global gradient norm to this; None: measure it, do not clip.

    Returns:
        ``{"loss": float, "grad_norm": float (before clipping), "lr": float (of param group 0, used by this step)}``.

    Raises:
        FloatingPointError: the loss is NaN or inf. Raised before ``backward`` and any update, so weights,
            optimizer and scheduler are unchanged; the message says what to try.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 4 `train_step` (session 05) is not implemented yet: replace this line with your code")


# %%
check("train_step")

# %% [markdown]
# ## 4. The loop
#
# `fit` runs `train_step` over epochs of shuffled batches. Four of its duties need care.
#
# **A data order you can replay.** Resuming exactly means feeding the same batches in the same
# order. So the order of epoch $e$ is a pure function of `(seed, e)`: a fresh
# `torch.Generator` seeded with `seed + e`, `torch.randperm(n, generator=g)`. On resume, skip
# the `batches_done` batches of the current epoch by slicing that permutation, not by loading and
# discarding them. One trap: even with `num_workers=0`, *creating a DataLoader iterator draws a
# number from the global torch RNG* (to seed its workers) unless you pass `generator=`; that
# single draw shifts every later dropout mask and breaks exactness. The autograder compares every
# parameter of a resumed run with an uninterrupted one using `torch.equal`, with dropout on.
#
# **Stopping.** At the end of `cfg.epochs` epochs, at `cfg.max_steps` optimizer steps (counted
# over the whole run, resumes included), or after `cfg.max_minutes` of wall clock, whichever
# comes first. Then write a final checkpoint.
#
# **Logging.** Every `cfg.log_every` steps (and at the last step), one record
# `{"step", "epoch", "loss", "lr", "grad_norm", "examples_per_second"}` with loss and gradient
# norm averaged over the steps since the previous record: appended to a history list, passed to
# `run.log(record_without_step, step=step)` when a W&B run is given, and printed through `log`.
# W&B runs offline by default (`harness.tracking.init_run`): no account, the files land in
# `runs/wandb/`, and `wandb sync` uploads them later if you want the dashboards.
#
# **Many processes.** `torchrun --nproc_per_node N` starts N copies of the script with `RANK`,
# `WORLD_SIZE` and `MASTER_ADDR` set; `dist.init_process_group()` connects them (NCCL between
# GPUs, Gloo on CPUs). Then, in `fit`:
#
# * `DistributedSampler(data, num_replicas=N, rank=r, seed=seed)` with `sampler.set_epoch(e)`
#   deals each rank a disjoint share of the same `seed + e` permutation;
# * `DistributedDataParallel` averages the gradients across ranks *during* `backward`, so every
#   rank applies the same update and all copies stay identical. DDP hooks into the wrapped
#   module's `forward`: the whole loss must be computed inside `ddp(...)`, not by calling
#   submodules like `model.user_tower` directly. The provided `LossForward` puts the model and the
#   loss into one module for that;
# * rank 0 alone logs and writes checkpoints; every collective operation (an `all_reduce` of the
#   logged loss, of the "out of time?" flag) must be reached by *every* rank, or the others wait
#   forever.
#
# ```
#  torchrun ──► rank 0: batches 0,2,4… ─► forward ─► backward ──┐ all-reduce ┌─► step ─► log, checkpoint
#           └─► rank 1: batches 1,3,5… ─► forward ─► backward ──┘ (average)  └─► step
# ```

# %% tags=["export"]
class LossForward(nn.Module):
    """A model and its loss as one module, so that DDP sees the whole loss in ``forward`` (provided)."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Any], torch.Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def call_forward(module: nn.Module, batch: Any) -> torch.Tensor:
    """The ``loss_fn`` for a ``LossForward`` (or its DDP wrapper): its forward *is* the loss (provided)."""
    return module(batch)


def move_to(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) dict/list/tuple batch moved to ``device`` (provided)."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def batch_size_of(batch: Any) -> int:
    """Rows in a batch: the first dimension of its first tensor (provided)."""
    if torch.is_tensor(batch):
        return int(batch.shape[0])
    values = batch.values() if isinstance(batch, dict) else batch
    for value in values:
        if torch.is_tensor(value):
            return int(value.shape[0])
    return len(batch)


# %% [markdown]
# ## Exercise 5 — `fit`

# %% tags=["export"]
def fit(model: nn.Module, train_data, *, loss_fn: Callable[[nn.Module, Any], torch.Tensor],
        optimizer: torch.optim.Optimizer, cfg: SimpleNamespace, scheduler: Any = None,
        amp_dtype: torch.dtype | None = None, device: torch.device | str = "cpu",
        collate_fn: Callable | None = None, run: Any = None, checkpoint_path: str | os.PathLike | None = None,
        resume: bool = False, eval_fn: Callable[[nn.Module], dict] | None = None,
        log: Callable[[str], None] = print) -> dict:
    """Train ``model`` on ``train_data`` with ``train_step``; resumable, loggable, DDP-ready.

    Args:
        model: moved to ``device``; the optimizer and scheduler were built on its parameters.
        train_data: a map-style dataset (``len`` and ``[i]``); batches are ``collate_fn`` of
            ``cfg.batch_size`` examples (the last batch of an epoch may be smaller).
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``, batch already on ``device``.
        cfg: training settings (``cfg.train`` of ``load_config("two_tower")``); reads ``batch_size``,
            ``epochs``, ``max_steps`` (None: no cap), ``max_minutes`` (None: no cap), ``max_grad_norm``,
            ``log_every``, ``checkpoint_every`` (None: only at the end), ``eval_every_epochs``, ``seed``.
        scheduler: stepped once per optimizer step (by ``train_step``).
        amp_dtype: autocast dtype or None (fp32); a ``GradScaler`` is created for float16.
        run: a W&B run (or anything with ``.log(dict, step=int)``), used on rank 0 only.
        checkpoint_path: where rank 0 writes the checkpoint (``extra`` holds ``batches_done``, the
            history and evals) every ``checkpoint_every`` steps and at the end; None: no checkpoints.
        resume: continue from ``checkpoint_path`` (required to exist): model, optimizer, scheduler,
            scaler, RNG, step, epoch, position in the epoch and history.
        eval_fn: ``eval_fn(model) -> dict of floats``, on rank 0 after every ``eval_every_epochs``-th epoch.
        log: where rank 0 prints progress lines.

    Data order: epoch e is ``torch.randperm(len(train_data), generator=torch.Generator().manual_seed(cfg.seed + e))``
    (under ``torch.distributed``: ``DistributedSampler(seed=cfg.seed)`` with ``set_epoch(e)``), and the
    DataLoader gets its own generator, so the global RNG drives only the model (dropout).

    Returns:
        dict with ``steps`` (global optimizer steps), ``epochs`` (float, epochs done), ``seconds`` and
        ``examples_per_second`` (this call, all ranks together), ``final_loss`` (last logged loss),
        ``history`` (list of logged records), ``evals`` (list of ``{"epoch", "step", **metrics}``),
        ``stopped_by`` ("epochs", "max_steps" or "max_minutes") and ``world_size``.

    Raises:
        FloatingPointError: a non-finite loss; the message names the step and epoch.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 5 `fit` (session 05) is not implemented yet: replace this line with your code")


# %%
check("fit")

# %% [markdown]
# ## 5. The two-tower model in the loop (provided)
#
# `train_two_tower` wires the earlier sessions into `fit`: session 03's towers, session 02's
# dataset and collate function (through `harness.pipeline.retrieval.windowed_examples`, every training
# position used once per epoch), session 04's logQ-corrected contrastive loss and AdamW groups,
# your schedule, and validation HR@10 / NDCG@10 as the eval callback. `python -m harness train`
# and session 06 call it, on your notebook or on the reference.

# %% tags=["export"]
def resolve_amp(setting: Any, device: torch.device) -> torch.dtype | None:
    """``cfg.train.amp`` -> autocast dtype: "auto" (bf16/fp16 on CUDA, none on CPU), true, false, "bf16", "fp16"."""
    if setting in (False, None, "false", "off", "fp32"):
        return None
    if setting in ("bf16", "bfloat16"):
        return torch.bfloat16
    if setting in ("fp16", "float16"):
        return torch.float16
    if setting in (True, "true", "on"):
        return default_amp_dtype(device) or torch.bfloat16
    if setting == "auto":
        return default_amp_dtype(device)
    raise ValueError(f"train.amp = {setting!r}: use auto, true, false, bf16 or fp16")


def two_tower_loss(model: nn.Module, batch: dict, *, temperature: float, log_q: torch.Tensor | None) -> torch.Tensor:
    """Session 04's contrastive loss as a ``loss_fn(model, batch)`` (provided)."""
    return upstream(4).contrastive_batch_loss(model, batch, temperature, log_q)


def two_tower_training(dataset, tower: str, cfg: SimpleNamespace, device: torch.device | str) -> SimpleNamespace:
    """Everything ``fit`` needs for a two-tower run, built from a dataset and a config (provided).

    Seeds every RNG with ``cfg.train.seed`` first, so two calls build identical models.
    Returns a namespace with ``model``, ``examples``, ``collate_fn``, ``loss_fn``, ``optimizer``,
    ``scheduler``, ``amp_dtype``, ``total_steps`` and ``eval_fn`` (valid HR@10 / NDCG@10).
    """
    from harness.pipeline.retrieval import evaluate_two_tower, windowed_examples

    device, t = torch.device(device), cfg.train
    seed_everything(t.seed)
    codes, names = dataset.category_codes()
    model = upstream(3).build_two_tower(dataset.n_items, torch.from_numpy(codes), len(names), tower=tower,
                                        dim=cfg.model.dim, category_dim=cfg.model.category_dim,
                                        dropout=cfg.model.dropout, layers=cfg.model.layers,
                                        heads=cfg.model.heads).to(device)
    examples = windowed_examples(dataset.sequences(upto="valid"), t.max_len)
    log_q = None
    if t.log_q:
        log_q = upstream(4).item_log_q(torch.from_numpy(dataset.item_counts(upto="valid"))).to(device)
    optimizer = upstream(4).build_optimizer(model, t.lr, t.weight_decay, tuple(t.betas))
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    total_steps = t.epochs * math.ceil(math.ceil(len(examples) / world) / t.batch_size)
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(warmup_cosine, warmup_steps=t.warmup_steps, total_steps=total_steps,
                           min_ratio=t.min_lr_ratio))

    def eval_fn(m: nn.Module) -> dict:
        metrics = evaluate_two_tower(m, dataset, "valid", max_len=t.max_len, ks=(10,), device=device)
        return {k: metrics[k] for k in ("HR@10", "NDCG@10")}

    return SimpleNamespace(model=model, examples=examples, collate_fn=upstream(2).collate_sequences,
                           loss_fn=partial(two_tower_loss, temperature=t.temperature, log_q=log_q),
                           optimizer=optimizer, scheduler=scheduler, amp_dtype=resolve_amp(t.amp, device),
                           total_steps=total_steps, eval_fn=eval_fn)


def train_two_tower(dataset, tower: str, cfg: SimpleNamespace, *, device: torch.device | str | None = None,
                    run: Any = None, checkpoint_path: str | os.PathLike | None = None, resume: bool = False,
                    log: Callable[[str], None] = print) -> tuple[nn.Module, dict]:
    """Train a two-tower retriever (``tower`` = "mean" or "transformer") with ``fit`` (provided).

    Args:
        dataset: a ``harness.data.RecDataset``; trains on the sequences up to the valid split.
        cfg: ``load_config("two_tower", preset)``.
        device: default ``harness.env.pick_device()``. Under ``torch.distributed`` each rank trains its share.

    Returns:
        (model, result): ``fit``'s dict (its ``examples_per_second`` counts windows) plus ``valid`` (HR@10,
        NDCG@10 on the valid split after training), ``amp_dtype`` and ``positions_per_second`` (training
        positions, i.e. (history, next item) pairs, per second: windows/s times the mean positions per window).
    """
    device = torch.device(device) if device is not None else pick_device()
    setup = two_tower_training(dataset, tower, cfg, device)
    result = fit(setup.model, setup.examples, loss_fn=setup.loss_fn, optimizer=setup.optimizer, cfg=cfg.train,
                 scheduler=setup.scheduler, amp_dtype=setup.amp_dtype, device=device, collate_fn=setup.collate_fn,
                 run=run, checkpoint_path=checkpoint_path, resume=resume, eval_fn=setup.eval_fn, log=log)
    result["valid"] = setup.eval_fn(setup.model)  # every rank: the weights are identical, so are the numbers
    result["amp_dtype"] = str(setup.amp_dtype).replace("torch.", "") if setup.amp_dtype else "fp32"
    # fit counts windows (batch rows); each epoch covers every training position once, so on average
    # a window holds positions / windows training examples.
    positions = sum(max(len(s) - 1, 0) for s in dataset.sequences(upto="valid"))
    result["positions_per_second"] = result["examples_per_second"] * positions / max(len(setup.examples), 1)
    return setup.model, result


# %% [markdown]
# ## Run it: both towers, a resume, and the throughput
#
# Both user towers of session 03 on the current dataset (MovieLens-100K unless
# `WORKBOOK_DATASET` says otherwise) with the settings of `harness/configs/two_tower.yaml`
# (`WORKBOOK_PRESET=smoke` makes it seconds; the laptop preset caps each tower at a few minutes).
# Each run logs to its own W&B run (offline: see `runs/wandb/`) and writes a checkpoint to
# `runs/session05/`.

# %%
import os

import wandb

from harness.config import as_dict, load_config
from harness.data import load_dataset
from harness.paths import runs_dir
from harness.tracking import init_run

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
cfg = load_config("two_tower")
device = pick_device()
ds = load_dataset(DATASET)
ckpt_dir = runs_dir() / "session05"
print(f"{DATASET}: {ds.n_users:,} users, {ds.n_items:,} items; preset {cfg.preset}; device {device.type}; "
      f"autocast {resolve_amp(cfg.train.amp, device) or 'off (fp32)'}")

results = {}
for tower in ("mean", "transformer"):
    run = init_run(f"session05-{DATASET}-{tower}", {**as_dict(cfg), "tower": tower, "dataset": DATASET},
                   group="session05", settings=wandb.Settings(quiet=True))
    model, result = train_two_tower(ds, tower, cfg, device=device, run=run,
                                    checkpoint_path=ckpt_dir / f"{DATASET}-{tower}.pt",
                                    log=lambda line: None)  # the summary below is enough here
    run.summary.update({f"final/{k}": v for k, v in result["valid"].items()})
    run.finish()
    results[tower] = result
    print(f"{tower:>11}: {result['steps']:,} steps ({result['epochs']:.1f} epochs, stopped by {result['stopped_by']}) "
          f"in {result['seconds']:.0f} s, {result['examples_per_second']:,.0f} windows/s "
          f"({result['positions_per_second']:,.0f} positions/s); loss "
          f"{result['history'][0]['loss']:.3f} -> {result['final_loss']:.3f}; valid HR@10 "
          f"{result['valid']['HR@10']:.4f}, NDCG@10 {result['valid']['NDCG@10']:.4f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
for tower, result in results.items():
    steps_logged = [r["step"] for r in result["history"]]
    axes[0].plot(steps_logged, [r["loss"] for r in result["history"]], label=tower)
    axes[1].plot(steps_logged, [r["lr"] for r in result["history"]], label=tower)
    if result["evals"]:
        axes[2].plot([e["step"] for e in result["evals"]], [e["HR@10"] for e in result["evals"]], marker="o",
                     label=tower)
axes[0].set_ylabel("training loss (logQ-corrected)")
axes[1].set_ylabel("learning rate")
axes[2].set_ylabel("valid HR@10")
if not axes[2].lines:
    axes[2].text(0.5, 0.5, f"no evaluation during training\n(eval_every_epochs = {cfg.train.eval_every_epochs})",
                 ha="center", va="center", transform=axes[2].transAxes)
for ax in axes:
    ax.set_xlabel("step")
    if ax.lines:
        ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### A resume, checked to the last bit
#
# Three runs of the mean tower with the same config: one straight through N steps; one
# "interrupted" after k steps (its config says `max_steps = k`, but the schedule is built for N,
# as if the machine had died); and a fresh model, optimizer and scheduler that resume from the
# interrupted run's checkpoint and finish the N steps. The last two must end with exactly the
# weights of the first.
#
# One more source of randomness hides in the kernels. Session 03's item tower encodes each
# distinct item once and gathers the result with `h[inverse]`; the backward of that gather adds
# many gradients into the same rows (`index_put_` with `accumulate=True`), and with several CPU
# threads (or on a GPU, with atomic adds) the order of those additions varies from run to run.
# Float addition is not associative, so two *uninterrupted* runs already differ in the last bits.
# `torch.use_deterministic_algorithms(True)` switches such kernels to a fixed order (a little
# slower); the cell turns it on for the comparison and restores your setting afterwards.

# %%
N, k = (12, 7) if cfg.preset == "smoke" else (20, 11)
resume_cfg = load_config("two_tower", overrides={"train.max_steps": N, "train.log_every": 5,
                                                 "train.checkpoint_every": None, "train.max_minutes": None})


def run_mean_tower(max_steps: int, resume: bool = False) -> nn.Module:
    setup = two_tower_training(ds, "mean", resume_cfg, device)
    if resume:
        torch.manual_seed(12345)  # a different RNG state: the checkpoint must restore the right one
    train_cfg = SimpleNamespace(**{**vars(resume_cfg.train), "max_steps": max_steps})
    fit(setup.model, setup.examples, loss_fn=setup.loss_fn, optimizer=setup.optimizer, cfg=train_cfg,
        scheduler=setup.scheduler, amp_dtype=setup.amp_dtype, device=device, collate_fn=setup.collate_fn,
        checkpoint_path=ckpt_dir / "resume-demo.pt", resume=resume, log=lambda line: None)
    return setup.model


def compare(a: nn.Module, b: nn.Module) -> str:
    pairs = list(zip(a.state_dict().values(), b.state_dict().values()))
    identical = all(torch.equal(x, y) for x, y in pairs)
    largest = max(float((x.double() - y.double()).abs().max()) for x, y in pairs if x.is_floating_point())
    return f"every tensor identical: {identical}, largest difference {largest:.3g}"


was = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
print(f"two uninterrupted runs of {N} steps, default kernels: {compare(run_mean_tower(N), run_mean_tower(N))}")
torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")  # cuBLAS needs more setup to be strict
try:
    straight = run_mean_tower(N)
    run_mean_tower(k)  # "crashes" after k steps, leaving its checkpoint
    resumed = run_mean_tower(N, resume=True)
finally:
    torch.use_deterministic_algorithms(was[0], warn_only=was[1])
print(f"deterministic kernels, {N} steps straight vs {k} + resume + {N - k}: {compare(straight, resumed)}")

# %% [markdown]
# ### Throughput
#
# Windows (batch rows, up to `max_len` positions each) per second through `train_step`, timed
# after a few warm-up steps, in fp32 on this device; on a CUDA GPU also with bf16 autocast (and
# fp16 with a GradScaler), with `torch.cuda.synchronize()` around the clock, since CUDA calls
# return before the GPU has finished.

# %%
def measure_throughput(tower: str, amp: torch.dtype | None, steps: int) -> tuple[float, float]:
    setup = two_tower_training(ds, tower, cfg, device)
    scaler = torch.amp.GradScaler(device.type) if needs_grad_scaler(amp) else None
    loader = DataLoader(setup.examples, batch_size=cfg.train.batch_size, shuffle=True, collate_fn=setup.collate_fn,
                        generator=torch.Generator().manual_seed(0))
    batches = []
    while len(batches) < steps + 3:
        batches += [move_to(b, device) for b in loader]
    batches = batches[: steps + 3]
    for batch in batches[:3]:  # warm-up: allocator, kernels, autotuning
        train_step(setup.model, batch, setup.optimizer, loss_fn=setup.loss_fn, scaler=scaler, amp_dtype=amp,
                   device_type=device.type, max_grad_norm=1.0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches[3:]:
        train_step(setup.model, batch, setup.optimizer, loss_fn=setup.loss_fn, scaler=scaler, amp_dtype=amp,
                   device_type=device.type, max_grad_norm=1.0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    windows = sum(batch_size_of(b) for b in batches[3:])
    positions = sum(int(b["mask"].sum()) for b in batches[3:])
    return windows / seconds, positions / seconds


bench_steps = 3 if cfg.preset == "smoke" else 10
precisions = {"fp32": None}
if device.type == "cuda":
    precisions["bf16 autocast"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    precisions["fp16 + GradScaler"] = torch.float16
print(f"{'tower':>11}  {'precision':<18} {'windows/s':>10} {'positions/s':>12}   ({device.type}, batch "
      f"{cfg.train.batch_size}, {bench_steps} timed steps)")
for tower in ("mean", "transformer"):
    for label, amp in precisions.items():
        if label != "fp32" and amp is None:
            continue
        windows_per_s, positions_per_s = measure_throughput(tower, amp, bench_steps)
        print(f"{tower:>11}  {label:<18} {windows_per_s:>10,.0f} {positions_per_s:>12,.0f}")

# %% [markdown]
# The same loop on several processes: `torchrun` starts them, `fit` wraps the model in DDP.
# On a CPU it runs on the Gloo backend (a test of the code path, not a speed-up on two cores);
# on a machine with N GPUs, `--nproc_per_node N` uses them all:
#
# ```bash
# torchrun --standalone --nproc_per_node 2 -m harness train --dataset synthetic --preset smoke --tower mean --out runs/ddp
# HARNESS_IMPL=sessions torchrun ... -m harness train ...   # your notebook's loop instead of the reference
# ```
#
# Each rank writes `result-rank<r>.json` with its parameter checksum: they must be equal.
#
# ## Reflection
#
# 1. Your run logged the gradient norm before clipping. In the history above, how often was
#    it above `max_grad_norm`, and at which phase of the schedule? What would you change if it
#    were clipped on every step?
# 2. A checkpoint from step 40,000 resumes bit-exactly on a CPU. List every piece of state that
#    had to be saved for that, and for each one what the resumed run would do differently
#    without it.
# 3. On an A100, bf16 autocast needs no GradScaler while fp16 does. Using the `finfo` numbers
#    printed above, explain why, and say what bf16 gives up in exchange.
# 4. Under DDP with N ranks and a per-rank batch of B windows, the in-batch softmax of each rank
#    sees only its own B windows as negatives. How does that differ from one process with a batch
#    of N·B, and what would you need to all-gather to make them equal?
#
# **Next:** session 06 evaluates these models properly (Recall@K, exact and approximate search
# with FAISS) and compares the two towers.
