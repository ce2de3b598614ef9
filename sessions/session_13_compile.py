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
# # Session 13 — `torch.compile`: graph breaks, recompiles and honest timing
#
# Your models are written; now make them faster, and prove it. `torch.compile` turns a model's
# Python into a few large graphs and generates fused kernels for them (Triton on a GPU, C++ with
# OpenMP on a CPU). It works when the model lets it: every line Python must run by itself breaks
# the graph, and every change of shape the compiled code did not expect compiles it again. And a
# speed-up is only a speed-up if the clock measured what you think it measured.
#
# ```
#   model(x) ─► Dynamo: Python bytecode ─► FX graph + guards ─► AOTAutograd: forward (+ backward) ─► Inductor: fused kernels
#                 │ an operation it cannot put in a graph: a GRAPH BREAK (back to Python, a new graph after it)
#                 └ on the next call a guard fails (new shape, dtype, Python constant): a RECOMPILE
# ```
#
# You write five pieces:
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `benchmark` | a timer you can trust: warm-up, device synchronisation, many repeats, median and spread |
# | 2 | `graph_break_report` | how many graphs, how many breaks, why and where, and does it compile as one graph |
# | 3 | `FixedScorer` | the provided `BrokenScorer`, full of typical breaks, rewritten to compile as one graph, same outputs |
# | 4 | `count_compiles` | how many times a function is compiled over a stream of batches |
# | 5 | `pad_to_bucket` | bucketed padding: a few shapes, so a few compiles |
#
# Then you compile the models of the earlier sessions (the two-tower user towers, the item tower's
# scoring, the DLRM once session 07 exists, the session-16 decoder when it does): eager against the
# compiled modes that apply to your device, inference and a training step, fp32 and mixed precision.
# `python -m harness bench` runs the same measurements as the workbook's performance report, with
# the reference's `benchmark` or, with `--impl sessions`, with yours.
#
# **Before:** [readings/session_13.md](../readings/session_13.md): the `torch.compile` tutorial, the
# troubleshooting guide on graph breaks, and the TorchDynamo design notes (about 60 minutes).

# %% tags=["export"]
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import nn

# %%
from harness import Checker

check = Checker(session=13, namespace=globals())

# %% [markdown]
# ## 1. Timing honestly
#
# Four things make a naïve `time.perf_counter()` around a model call lie.
#
# * **The GPU runs behind the CPU.** A CUDA call *queues* a kernel and returns at once; Python
#   moves on while the GPU works. `start = perf_counter(); model(x); stop = perf_counter()` on a GPU
#   measures how long it took to *launch* the kernels, often a tenth of the real time. Before the
#   clock stops, wait for the device: `torch.cuda.synchronize()`. And before it *starts*, too: work
#   queued earlier (the warm-up's) must not be billed to the first timed call.
# * **The first calls are not like the others.** The first call of a compiled model compiles it
#   (seconds to minutes); the first calls of any model allocate memory, load kernels, fill caches,
#   and on a GPU with `max-autotune` benchmark kernel variants. Run a few **untimed warm-up** calls.
# * **One measurement is noise.** The OS schedules other work, Python's garbage collector pauses, a
#   neighbour on a shared machine takes the cores. Time **many repeats** of one call each.
# * **The mean is the wrong summary.** Timing distributions are skewed: most calls take the usual
#   time, a few take much longer. Report the **median**, and the **interquartile range** (IQR, the
#   75th minus the 25th percentile) as the spread: a "1.3× faster" whose IQR is as large as the
#   difference is not a result. Compare two variants in **one run**, on one machine, one after
#   the other: a ratio measured that way survives a busy machine far better than absolute times do.
#
# ```
#   CPU:  launch k1 k2 k3 ──► returns  ·  ·  ·  ·  ·  ·  · synchronize() returns
#   GPU:        [  k1  ][    k2    ][ k3 ]                 ▲ the real end of the call
#               ◄──── what the clock must measure ────────►
# ```
#
# `synchronize(device)` below waits for all queued work on a device, and is a no-op on the CPU,
# where every operation has finished when it returns. On CUDA the other honest clock is a pair of
# CUDA events (`torch.cuda.Event(enable_timing=True)`, `start.record()`, ... `end.record()`,
# `end.synchronize()`, `start.elapsed_time(end)` in milliseconds): they time the GPU's own stream.
# `torch.utils.benchmark.Timer` does all of this for you (it synchronises the accelerator and adapts
# the number of runs); write it by hand once, so you know what it does.

