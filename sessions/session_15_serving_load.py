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
# # Session 15 — Serving II: micro-batching and load tests
#
# Session 14's server answers one request at a time: each request runs its own forward pass of
# the user tower, a FAISS search and the DLRM over its candidates. Under concurrency the model
# work of 32 requests is 32 small calls, each paying Python's and PyTorch's fixed overhead. Today
# you batch them: requests wait in a queue for a moment, a batch forms, **one** forward pass serves
# all of them, and each request gets its own row back. Then you measure, with a real load
# generator against the real server: latency percentiles, throughput and errors, batched against
# unbatched, from 1 to 32 concurrent clients, and where a request's time actually goes.
#
# ```
#   request 1 ──► submit ──┐                       ┌──► row 0 ──► response 1
#   request 2 ──► submit ──┤  queue   collect_batch│
#   request 3 ──► submit ──┼──────►  (max_batch, ──┼──► rank_batch: ONE forward pass ──► row 1 ──► response 2
#        ...               │          max_wait_ms) │    (in a worker thread)             row 2 ──► response 3
#   request B ──► submit ──┘                       └──► ...
#   a batch closes when max_batch requests wait, or max_wait_ms after its first request was taken
# ```
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `collect_batch` | take one batch from the queue: up to `max_batch` items, waiting at most `max_wait_ms` after the first |
# | 2 | `MicroBatcher` | `submit` (a future per request) and `process` (one call in a worker thread; a failure isolated to its request) |
# | 3 | `rank_batch` | session 14's `rank_candidates` once for many requests with different `k`, one row each |
# | 4 | `summarize_latencies` | p50 / p95 / p99 (nearest rank), QPS and errors of a load test |
#
# The workbook provides the app's batched path (`harness.serving.app`), `python -m harness serve
# --batching on`, the load-test script (`harness/serving/locustfile.py`, run by Locust in headless
# mode, bounded, on loopback only), the CSV parsing, and schemathesis for fuzzing.
#
# **Before:** [readings/session_15.md](../readings/session_15.md): Clipper (Crankshaw et al. 2017),
# Sections 1 and 4; Triton's dynamic batcher; Locust without the web UI (about 50 minutes).

# %% tags=["export"]
import asyncio
import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from harness import upstream
from harness.serving.bundle import Bundle
from harness.serving.glue import Query

rank_candidates = upstream(14).rank_candidates

# %%
from harness import Checker

check = Checker(session=15, namespace=globals())

# %% [markdown]
# ## 1. Forming a batch
#
# The server's event loop puts every request in an `asyncio.Queue`; one **worker** coroutine
# takes batches from it, forever. Two knobs decide what a batch is:
#
# * `max_batch`: a batch never holds more (memory, and the latency of the largest forward pass);
# * `max_wait_ms`: how long the worker waits for company once it has a first request. At low load
#   this is pure added latency; under load the queue already holds many requests when the worker
#   comes back from the previous batch, and the batch fills without waiting at all.
#
# ### Exercise 1 — `collect_batch`
#
# 1. Wait for the first item, however long it takes (`await queue.get()`): an idle server sleeps.
# 2. Set the deadline: `max_wait_ms` after that moment, on the loop's clock (`loop.time()`, seconds).
# 3. While the batch has fewer than `max_batch` items: take an item that is already waiting
#    (`queue.get_nowait()`, which raises `asyncio.QueueEmpty` otherwise) without waiting; else wait for
#    the next one, but only until the deadline (`await asyncio.wait_for(queue.get(), remaining)`,
#    which raises `TimeoutError` when it expires); stop at the deadline.
#
# The deadline is fixed once, from the first item: resetting it at every arrival would let a steady
# trickle of requests hold the first one forever. Return the items in arrival order.

# %% tags=["export"]
async def collect_batch(queue: asyncio.Queue, max_batch: int, max_wait_ms: float) -> list:
    """One batch from ``queue``: the first item (waited for), then up to ``max_batch - 1`` more.

    Items already waiting are taken at once; otherwise it waits for more until ``max_wait_ms``
    after the first item was taken. Returns the items in the order they were queued.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 1 `collect_batch` (session 15) is not implemented yet: replace this line with your code")


# %%
check("collect_batch")

# %% [markdown]
# ## 2. The micro-batcher
#
# `MicroBatcher(fn, max_batch, max_wait_ms)` wraps a batch function `fn(items) -> results` (a list
# in, a list of the same length out, row for row). The provided part starts a worker task that
# loops `batch = await collect_batch(...)`, records `len(batch)` in `batch_sizes`, and awaits
# `self.process(batch)`; `stop()` cancels it and fails whatever is still queued. You write:
#
# * `submit(item)`: create a future on the running loop (`asyncio.get_running_loop().create_future()`),
#   put `(item, future)` in `self.queue`, and return `await future`: the caller (one HTTP request)
#   sleeps until its row is ready.
# * `process(batch)`, with `batch` a list of `(item, future)`:
#   * **one call** for the whole batch, `await asyncio.to_thread(self.fn, items)`: in a worker
#     thread, so the event loop keeps accepting requests (they form the next batch) while the model
#     runs; check it returned one result per item;
#   * **failure isolation**: if that call raises, call `fn` on each item alone (in a thread too), so
#     that only the request whose input breaks the model gets the exception
#     (`future.set_exception(err)`) and the others their result (`future.set_result(result)`);
#   * **skip finished futures**: a client that disconnected has its future cancelled; setting a result
#     on it raises `InvalidStateError`, which would leave every later request of the batch unanswered.
#
# The worker's safety net (provided) fails any future that `process` leaves unanswered, so a bug
# shows up as an error instead of a request that hangs forever.

# %% tags=["export"]
class MicroBatcher:
    """Dynamic micro-batching of calls to ``fn(items: list) -> list`` (one result per item, in order).

    ``await start()`` inside the running event loop, ``await submit(item)`` from any number of
    coroutines, ``await stop()`` at shutdown. ``batch_sizes`` records every batch's size.
    """

    def __init__(self, fn: Callable[[list], list], max_batch: int = 32, max_wait_ms: float = 2.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.fn, self.max_batch, self.max_wait_ms = fn, int(max_batch), float(max_wait_ms)
        self.queue: asyncio.Queue | None = None
        self.batch_sizes: list[int] = []
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        """(provided) The queue and the worker task, on the running loop."""
        self.queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        """(provided) Cancel the worker; requests still queued get an error instead of waiting forever."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        while self.queue is not None and not self.queue.empty():
            _, future = self.queue.get_nowait()
            if not future.done():
                future.set_exception(RuntimeError("the server is shutting down"))

    async def _run(self) -> None:
        """(provided) The worker: batches from the queue, forever, each answered by ``process``."""
        while True:
            batch = await collect_batch(self.queue, self.max_batch, self.max_wait_ms)
            self.batch_sizes.append(len(batch))
            try:
                await self.process(batch)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a bug in process(): fail its requests, keep serving the next batches
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
            for _, future in batch:  # the safety net: nobody waits forever
                if not future.done():
                    future.set_exception(RuntimeError("process() returned without answering this request"))

    async def submit(self, item: Any) -> Any:
        """Queue ``item`` and wait for its own result (or its own exception)."""
        # YOUR CODE HERE
        raise NotImplementedError("exercise 2 `MicroBatcher` (MicroBatcher.submit) (session 15) is not implemented yet: replace this line with your code")

    async def process(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        """Answer every future of ``batch``: one ``fn`` call in a thread, each item alone if it fails."""
        # YOUR CODE HERE
        raise NotImplementedError("exercise 2 `MicroBatcher` (MicroBatcher.process) (session 15) is not implemented yet: replace this line with your code")


# %%
check("MicroBatcher")

# %% [markdown]
# ## 3. One forward pass for many requests
#
# The batch function the server gives the micro-batcher calls `rank_batch(bundle, queries, ks)`:
# B queries (session 14's `Query`: user id and history) with their own `k`. Session 14's
# `rank_candidates` already takes B histories of any lengths (it pads them); it takes one `k`.
#
# ### Exercise 3 — `rank_batch`
#
# Call `rank_candidates` **once**, with `k = max(ks)`, and give each query its own row, cut to its
# own `k`: `(ids[b, :k_b], scores[b, :k_b])`. Because the ranking is sorted and stable, the first
# `k_b` of the top `max(ks)` are exactly the top `k_b`: a request answered in a batch gets what it
# would get alone (scores equal up to float rounding).

# %% tags=["export"]
def rank_batch(bundle: Bundle, queries: Sequence[Query], ks: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Ranked (ids, scores) for each query, from one ``rank_candidates`` call.

    Args:
        queries: B non-cold queries; ks: their B values of k.

    Returns:
        B pairs: ids int64 (k_b,) and scores float32 (k_b,), in the order of ``queries``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 3 `rank_batch` (session 15) is not implemented yet: replace this line with your code")


# %%
check("rank_batch")

# %% [markdown]
# ## 4. Reading a load test
#
# A load test answers three questions: how fast (latency, as **percentiles**: a mean hides the
# slow tail that users feel, Dean and Barroso's *The Tail at Scale*), how much (**QPS**, answers per
# second), and how well (**errors**). The provided locustfile records every request: its latency in
# milliseconds, whether it succeeded, and what the server's `Server-Timing` header said.
#
# ### Exercise 4 — `summarize_latencies`
#
# * Percentiles by **nearest rank**, over the *successful* requests only (a fast 4xx would make the
#   service look quicker): sort the latencies, p-th percentile = the value at rank `ceil(p * n /
#   100)` (1-based), the smallest latency that at least p% of requests did not exceed. (It is
#   `np.percentile(x, p, method="inverted_cdf")`; numpy's default interpolates between samples.)
# * `qps`: successful requests per second of `duration_s`; `errors`: the failed ones; `error_rate`:
#   errors / requests (0 when there are none).
# * No successful request: the percentiles and the mean are NaN, never an exception.
#
# Return a dict with `requests`, `errors`, `error_rate`, `qps`, `p50`, `p95`, `p99`, `mean`, `max`.

# %% tags=["export"]
def summarize_latencies(latencies_ms: Sequence[float], ok: Sequence[bool], duration_s: float) -> dict:
    """Latency percentiles (nearest rank, successful requests), QPS and errors of one load test."""
    # YOUR CODE HERE
    raise NotImplementedError("exercise 4 `summarize_latencies` (session 15) is not implemented yet: replace this line with your code")


# %%
check("summarize_latencies")

# %% [markdown]
# ## Run it, part 1: the batcher in slow motion
#
# A batch function that takes 30 ms whatever the batch size (a model whose cost is mostly fixed
# overhead), 20 requests arriving 3 ms apart, `max_batch=8`, `max_wait_ms=10`: watch the batches form.

# %%
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from harness.config import load_config

cfg = load_config("serving")
DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")


def slow_double(items):
    time.sleep(0.03)
    return [2 * x for x in items]


async def demo(max_batch: int, max_wait_ms: float):
    batcher = MicroBatcher(slow_double, max_batch=max_batch, max_wait_ms=max_wait_ms)
    await batcher.start()
    start = time.perf_counter()
    done = {}

    async def one(i):
        await asyncio.sleep(0.003 * i)
        sent = time.perf_counter()
        out = await batcher.submit(i)
        done[i] = (sent - start, time.perf_counter() - start, out)

    await asyncio.gather(*(one(i) for i in range(20)))
    await batcher.stop()
    return batcher.batch_sizes, done


with ThreadPoolExecutor(1) as pool:  # a fresh event loop (a notebook kernel already runs one)
    sizes, done = pool.submit(asyncio.run, demo(8, 10)).result()
print(f"batch sizes: {sizes}   (20 requests, 3 ms apart, max_batch 8, max_wait 10 ms)")
print(f"every answer is its own: {all(out == 2 * i for i, (_, _, out) in done.items())}")
print("latency per request (ms):", [round((b - a) * 1e3) for a, b, _ in (done[i] for i in range(20))])
print(f"one call per request would have taken {20 * 30} ms of model time; batched: {len(sizes) * 30} ms")

# %% [markdown]
# ## Run it, part 2: the model path alone, against the batch size
#
# In this process: `rank_batch` over B real queries (known users of the
# bundle), for growing B. If its cost were proportional to B, batching would gain nothing; a small
# model's cost is mostly fixed overhead (Python, dispatching tiny kernels), so the time *per
# request* falls as B grows, until the arithmetic starts to dominate.

# %%
from harness.pipeline.serving import ensure_bundle
from harness.serving.bundle import load_bundle

BUNDLE = ensure_bundle(DATASET, cfg.preset, log=False)
bundle = load_bundle(BUNDLE)
for model in bundle.models():
    model.eval().requires_grad_(False)
threads = torch.get_num_threads()
torch.set_num_threads(1)  # as the server runs (the load generator gets the other core)
users = [u for u in range(1, bundle.n_users + 1) if bundle.knows_user(u)]
rng = np.random.default_rng(0)


def time_batch(B: int, repeats: int) -> float:
    """Median seconds of one rank_batch call over B random known users."""
    times = []
    for _ in range(repeats):
        qs = [Query(int(u), tuple(bundle.user_history(int(u)))) for u in rng.choice(users, B)]
        start = time.perf_counter()
        rank_batch(bundle, qs, [10] * B)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


time_batch(4, 3)  # warm-up
model_rows = []
for B in cfg.notebook.batch_sizes:
    t = time_batch(B, repeats=max(5, 40 // B))
    model_rows.append({"batch size": B, "ms per batch": t * 1e3, "ms per request": t * 1e3 / B})
torch.set_num_threads(threads)
model_table = pd.DataFrame(model_rows)
print(model_table.round(3).to_string(index=False))
b1 = model_table["ms per request"].iloc[0]
pays = model_table[model_table["ms per request"] <= b1 / 2]
print(f"\nper-request model time at batch size 1: {b1:.2f} ms; halved from batch size "
      f"{int(pays['batch size'].iloc[0]) if len(pays) else '(never, in this range)'} on")

# %% [markdown]
# ## Run it, part 3: latency and throughput against concurrency
#
# Two real servers on loopback, one request at a time and micro-batched, and closed-loop Locust users
# (each sends its next request as soon as the last one is answered) at increasing concurrency,
# alternating the two servers at each level. Locust runs as its own process and shares the two
# cores with the server, as a client on the same machine would.

# %%
from harness.paths import TREES, runs_dir
from harness.serving.loadtest import markdown_table, results_table, run_locust, write_request_corpus
from harness.serving.server import ServerProcess, start_all, stop_all

IMPL = Path.cwd().name if Path.cwd().name in TREES else "sessions"  # the tree this notebook is in: your code
out = runs_dir() / "serving" / f"{DATASET}-{cfg.preset}"
corpus = write_request_corpus(bundle, out / "requests.json", n=int(cfg.load.requests), k=int(cfg.load.k),
                              history_share=float(cfg.load.history_share))
servers = {"unbatched": ServerProcess(BUNDLE, impl=IMPL, batching=False, threads=int(cfg.load.threads)),
           "batched": ServerProcess(BUNDLE, impl=IMPL, batching=True, max_batch=cfg.batching.max_batch,
                                    max_wait_ms=cfg.batching.max_wait_ms, threads=int(cfg.load.threads))}
start_all(servers.values())
print({name: s.url for name, s in servers.items()})

# %%
results = []
for users_n in cfg.notebook.users:
    for name, server in servers.items():
        r = run_locust(server.url, corpus, users=int(users_n), seconds=float(cfg.notebook.seconds),
                       out_dir=out / f"{name}-u{users_n}", label=name)
        results.append(r)
        mine = summarize_latencies(r.latencies["latency_ms"], r.latencies["ok"] == 1, r.window)
        print(f"{name:>9} {users_n:>3} users: QPS {mine['qps']:7.1f}, p50 {mine['p50']:6.2f} ms, p99 "
              f"{mine['p99']:6.2f} ms, errors {mine['errors']} (Locust's CSV: QPS {r.qps:.1f}, p99 {r.p99:g} ms, "
              "rounded)")

# %%
rows = []
for r in results:
    lat = r.latencies
    mine = summarize_latencies(lat["latency_ms"], lat["ok"] == 1, r.window)
    rows.append({"mode": r.label, "users": r.users, "requests": mine["requests"], "errors": mine["errors"],
                 "QPS": mine["qps"], "p50 ms": mine["p50"], "p95 ms": mine["p95"], "p99 ms": mine["p99"],
                 "batch (mean)": float(lat["batch"].mean()) if lat["batch"].notna().any() else float("nan")})
table = pd.DataFrame(rows)
print(table.round(2).to_string(index=False))
by = table.set_index(["mode", "users"])
for u in cfg.notebook.users:
    print(f"{u:>3} users: batched / unbatched QPS = {by.loc[('batched', u), 'QPS'] / by.loc[('unbatched', u), 'QPS']:.2f}")
(out / "table.md").write_text(markdown_table(rows) + "\n")  # for a report

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for name, marker, color in (("unbatched", "o", "C0"), ("batched", "s", "C1")):
    t = table[table["mode"] == name]
    axes[0].plot(t["users"], t["p50 ms"], marker + "-", color=color, label=f"{name} p50")
    axes[0].plot(t["users"], t["p99 ms"], marker + "--", color=color, alpha=0.6, label=f"{name} p99")
    axes[1].plot(t["users"], t["QPS"], marker + "-", color=color, label=name)
axes[0].set_yscale("log")
for ax, ylabel in ((axes[0], "latency (ms)"), (axes[1], "answers per second")):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients (closed loop)")
    ax.set_ylabel(ylabel)
    ax.legend()
axes[0].set_title(f"latency vs concurrency ({DATASET}, {cfg.preset})")
axes[1].set_title("throughput vs concurrency")
plt.tight_layout()
fig.savefig(out / "latency_vs_concurrency.png", dpi=110)
plt.show()

# %% [markdown]
# ### Where a request's time goes
#
# The client measures the whole latency; the server's `Server-Timing` header says how much of it
# was spent inside the app (`app`: routing, validation, the model, JSON) and, for a batched request,
# how long it waited for its batch (`queue`) and how long the batch's forward pass took (`model`,
# shared by every request of the batch). What the app does not see is HTTP parsing, the loopback,
# and the load generator itself, on the same cores.

# %%
def breakdown(r) -> dict:
    lat = r.latencies[r.latencies["ok"] == 1]
    parts = {"client latency": lat["latency_ms"].median(), "inside the app": lat["app_ms"].median()}
    parts["outside the app (HTTP, client)"] = parts["client latency"] - parts["inside the app"]
    if lat["model_ms"].notna().any():
        parts["  waiting for its batch"] = lat["queue_ms"].median()
        parts["  the batch's forward pass"] = lat["model_ms"].median()
        parts["  batch size"] = lat["batch"].median()
        parts["  forward pass per request"] = (lat["model_ms"] / lat["batch"]).median()
    return parts


top = max(cfg.notebook.users)
pick = {(r.label, r.users): r for r in results}
split = pd.DataFrame({f"{mode}, {u} users": breakdown(pick[(mode, u)]) for u in (1, top)
                      for mode in ("unbatched", "batched")})
print("median milliseconds per request:")
print(split.round(3).to_string())
print(f"\nthe model path alone, in-process, batch size 1: {b1:.3f} ms per request; batch size "
      f"{int(model_table['batch size'].iloc[-1])}: {model_table['ms per request'].iloc[-1]:.3f} ms per request")

# %% [markdown]
# ## Run it, part 4: a long run, zero errors
#
# The batched server under the highest concurrency for `soak_seconds` (60 s on the laptop preset).

# %%
soak = run_locust(servers["batched"].url, corpus, users=int(cfg.notebook.soak_users),
                  seconds=float(cfg.notebook.soak_seconds), out_dir=out / "soak", label="batched, soak")
soak_summary = summarize_latencies(soak.latencies["latency_ms"], soak.latencies["ok"] == 1, soak.window)
print(results_table([soak]))
print(f"exact: p50 {soak_summary['p50']:.2f} ms, p95 {soak_summary['p95']:.2f} ms, p99 {soak_summary['p99']:.2f} ms, "
      f"{soak_summary['qps']:.0f} QPS, {soak_summary['errors']} errors")
assert soak.failures == 0 and soak_summary["errors"] == 0, soak.log[-2000:]

# %% [markdown]
# ## Run it, part 5: fuzzing the API
#
# schemathesis reads the server's OpenAPI schema (built from your request and response models)
# and generates requests, valid and invalid: every answer must be documented, match its schema,
# and never be a 5xx.

# %%
from harness.serving.loadtest import run_schemathesis

fuzz = run_schemathesis(servers["batched"].url, max_examples=int(cfg.notebook.fuzz_examples))
print(fuzz.summary)
assert fuzz.ok

# %%
stop_all(servers.values())
for name, server in servers.items():
    print(f"{name}: stopped cleanly: {server.clean_exit}")

# %% [markdown]
# ## The container
#
# The same server in Docker (see the `Dockerfile` at the repository's root; Docker does not run in
# this workbook's own environment):
#
# ```bash
# docker build -t recsys-serve .
# docker run --rm -p 127.0.0.1:8000:8000 -v "$PWD/runs/bundles/ml-100k-laptop:/bundle:ro" recsys-serve
# ```
#
# and the same load test against it: `run_locust("http://127.0.0.1:8000", corpus, users=32, seconds=60,
# out_dir=...)`.
#
# ## Reflection
#
# 1. Plot (or sketch) p99 latency against offered load for unbatched and batched serving. Where do the
#    curves cross, and how would you choose `max_wait` for a latency objective of 50 ms at p99?
# 2. Your load test ran client and server on the same two cores. How does that distort the numbers,
#    and in which direction? How would you set up a test whose numbers you would show in a design
#    review?
# 3. A GPU makes the batched forward pass almost free up to a batch of 256, while FAISS search and
#    JSON encoding stay on the CPU. Where does the bottleneck move, and what would you batch next?
# 4. One request in a thousand has a history of 5,000 items (the power user of session 06's
#    reflection). What does it do to the batch it lands in, and how would you protect the others?
#
# **After:** [readings/session_15.md](../readings/session_15.md): *The Tail at Scale*, coordinated
# omission (wrk2), Docker's building best practices. **Next:** session 16, the generative capstone.