# %% tags=["export"]
def synchronize(device: torch.device | str) -> None:
    """Wait until all work queued on ``device`` has finished (provided); a no-op on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    elif device.type == "xpu":
        torch.xpu.synchronize(device)


# %% [markdown]
# ## Exercise 1 — `benchmark`
#
# Call `fn()` `warmup` times without timing it, then wait for the device, then time `repeats`
# calls one by one: the clock starts, `fn()` runs, the device is synchronised, the clock stops.
# Return milliseconds, as plain Python floats (the bench writes them to JSON). Exactly
# `warmup + repeats` calls of `fn`: the autograder counts them.

# %% tags=["export"]
def benchmark(fn: Callable[[], Any], *, device: torch.device | str = "cpu", warmup: int = 3,
              repeats: int = 20) -> dict:
    """Time ``fn()`` honestly: untimed warm-up, device synchronisation, one sample per call.

    Args:
        fn: the call to time, with no arguments (wrap a model call in a lambda).
        device: where ``fn`` runs; its queued work is waited for with ``synchronize(device)``
            before the first timed call and at the end of every timed call.
        warmup: untimed calls first (compilation, allocation, caches, autotuning happen there).
        repeats: timed calls, one sample each.

    Returns:
        dict of floats in milliseconds: ``median_ms``, ``iqr_ms`` (75th minus 25th percentile),
        ``mean_ms``, ``min_ms``, ``max_ms``, and ``times_ms`` (the ``repeats`` samples, in call
        order); plus ``warmup`` and ``repeats`` (ints) and ``device`` (str, e.g. "cuda").
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 1 `benchmark` (session 13) is not implemented yet: replace this line with your code")


# %%
check("benchmark")

# %% [markdown]
# What a missing warm-up and a mean do to a number: a function whose first call "compiles" for
# 300 ms and then runs in about 2 ms, timed without warm-up and summarised by the mean, against
# your `benchmark`.

# %%
calls = {"n": 0}


def compiles_on_first_call():
    calls["n"] += 1
    time.sleep(0.3 if calls["n"] == 1 else 0.002)


start = time.perf_counter()
for _ in range(10):
    compiles_on_first_call()
naive = (time.perf_counter() - start) / 10 * 1000
calls["n"] = 0
honest = benchmark(compiles_on_first_call, warmup=2, repeats=10)
print(f"naive mean of 10 calls, first included: {naive:.1f} ms | benchmark: median {honest['median_ms']:.2f} ms, "
      f"IQR {honest['iqr_ms']:.2f} ms")

# %% [markdown]
# ## 2. Graph breaks
#
# Dynamo reads your function's bytecode and records every tensor operation into an FX graph,
# checking along the way what the graph assumes (the **guards**: shapes, dtypes, devices, the
# values of Python constants). When it meets something it cannot record, it **breaks the graph**:
# it compiles what it has so far, lets Python run the offending code, and starts a new graph after
# it. Each break costs a round trip through Python, cuts the region Inductor can fuse, and on a
# GPU stalls the stream. The usual suspects:
#
# | in `forward` | why Dynamo stops | the fix |
# | --- | --- | --- |
# | `x.item()`, `x.tolist()`, `int(x)`, `float(x)` | a Python number that depends on the data cannot be known while tracing | keep it a tensor: `torch.where`, `clamp`, masks |
# | `if x.max() > 1:`, `while loss > eps:` | Python control flow on a tensor's value | compute both sides and select with `torch.where`, or `torch.cond` |
# | `print`, logging, calls into C extensions | Dynamo cannot trace them | remove them from `forward`, or move them outside the compiled region |
# | a NumPy function Dynamo does not know (`np.digitize`) | Dynamo translates many NumPy calls into torch ops (`np.log1p`, `np.searchsorted` trace fine), not all | the torch equivalent (`torch.bucketize`) |
# | `x[mask]`, `nonzero`, `torch.unique` | the output's shape depends on the data (in the default mode) | fixed shapes: multiply by the mask instead of selecting |
#
# Two sharper problems hide behind these. A **graph break inside a Python loop** makes Dynamo give
# up on the whole rest of the function: it runs eagerly, and nothing in it is compiled, however many
# operations it has. And a loop over the rows of a batch (`for b in range(B)`) that does trace is
# unrolled into `B` copies of its body: a huge graph, recompiled for every batch size.
#
# **Reading the breaks.** `torch._dynamo.explain(fn)(*args)` compiles `fn` with a backend that
# records the graphs instead of compiling them, and returns `graphs` (each an `fx.GraphModule`),
# `graph_count` and `break_reasons`, each with a `reason` and a `user_stack` whose last frame is the
# line that broke. A graph's operations are the nodes of `gm.graph.nodes` whose `op` is
# `call_function`, `call_method` or `call_module` (its `op_count` counts only the first kind).
# Read it with care: its `graph_break_count` is simply `graph_count - 1`; a function whose rest was
# skipped after a break in a loop shows few graphs and few operations; and some breaks leave no
# reason in the list at all (at a Python builtin like `print`, or inside a function that `forward`
# calls, where the break still splits the graph: more graphs than named breaks + 1 means exactly
# that). The definitive test is **`torch.compile(fn, fullgraph=True)`**, which raises at the first
# break instead of working around it. With `backend="eager"` Dynamo still traces everything, but the graph then runs as it is, so
# the check costs a fraction of a second instead of Inductor's seconds.
#
# One subtlety: `fullgraph=True` also lets Dynamo *capture* two things the default mode breaks on,
# Python numbers from `.item()` and data-dependent output shapes (`torch.unique`, `x[mask]`), as
# symbolic values. A model can therefore compile as one graph with `fullgraph=True` and still break
# in the default mode: session 03's item tower encodes each distinct item of a batch once, with
# `torch.unique`, and the report of a user tower shows three graphs and no named break (the break sits
# in the item tower's `encode`, a call away from `forward`). Your report shows both verdicts.
#
# ## Exercise 2 — `graph_break_report`
#
# Run `torch._dynamo.explain(fn)(*args, **kwargs)`; then `torch._dynamo.reset()` and try
# `torch.compile(fn, backend="eager", fullgraph=True)(*args, **kwargs)`, catching the exception it
# raises at a break. Each reason is one line, `"<file name>:<line>: <first line of the reason>"`,
# from the break's `user_stack[-1]` (its `filename` and `lineno`; use the file's name only, not the
# whole path). Reset Dynamo again at the end, so the report leaves no compiled code behind.

# %% tags=["export"]
def graph_break_report(fn: Callable, *args, **kwargs) -> dict:
    """What Dynamo makes of ``fn(*args, **kwargs)``.

    Returns:
        dict with ``graphs`` (int, graphs captured by ``explain``), ``ops`` (int, operations recorded in
        them: nodes of the graphs whose ``op`` is ``call_function``, ``call_method`` or ``call_module``),
        ``breaks`` (int, the number of break reasons ``explain`` lists), ``reasons`` (list of str,
        ``"file.py:LINE: reason"``, one per break, in order), ``fullgraph`` (bool: ``torch.compile(fn,
        backend="eager", fullgraph=True)`` runs ``fn`` without error) and ``fullgraph_error`` (str: the
        first line of that error, or None).
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 2 `graph_break_report` (session 13) is not implemented yet: replace this line with your code")


# %%
check("graph_break_report")


def print_report(name: str, report: dict) -> None:
    verdict = "compiles as one graph" if report["fullgraph"] else f"does NOT: {report['fullgraph_error'][:110]}"
    print(f"{name}: {report['graphs']} graph(s), {report['ops']} ops, {report['breaks']} break(s); "
          f"fullgraph=True {verdict}")
    for reason in report["reasons"]:
        print(f"    {reason[:140]}")


def with_breaks(x):
    y = x.sin()
    scale = y.abs().max().item()  # a Python float from the data
    print("scale", round(scale, 3))  # a builtin Dynamo will not trace
    return y / scale


print_report("with_breaks", graph_break_report(with_breaks, torch.randn(4, 8)))

# %% [markdown]
# ## 3. A scorer full of graph breaks
#
# `BrokenScorer` below is a small ranking model of the kind you have built: it pools the embeddings
# of a user's left-padded history (item embedding plus an embedding of each item's distance from the
# most recent one), adds an embedding of the history's length bucket, applies a residual MLP, clips
# the user vector's norm to `max_norm`, and scores candidate items by dot product. Its arithmetic is
# right; its `forward` is written the way a first draft often is, and almost none of it compiles:
#
# 1. it trims the columns that are padding in every row, with `.item()`: a new shape for every batch;
# 2. it creates the position ids on the CPU at every call (on a GPU, a host-to-device copy per call,
#    and a reason for CUDA graphs to refuse the graph);
# 3. it pools one user at a time into a **Python list of tensors**, with a Python `if` on a tensor
#    value and boolean indexing (a data-dependent shape);
# 4. it bucketises the history lengths with **NumPy** (`np.digitize`, which Dynamo cannot translate),
#    after a `.cpu()` that on a GPU waits for the device;
# 5. it clips each row's norm in a Python loop, with `.item()` and a Python `if`.
#
# ```
#   history (B, L) ─► item emb + position emb (distance from the most recent item) ─► masked mean ─┐
#   mask (B, L) ──────► length = Σ mask ─► bucket: [0,2) [2,5) [5,10) [10,20) [20,∞) ─► length emb ─┴► + ─► x + MLP(x) ─► clip ‖·‖ to max_norm ─► u
#   candidates (B, C) ─► item emb ─────────────────────────────────────────────────────────────────────────────────────────► scores = ⟨item, u⟩ (B, C)
# ```

# %% tags=["export"]
class BrokenScorer(nn.Module):
    """Scores candidate items for each user from a left-padded history (provided; full of graph breaks).

    ``forward(history, mask, candidates)``: history int64 (B, L) left-padded with 0, mask bool (B, L)
    (True = a real item), candidates int64 (B, C) -> scores float32 (B, C). The position of an item is
    its distance from the most recent item (the last column is 0), so left padding changes nothing.
    A user with no history pools to the zero vector.

    | attribute | module | parameters (shape) |
    | --- | --- | --- |
    | ``item_embedding`` | ``nn.Embedding(n_items + 1, dim, padding_idx=0)`` | ``weight`` (n_items + 1, dim) |
    | ``position_embedding`` | ``nn.Embedding(max_len, dim)`` | ``weight`` (max_len, dim) |
    | ``length_embedding`` | ``nn.Embedding(len(LENGTH_EDGES) + 1, dim)`` | ``weight`` (5, dim) |
    | ``mlp`` | ``Sequential(Linear(dim, 2 dim), GELU(), Linear(2 dim, dim))`` | ``0.*``, ``2.*`` |
    | ``length_edges`` | buffer (not saved): ``LENGTH_EDGES`` as an int64 tensor | — |
    """

    LENGTH_EDGES = (2, 5, 10, 20)  # bucket i holds lengths in [edge[i-1], edge[i]): np.digitize's rule

    def __init__(self, n_items: int, dim: int = 32, max_len: int = 50, max_norm: float = 1.0):
        super().__init__()
        self.max_len, self.max_norm = max_len, float(max_norm)
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, dim)
        self.length_embedding = nn.Embedding(len(self.LENGTH_EDGES) + 1, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        # The same edges as a tensor, moving with .to(device); not in the state_dict. This forward ignores it.
        self.register_buffer("length_edges", torch.tensor(self.LENGTH_EDGES, dtype=torch.long), persistent=False)

    def forward(self, history: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        # (1) drop the columns that are padding in every row: a different shape for every batch
        longest = int(mask.sum(dim=1).max().item())
        history, mask = history[:, history.shape[1] - longest:], mask[:, mask.shape[1] - longest:]
        # (2) a tensor created on the CPU at every call: distance from the most recent item
        positions = torch.arange(longest - 1, -1, -1).to(history.device)
        h = self.item_embedding(history) + self.position_embedding(positions)
        # (3) one user at a time, into a Python list
        pooled = []
        for b in range(history.shape[0]):
            if mask[b].any():
                pooled.append(h[b][mask[b]].mean(dim=0))
            else:
                pooled.append(torch.zeros(h.shape[-1]).to(h.device))
        user = torch.stack(pooled)
        # (4) NumPy: history-length buckets
        lengths = mask.sum(dim=1).cpu().numpy()
        buckets = torch.from_numpy(np.digitize(lengths, self.LENGTH_EDGES)).to(user.device)
        user = user + self.length_embedding(buckets)
        user = user + self.mlp(user)
        # (5) clip each user vector's norm to max_norm, one row at a time
        rows = []
        for u in user:
            norm = u.norm()
            rows.append(u * (self.max_norm / norm) if norm.item() > self.max_norm else u)
        user = torch.stack(rows)
        return (self.item_embedding(candidates) * user[:, None, :]).sum(dim=-1)


def scorer_batch(n_items: int, batch_size: int, max_len: int, n_candidates: int = 8, seed: int = 0,
                 lengths: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random batch for the scorers (provided): (history (B, L) left-padded, mask, candidates (B, C)).

    History lengths are drawn from 0..max_len (row 0 is empty, row 1 full) unless ``lengths`` gives them.
    """
    g = torch.Generator().manual_seed(seed)
    if lengths is None:
        lengths = torch.randint(0, max_len + 1, (batch_size,), generator=g)
        lengths[0] = 0
        lengths[min(1, batch_size - 1)] = max_len
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    history = torch.randint(1, n_items + 1, (len(lengths), max_len), generator=g)
    mask = torch.arange(max_len)[None, :] >= (max_len - lengths)[:, None]
    candidates = torch.randint(1, n_items + 1, (len(lengths), n_candidates), generator=g)
    return history * mask, mask, candidates


# %%
torch.manual_seed(0)
broken = BrokenScorer(100, dim=16, max_len=12).eval()
demo_batch = scorer_batch(100, batch_size=6, max_len=12)
print_report("BrokenScorer", graph_break_report(broken, *demo_batch))

# %% [markdown]
# One break, one graph of a handful of operations, and `fullgraph=True` stops at a data-dependent
# branch the list never mentioned: after the first break, the rest of `forward` hit a break inside a
# loop and was skipped, so it runs eagerly and nothing in it was compiled. Fix a break, run the report
# again, and the next one shows up: that is how this work goes.
#
# ## Exercise 3 — `FixedScorer`
#
# `FixedScorer` subclasses `BrokenScorer`: same `__init__`, so the same parameters (the table above)
# and the buffer `self.length_edges`. Write its `forward`: the same function, in tensor operations
# over the whole batch, with
#
# * **no trimming**: keep all `L` columns; padded positions must contribute nothing to the pooled mean
#   (multiply by the mask, divide by the number of real items, at least 1: an empty history pools to 0);
# * **position ids made on the input's device** (`torch.arange(..., device=history.device)`): with
#   positions measured from the most recent item, the untrimmed and the trimmed histories get the same
#   embeddings;
# * **`torch.bucketize`** on `self.length_edges` for the length buckets. Careful: `np.digitize(x, edges)`
#   puts `x` in bucket `i` when `edges[i-1] <= x < edges[i]`, which is `torch.bucketize(..., right=True)`;
#   the default `right=False` moves every length that sits exactly on an edge to the bucket below;
# * **no Python branch on a value**: the norm clip as one expression, `u * min(1, max_norm / ‖u‖)` per row
#   (`clamp` on a tensor of factors; guard the division with `clamp_min(1e-12)`).
#
# Nothing in `forward` may call `.item()`, NumPy, or build a list of tensors. The autograder loads a
# `BrokenScorer`'s weights into yours and compares outputs and gradients on batches with empty, full,
# and on-the-edge histories; compiles yours with `fullgraph=True`; checks that no graph break is left;
# and runs it on the `meta` device, where a tensor made on the CPU fails as it would on a GPU.

# %% tags=["export"]
class FixedScorer(BrokenScorer):
    """``BrokenScorer``'s function, in batched tensor operations that compile as one graph.

    ``forward(history, mask, candidates)``: int64 (B, L), bool (B, L), int64 (B, C) -> float32 (B, C),
    equal to ``BrokenScorer.forward`` with the same weights (to float rounding).
    """

    def forward(self, history: torch.Tensor, mask: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        # YOUR CODE HERE
        raise NotImplementedError("exercise 3 `FixedScorer` (FixedScorer.forward) (session 13) is not implemented yet: replace this line with your code")


# %%
check("FixedScorer")
fixed = FixedScorer(100, dim=16, max_len=12).eval()
fixed.load_state_dict(broken.state_dict())
with torch.no_grad():
    gap = (fixed(*demo_batch) - broken(*demo_batch)).abs().max().item()
print(f"largest difference between the two scorers' outputs: {gap:.2e}")
print_report("FixedScorer", graph_break_report(fixed, *demo_batch))

# %% [markdown]
# ## 4. Recompiles
#
# A compiled graph is valid under its guards. By default Dynamo assumes every size it sees is a
# constant and specialises the kernels to it; when a guard fails on a later call (a batch of 57
# rows after batches of 64) it compiles again. `torch.compile`'s `dynamic` argument decides what
# happens then:
#
# * `dynamic=False`: every new shape is a new compile, until `torch._dynamo.config.recompile_limit`
#   (8) compiles of one function, after which it silently runs **eagerly**;
# * `dynamic=None` (the default, "automatic dynamic"): the first time a size changes, Dynamo
#   recompiles with that dimension symbolic, and later sizes reuse that graph;
# * `dynamic=True`: symbolic sizes from the start. Sizes 0 and 1 are still specialised (a dimension
#   of size 1 broadcasts, so it is a different program), and symbolic kernels can be slower than
#   kernels made for one size.
#
# **Bucketed padding** is the other way, and the one CUDA graphs need (`mode="reduce-overhead"`
# records one graph per shape): pad each batch up to the next of a few fixed sizes (say 8, 16, 32,
# 64), run the model, and drop the padded rows' outputs. A serving system that forms micro-batches
# (session 15) gets a handful of shapes, each compiled once with static, specialised kernels, at
# the price of some wasted rows. The same idea applies along the sequence length.
#
# ## Exercise 4 — `count_compiles`
#
# Count the graphs a backend is asked to compile while `fn` runs over `batches`. A backend is any
# callable `backend(gm, example_inputs)` that returns something to call in place of the graph;
# `gm.forward` runs it as it is, so a counting backend costs only the tracing. Reset Dynamo first:
# it keeps what it learned about a function across `torch.compile` calls (its compiled code, and which
# sizes it has seen change, which automatic dynamic acts on), so a function compiled anywhere before
# would be counted wrongly. Reset it again at the end.

# %% tags=["export"]
def count_compiles(fn: Callable, batches: Sequence[tuple], *, dynamic: bool | None = None) -> int:
    """Number of graphs compiled while ``torch.compile(fn, dynamic=dynamic)`` runs ``fn(*batch)`` for each batch.

    Each batch is a tuple of positional arguments. For a function that compiles as one graph, the
    count is 1 plus the number of recompiles; every graph break adds graphs too.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 4 `count_compiles` (session 13) is not implemented yet: replace this line with your code")


# %%
check("count_compiles")

# %% [markdown]
# ## Exercise 5 — `pad_to_bucket`
#
# Pad the first dimension of every tensor in a batch with zeros up to the smallest bucket that holds
# it, and return the padded tensors with the real batch size, so the caller can keep `output[:n]`.
# The buckets may come in any order. A batch larger than every bucket is an error with a message
# that says what to do (split the batch, or add a bucket), never a silent truncation. Zero rows are
# empty histories here (all-False masks, padding item ids), which the scorer handles.

# %% tags=["export"]
def pad_to_bucket(tensors: Sequence[torch.Tensor], buckets: Sequence[int]) -> tuple[list[torch.Tensor], int]:
    """Zero-pad dim 0 of each tensor to the smallest bucket >= the batch size.

    Args:
        tensors: tensors with the same size n along dim 0 (any dtype, any device).
        buckets: allowed batch sizes (positive ints, any order).

    Returns:
        (padded, n): new tensors of batch size ``min(b for b in buckets if b >= n)``, the first n rows
        equal to the inputs and the rest zeros (False for bool), same dtype and device; and n.

    Raises:
        ValueError: the tensors disagree on n, or n is larger than every bucket.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 5 `pad_to_bucket` (session 13) is not implemented yet: replace this line with your code")


# %%
check("pad_to_bucket")

# %% [markdown]
# ## Run it, part 1: the scorer, broken and fixed
#
# Both scorers at a realistic size, the embedding table the size of the current dataset's catalog:
# eager, and compiled with Inductor (`torch.compile(model)`, the default mode). The broken one is
# compiled the way most people first try, without `fullgraph=True`: `torch.compile` then works around
# every break, and what runs is mostly the eager model plus Dynamo's bookkeeping. The first call of
# each compiled model is timed on its own: that is the compilation, which `benchmark`'s warm-up keeps
# out of the median. The dataset is `WORKBOOK_DATASET` (MovieLens-100K by default), and
# `WORKBOOK_PRESET=smoke` makes everything small.

# %%
import os

import matplotlib.pyplot as plt

from harness.config import load_config
from harness.data import load_dataset
from harness.env import pick_device

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
cfg = load_config("two_tower")
SMOKE = cfg.preset == "smoke"
device = pick_device()
ds = load_dataset(DATASET)
BATCH, MAX_LEN, CANDIDATES, DIM = (64, 20, 20, 32) if SMOKE else (256, cfg.train.max_len, 100, cfg.model.dim)
REPEATS = 10 if SMOKE else 30
print(f"{DATASET}: {ds.n_items:,} items | device {device.type} | torch {torch.__version__} | "
      f"{torch.get_num_threads()} CPU threads | batch {BATCH} x {MAX_LEN}, {CANDIDATES} candidates, dim {DIM}")

torch.manual_seed(0)
broken = BrokenScorer(ds.n_items, dim=DIM, max_len=MAX_LEN).to(device).eval()
fixed = FixedScorer(ds.n_items, dim=DIM, max_len=MAX_LEN).to(device).eval()
fixed.load_state_dict(broken.state_dict())
batch = [t.to(device) for t in scorer_batch(ds.n_items, BATCH, MAX_LEN, CANDIDATES, seed=1)]

timings, first_call = {}, {}
for name, model in (("broken", broken), ("fixed", fixed)):
    for compiled in (False, True):
        label = f"{name}, {'compiled' if compiled else 'eager'}"
        torch._dynamo.reset()
        run = torch.compile(model) if compiled else model

        def call(run=run):
            with torch.no_grad():
                return run(*batch)

        start = time.perf_counter()
        call()
        synchronize(device)
        first_call[label] = time.perf_counter() - start
        timings[label] = benchmark(call, device=device, warmup=3, repeats=REPEATS)
        print(f"{label:>17}: median {timings[label]['median_ms']:8.2f} ms (IQR {timings[label]['iqr_ms']:.2f}); "
              f"first call {first_call[label]:.2f} s")
rewrite = timings["broken, eager"]["median_ms"] / timings["fixed, eager"]["median_ms"]
compiling = timings["fixed, eager"]["median_ms"] / timings["fixed, compiled"]["median_ms"]
print(f"\nthe rewrite alone (both eager): {rewrite:.1f}x; compiling the fixed scorer: {compiling:.2f}x "
      f"({'faster' if compiling > 1 else 'slower'} than its eager run); compiling the broken one: "
      f"{timings['broken, eager']['median_ms'] / timings['broken, compiled']['median_ms']:.2f}x")

# %%
fig, ax = plt.subplots(figsize=(7, 3))
labels = list(timings)
bars = ax.barh(labels, [timings[k]["median_ms"] for k in labels],
               xerr=[timings[k]["iqr_ms"] / 2 for k in labels], color=["tab:red", "tab:red", "tab:green", "tab:green"])
ax.bar_label(bars, fmt="%.2f ms", padding=4)
ax.set_xlabel(f"median ms per batch of {BATCH} (error bar: IQR / 2)")
ax.invert_yaxis()
ax.set_title(f"BrokenScorer vs FixedScorer on {device.type}")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the ratios, not the absolute times, and look at the IQRs before you believe a difference.
# The rewrite removes the per-user Python loop and the `.item()` calls, which are slow in any mode: the
# compiler cannot help a model it cannot trace, and `torch.compile` on the broken scorer mostly adds
# Dynamo's bookkeeping to an eager run. What compiling the fixed scorer buys depends on the size: at
# the laptop preset's batch of 256 it fuses the small operations (masked mean, norm clip, embedding
# sums) into a few kernels; at the smoke preset's tiny batch there is little to fuse, and on a busy
# CPU the compiled kernels' OpenMP threads can wait for a core (the IQR shows it).
#
# ## Run it, part 2: recompiles over changing batch sizes
#
# The same stream of batches, 10 different sizes, through `count_compiles`: static shapes, automatic
# dynamic, dynamic from the start, and static shapes with bucketed padding.

# %%
sizes = [3, 17, 9, 33, 5, 64, 1, 40, 12, 60]
stream = [scorer_batch(ds.n_items, n, MAX_LEN, CANDIDATES, seed=i) for i, n in enumerate(sizes)]
BUCKETS = (8, 16, 32, 64)
padded_stream = [tuple(pad_to_bucket(batch, BUCKETS)[0]) for batch in stream]  # padded before the compiled model

cpu_fixed = fixed.cpu()
counts = {f"dynamic={d}": count_compiles(cpu_fixed, stream, dynamic=d) for d in (False, None, True)}
counts[f"buckets {BUCKETS}, dynamic=False"] = count_compiles(cpu_fixed, padded_stream, dynamic=False)
for name, n in counts.items():
    print(f"{name:>32}: {n} compile(s) for {len(sizes)} batches of sizes {sizes}")
print(f"buckets used: {sorted({int(b[0].shape[0]) for b in padded_stream})}")
with torch.no_grad():
    (history, mask, candidates), n = pad_to_bucket(stream[0], BUCKETS)
    padded_out = cpu_fixed(history, mask, candidates)[:n]
    plain_out = cpu_fixed(*stream[0])
print(f"the real rows of a padded batch: largest difference from the unpadded run "
      f"{(padded_out - plain_out).abs().max().item():.2e}")
fixed.to(device)

# %% [markdown]
# With `dynamic=False` every new size compiles, until the recompile limit: Dynamo then warns (above)
# and runs the function eagerly from there on, the worst of both worlds. Automatic dynamic recompiles
# once when a size first changes; it and `dynamic=True` also compile a batch of one on its own (0/1
# specialisation). Bucketing compiles once per bucket used, with static shapes, and the real rows'
# outputs are unchanged. Pad *before* the compiled model, as above: padding inside the compiled
# function reads the incoming batch size, and Dynamo guards on it, so every size would compile again.
#
# ## Run it, part 3: your models, compiled
#
# `harness.bench` builds the earlier sessions' models at the pipeline's sizes (from the pipeline's
# checkpoints when `python -m harness pipeline` has trained them, else with random weights: the time
# does not depend on them), checks each with **your** `graph_break_report`, and times eager against
# `torch.compile` with **your** `benchmark`: inference on a batch of 256 histories, a training step
# (session 04's in-batch softmax loss, session 05's batch of windows, AdamW) and mixed precision where
# the device runs it natively (bf16 on recent GPUs and on CPUs with AVX-512 BF16 or AMX; fp16 with a
# GradScaler on older GPUs). Every model is compiled with `fullgraph=True`: one graph, or an error.
#
# Modes: `default`; `reduce-overhead` records CUDA graphs, replaying a whole forward with one launch
# (it removes the CPU's launch overhead, which dominates small batches; it needs static shapes, and
# an output is overwritten by the next replay, so clone what you keep); `max-autotune` benchmarks
# kernel variants for each matrix product at compile time (minutes) and uses CUDA graphs too. On a CPU
# there are no CUDA graphs, so `reduce-overhead` is `default`; `max-autotune` benchmarks C++
# matrix-product templates there, at a large compile cost, so the bench runs it on a CPU only when
# asked (`--modes eager default max-autotune`).
#
# The models come from `upstream` (the reference solutions, unless you set
# `HARNESS_UPSTREAM=sessions`); `python -m harness bench --impl sessions` runs every case, FAISS
# included, on your own code and writes the report. Here the run gets a budget of 8 minutes and 15
# timed calls per variant: the variants that would not finish in it (the training steps come last)
# are skipped, and the table says so. On a CPU, mixed precision is measured at inference only (the workbook trains in fp32 there).
# With the smoke preset only the item tower's scoring is timed, at inference.

# %%
from harness.bench import run_bench

bench = run_bench(cases=["item tower scoring"] if SMOKE else ["two-tower mean", "two-tower transformer",
                                                          "item tower scoring", "dlrm", "decoder"],
                  device=device, dataset=DATASET, preset=cfg.preset,
                  phases=("inference",) if SMOKE else ("inference", "train"),
                  precisions=("fp32",) if SMOKE else None, budget_minutes=8,
                  repeats=10 if SMOKE else 15, benchmark=benchmark, graph_break_report=graph_break_report, write=False)
print(bench.markdown())

# %%
rows = [r for r in bench.rows if r.get("status") == "ok" and r["mode"] != "eager"]
if rows:
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    labels = [f"{r['case']} | {r['phase']} | {r['precision']} | {r['mode']}" for r in rows]
    values = [r["speedup"] for r in rows]
    bars = ax.barh(labels, values, color=["tab:green" if v >= 1 else "tab:red" for v in values])
    ax.bar_label(bars, fmt="%.2fx", padding=4)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("speed-up of the compiled model over eager (same precision, same run)")
    ax.invert_yaxis()
    plt.tight_layout()
    plt.show()

# %% [markdown]
# What to look for in your table: which models gain, in which phase, and why. Small models at small
# batches are bound by overheads (Python, kernel launches) that fusion and CUDA graphs remove; large
# matrix products are already one efficient library call, and compiling them gains little. A training
# step whose loss selects rows with a mask (`per_position[mask]`) hands Inductor data-dependent shapes,
# which it must compile for any size: look at what that does to the compiled training step. And on a
# CPU, compare the compile time with the milliseconds saved per call: how many calls does it take to
# pay for itself?
#
# ## Reflection
#
# 1. Your `benchmark` synchronises after every call. For a kernel of 20 µs, what does that cost, and
#    when would you time a block of calls with one synchronisation (or CUDA events) instead?
# 2. `explain` reported one break in `BrokenScorer`, and `fullgraph=True` found another. Why do you need
#    both, and which would you put in a test that guards a production model?
# 3. Session 03's item tower calls `torch.unique` to encode each distinct item once. It compiles with
#    `fullgraph=True` and breaks the graph in the default mode. Would you remove it for the compiler's
#    sake? Measure the tower both ways before you decide.
# 4. A serving system batches requests (session 15). Choose buckets for traffic of 1 to 200 requests per
#    batch: how many, which sizes, and what fraction of the GPU's work is padding with your choice?
# 5. The compiled training step of the two-tower model: where does its time go, and how would you
#    rewrite the loss so that it has fixed shapes? What would you check to be sure it still computes
#    the same loss?
#
# **After:** [readings/session_13.md](../readings/session_13.md): the `torch.compile` troubleshooting
# guide's sections on recompilation and dynamic shapes, and the CUDA graphs notes.
# **Next:** session 14 serves the pipeline behind an HTTP endpoint, where latency is what you timed today.
