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
# # Session 06 — Retrieval evaluation and FAISS
#
# Session 05 trained two retrievers. Today you find out how good they are, measured the way the
# rest of the workbook measures everything, and you make retrieval fast enough to serve: instead of
# scoring every item with a matrix product, an **index** finds the best items for you, exactly
# (a flat index) or approximately and much faster (an inverted file, IVF), on the GPU when there
# is one.
#
# ```
#   history ──► user tower ──► u ──► FAISS index over item vectors ──► top k + |seen| ──► drop seen ──► top k
#                                     (flat: exact | IVF: nprobe of nlist lists)
# ```
#
# You write seven pieces:
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `recall_at_k` | Recall@K with several relevant items per user, padding ignored |
# | 2 | `mask_seen` | seen items and the padding column to `-inf` in a score matrix, vectorised |
# | 3 | `maybe_to_gpu` | move a FAISS index to the GPU when FAISS sees one |
# | 4 | `build_flat_index` | exact inner-product index over items 1..n (padding never indexed) |
# | 5 | `build_ivf_index` | inverted-file index: k-means coarse quantiser, `nlist` lists, `nprobe` probed |
# | 6 | `search_excluding_seen` | top-k item ids from an index, never a seen item: over-fetch, drop, pad |
# | 7 | `ann_recall` | how much of the exact top-k the approximate search finds |
#
# Then you evaluate popularity, the mean-pool tower and the Transformer tower on the test split
# with exact FAISS retrieval, and measure exact against IVF on a catalog of 100,000 items.
#
# **Before:** [readings/session_06.md](../readings/session_06.md): FAISS "Getting started" and
# Johnson et al., *Billion-scale similarity search with GPUs*, Sections 1–3 (about 50 minutes).

# %% tags=["export"]
import math
import time
from typing import Callable

import faiss
import numpy as np
import torch

# %%
from harness import Checker

check = Checker(session=6, namespace=globals())

# %% [markdown]
# ## 1. Ranking against the whole catalog
#
# Every number in this workbook comes from the same protocol (`harness.evaluation`): each user's
# last interaction is held out, and the model ranks it against **every item of the catalog**
# except the ones the user has already interacted with.
#
# * **Full catalog, not sampled negatives.** Many papers rank the held-out item among 100 random
#   items. Krichene and Rendle (KDD 2020) showed that sampled metrics can even *reverse* the order of
#   two models: beating 100 random items is easy, beating the 1,000 items that are almost as
#   relevant is what retrieval is for. Full ranking costs one matrix product per batch; do it.
# * **Seen items excluded.** A user's history is the best predictor of what scores high for them, so
#   a retriever that has learned anything puts seen items at the top. On MovieLens nobody rates a
#   movie twice, and a retrieval system would filter them before ranking anyway: leaving them in
#   measures how well the model *remembers* the history, and buries the held-out item under it.
#   The run-it part measures how much.
# * **Padding is not an item.** Item 0 must never be retrieved.
#
# The metrics, for a user whose relevant (held-out) items form a set $R$ and whose top-K list is $T_K$:
#
# $$\mathrm{Recall@K} = \frac{|T_K \cap R|}{|R|}, \qquad \mathrm{HR@K} = \mathbb{1}[\,T_K \cap R \ne \emptyset\,],
#   \qquad \mathrm{NDCG@K} = \frac{1}{\log_2(\mathrm{rank} + 2)} \text{ if rank} < K$$
#
# With leave-last-out there is one relevant item, so Recall@K and HR@K coincide, and NDCG's ideal
# DCG is 1. With several relevant items (a user's purchases of the next week, say, or the exact
# top-k of a slow search, exercise 7) Recall@K divides by $|R|$, **not by K**: a user with 2
# relevant items who gets both in their top 50 has recall 1, not 0.04. Each user's recall is
# computed first, then averaged over users; users with no relevant item have no recall at all
# (0/0) and are left out of the average.

# %% [markdown]
# ## Exercise 1 — `recall_at_k`
#
# Both inputs are padded id tensors, 0 for "nothing here": `topk` may end in zeros when fewer
# than K items could be recommended, `relevant` is padded to the longest row. A padding 0 in the
# list must never "hit" a padding 0 in the relevant set. Only the first `k` columns of `topk`
# count. Vectorise: compare every list entry with every relevant item by broadcasting,
# `(B, k, 1) == (B, 1, R)`. Return float32, NaN where a user has no relevant item.

# %% tags=["export"]
def recall_at_k(topk: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """Recall@K of each user.

    Args:
        topk: int64 (B, K'), recommended item ids, best first, K' >= k; 0 = padding (no recommendation).
        relevant: int64 (B, R), each user's relevant item ids, padded with 0; distinct within a row.
        k: cut-off: only ``topk[:, :k]`` counts.

    Returns:
        float32 (B,): |top-k ∩ relevant| / |relevant| per user; NaN for a user with no relevant item.
    """
    ### BEGIN SOLUTION
    top = topk[:, :k].to(relevant.device)
    real = relevant != 0
    found = ((top[:, :, None] == relevant[:, None, :]) & real[:, None, :]).any(dim=1)  # (B, R)
    return found.sum(dim=1).float() / real.sum(dim=1).float()
    ### END SOLUTION


# %%
check("recall_at_k")
demo_top = torch.tensor([[5, 3, 9, 0], [2, 4, 6, 8]])
demo_relevant = torch.tensor([[3, 7], [8, 0]])
print("recall@3:", recall_at_k(demo_top, demo_relevant, k=3).tolist(),
      " recall@4:", recall_at_k(demo_top, demo_relevant, k=4).tolist())

# %% [markdown]
# ## Exercise 2 — `mask_seen`
#
# The score-matrix version of seen-item exclusion: `harness.evaluation` does it with a dense
# `(B, n_items + 1)` boolean mask. Here the seen items arrive the way a serving system holds
# them, as a padded list of ids per user, `(B, S)`. Write `-inf` at `(b, seen[b, j])` for every
# `j`, and in column 0, in one call: `Tensor.scatter_` along dim 1 writes a value at the column
# indices given per row. Two traps: `scores[:, seen.flatten()]` masks every user's history for
# *everyone* (user 0 loses user 1's favourites), and writing into the caller's tensor changes
# scores they may still need; work on a copy.

# %% tags=["export"]
def mask_seen(scores: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Scores with each user's seen items and the padding column set to -inf.

    Args:
        scores: float (B, n_items + 1), one column per item id.
        seen: int64 (B, S), each user's seen item ids, padded with 0.

    Returns:
        a new tensor like ``scores`` (the input is left unchanged) with -inf in column 0 and at
        ``(b, seen[b, j])`` for every b, j.
    """
    ### BEGIN SOLUTION
    out = scores.clone()
    out.scatter_(1, seen.to(scores.device).long(), -math.inf)
    out[:, 0] = -math.inf
    return out
    ### END SOLUTION


# %%
check("mask_seen")

# %% [markdown]
# ## 2. Nearest-neighbour search with FAISS
#
# Scoring the whole catalog is a `(B, d) @ (d, N)` product: fine for 1,682 movies, heavy for
# millions of products at thousands of requests per second. FAISS (Facebook AI Similarity Search)
# stores the item vectors in an **index** and answers "the k vectors with the largest inner
# product with this query":
#
# ```python
# index = faiss.IndexFlatIP(d)      # exact: compares the query with every stored vector
# index.add(vectors)                # float32 numpy array (n, d), C-contiguous
# scores, labels = index.search(queries, k)   # both (B, k); labels are row numbers 0..n-1, -1 = no result
# ```
#
# **Inner product, cosine, L2.** Our towers L2-normalise both sides, so the inner product *is*
# the cosine similarity, and for unit vectors
#
# $$\lVert u - v \rVert^2 = \lVert u \rVert^2 + \lVert v \rVert^2 - 2\,u \cdot v = 2 - 2\,u \cdot v,$$
#
# so the nearest items in L2 are the items with the largest inner product. For *unnormalised*
# vectors (matrix factorisation, a tower without the final normalisation, a DLRM embedding) the two
# disagree: inner product favours long vectors (often popular items), L2 favours vectors close to the
# query. The index metric must be the model's score, `METRIC_INNER_PRODUCT`; FAISS's default is L2.
#
# **Rows and item ids.** FAISS numbers vectors 0, 1, 2... in the order they are added. We add
# items 1..n in order and never the padding row, so **label r is item r + 1**, and FAISS's
# "no result" label −1 becomes 0, the padding id. (`faiss.IndexIDMap` stores arbitrary 64-bit ids
# instead, for catalogs whose ids are not contiguous.)
#
# **Arrays.** FAISS's Python API takes numpy `float32` arrays in C order. A tensor that requires
# grad, lives on the GPU, is float64 or bf16, or is a transposed view must be converted first;
# `faiss_array` below does it. (`import faiss.contrib.torch_utils` teaches FAISS to take tensors
# directly, GPU tensors included; we keep the explicit conversion, which works with every build.)
#
# **On the GPU.** Johnson et al. (2019) made brute force and IVF fast on GPUs mostly by a fast
# k-selection (WarpSelect: the top k of each row in registers, in one pass over the scores). A GPU
# index needs a `faiss.StandardGpuResources`, which owns scratch memory and CUDA streams: create one
# per GPU and keep it alive as long as its indexes (`gpu_resources()` below does both).
# `faiss.index_cpu_to_gpu(resources, 0, index)` copies an index to GPU 0; the GPU index answers
# the same `search` calls. Two limits to know: k at most 2,048 per search on the GPU, and
# `faiss-cpu` has no GPU symbols at all (`faiss.StandardGpuResources` does not exist there).

# %% tags=["export"]
def faiss_gpu_available() -> bool:
    """True when this FAISS build has GPU support and sees at least one GPU (provided)."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


_GPU_RESOURCES = None


def gpu_resources():
    """The process's one ``faiss.StandardGpuResources`` (provided).

    Every instance reserves scratch memory on the GPU, and a GPU index must not outlive the
    resources it was built with; one module-level instance avoids both problems.
    """
    global _GPU_RESOURCES
    if not faiss_gpu_available():
        raise RuntimeError(f"FAISS {faiss.__version__} sees no GPU (a faiss-cpu build, or no CUDA device); "
                           "build the index on the CPU (use_gpu=False), or install faiss-gpu on a GPU machine")
    if _GPU_RESOURCES is None:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return _GPU_RESOURCES


def faiss_array(x) -> np.ndarray:
    """A tensor or array as FAISS wants it: float32 numpy, C-contiguous, on the host (provided)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


# %% [markdown]
# ## Exercise 3 — `maybe_to_gpu`
#
# `use_gpu=None` means "the GPU if FAISS sees one", `False` forces the CPU, `True` asks for the GPU
# (and fails with `gpu_resources()`'s message where there is none). On the CPU, return the very
# same index object. On the GPU, copy it to device 0 with the shared resources.

# %% tags=["export"]
def maybe_to_gpu(index: faiss.Index, use_gpu: bool | None = None) -> faiss.Index:
    """``index`` copied to GPU 0 when ``use_gpu`` is True, or None and FAISS sees a GPU; else ``index`` itself."""
    ### BEGIN SOLUTION
    if use_gpu is None:
        use_gpu = faiss_gpu_available()
    if not use_gpu:
        return index
    resources = gpu_resources()  # first: on faiss-cpu it raises the clear error, index_cpu_to_gpu does not exist
    return faiss.index_cpu_to_gpu(resources, 0, index)
    ### END SOLUTION


# %%
check("maybe_to_gpu")
print("FAISS", faiss.__version__, "| GPU available to FAISS:", faiss_gpu_available())

# %% [markdown]
# ## Exercise 4 — `build_flat_index`
#
# Exact search over items 1..n: an `IndexFlatIP` holding `item_emb[1:]` (row 0 is padding and is
# never indexed, whatever it contains), moved to the GPU by `maybe_to_gpu`.

# %% tags=["export"]
def build_flat_index(item_emb: torch.Tensor, use_gpu: bool | None = None) -> faiss.Index:
    """Exact inner-product index over items 1..n_items.

    Args:
        item_emb: float (n_items + 1, d), item embeddings by id, row 0 = padding (never indexed);
            any float dtype, any device, may require grad.
        use_gpu: as in ``maybe_to_gpu``.

    Returns:
        a FAISS index with ``ntotal == n_items`` and inner-product scores; its label r is item r + 1.
    """
    ### BEGIN SOLUTION
    vectors = faiss_array(item_emb[1:])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return maybe_to_gpu(index, use_gpu)
    ### END SOLUTION


# %%
check("build_flat_index")

# %% [markdown]
# ## 3. The inverted file index
#
# A flat index compares the query with all N items: cost $N d$ per query. An **inverted file**
# (IVF, Jégou et al. 2011; Section 3 of Johnson et al.) first clusters the catalog:
#
# 1. **Train** a *coarse quantiser*: k-means with `nlist` centroids on the item vectors.
# 2. **Add**: each item goes into the list of its nearest centroid (its "inverted list").
# 3. **Search**: compare the query with the `nlist` centroids, then scan only the `nprobe` lists
#    whose centroids score highest.
#
# ```
#      centroids  c1     c2     c3  ...  c_nlist            query u: best centroids c2, c7 (nprobe = 2)
#      lists     [..]   [....] [..]      [...]              scan list 2 and list 7 only: ~ 2 N / nlist items
# ```
#
# Cost per query: $\mathrm{nlist}\cdot d + \mathrm{nprobe}\cdot\frac{N}{\mathrm{nlist}}\cdot d$. The
# price is **recall**: a true neighbour that sits in a list you did not probe is missed. `nprobe`
# is the dial, chosen at query time; `nprobe = nlist` scans everything and is exact again.
# FAISS's guidelines: `nlist` between $4\sqrt{N}$ and $16\sqrt{N}$, and at least ~39 training
# vectors per centroid (it warns below that).
#
# With normalised vectors, k-means on inner product and on L2 find the same clusters; build the
# quantiser as an `IndexFlatIP` and pass `faiss.METRIC_INNER_PRODUCT` to `IndexIVFFlat`, or the
# lists are *scanned* with L2, which on unnormalised vectors returns the wrong items. The index keeps
# a reference to its quantiser (FAISS's Python wrapper sees to it). Train and add on the CPU, then
# `maybe_to_gpu`, then set `index.nprobe`: the same attribute on a CPU and a GPU IVF index, and it can
# be changed between any two searches (the run-it part sweeps it on one index).
#
# ## Exercise 5 — `build_ivf_index`

# %% tags=["export"]
def build_ivf_index(item_emb: torch.Tensor, nlist: int, nprobe: int, use_gpu: bool | None = None) -> faiss.Index:
    """IVF index (inner product, exact vectors in the lists) over items 1..n_items.

    Args:
        item_emb: float (n_items + 1, d), item embeddings by id, row 0 = padding (never indexed or trained on).
        nlist: number of k-means cells (inverted lists); needs n_items >= nlist.
        nprobe: lists scanned per query.
        use_gpu: as in ``maybe_to_gpu``.

    Returns:
        a trained ``IndexIVFFlat`` (or its GPU copy) with ``ntotal == n_items``, ``nprobe`` set; label r is item r + 1.
    """
    ### BEGIN SOLUTION
    vectors = faiss_array(item_emb[1:])
    d = vectors.shape[1]
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add(vectors)
    index = maybe_to_gpu(index, use_gpu)
    index.nprobe = nprobe
    return index
    ### END SOLUTION


# %%
check("build_ivf_index")

# %% [markdown]
# ## 4. Excluding seen items from an index search
#
# An index knows nothing about users, so exclusion happens around the search. The simple, robust
# way is to **over-fetch**: ask for `k + S` results, where `S` is the largest number of seen items
# of any user in the batch. At most `S` of them are seen, so at least `k` remain; drop the seen ones
# (and FAISS's −1 "no result" labels, which became 0), keep the first `k` in rank order, and pad with
# 0 when fewer than `k` remain (a tiny catalog, or an IVF that probed too few lists).
#
# Alternatives, and why not here: FAISS can filter during the search (`faiss.SearchParameters(
# sel=faiss.IDSelectorBatch(ids))`), but one selector applies to a whole `search` call, so it is one
# call per user, and GPU indexes support only some selectors. Production systems over-fetch and
# filter, or keep a per-user Bloom filter of seen items.
#
# Doing the "drop" with a Python loop over users is the slow part of a naïve implementation. A
# vectorised membership test: sort each row of `seen`, then `torch.searchsorted(sorted_seen, ids)`
# gives, for every candidate, where it would sit in its own user's sorted history; it is seen if the
# value there equals it. Put a 0 column into `seen` before sorting and the same test drops the padding
# ids. Then a **stable** sort on the "dropped" flag moves kept candidates to the front in rank order.
#
# ## Exercise 6 — `search_excluding_seen`

# %% tags=["export"]
def search_excluding_seen(index: faiss.Index, queries: torch.Tensor, seen: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k item ids per query from a FAISS index built here, never an item the user has seen.

    Args:
        index: from ``build_flat_index`` / ``build_ivf_index`` (label r is item r + 1).
        queries: float (B, d) user embeddings; any float dtype, any device.
        seen: int64 (B, S), each user's seen item ids, padded with 0.
        k: results per user (on a GPU index, k + the longest history must stay <= 2048).

    Returns:
        int64 CPU tensor (B, k) of item ids, best first; padded with 0 when fewer than k unseen items were found.
    """
    ### BEGIN SOLUTION
    seen = seen.detach().cpu().long()
    n_seen = int((seen != 0).sum(dim=1).max()) if seen.numel() else 0
    _, labels = index.search(faiss_array(queries), k + n_seen)
    ids = torch.from_numpy(labels).long() + 1  # label r is item r + 1; "no result" (-1) becomes padding 0
    sorted_seen = torch.cat([torch.zeros(len(ids), 1, dtype=torch.long), seen], dim=1).sort(dim=1).values
    where = torch.searchsorted(sorted_seen, ids).clamp_max(sorted_seen.shape[1] - 1)
    drop = sorted_seen.gather(1, where) == ids  # seen, or padding
    order = torch.argsort(drop.to(torch.int8), dim=1, stable=True)  # kept candidates first, in rank order
    return torch.where(drop, 0, ids).gather(1, order)[:, :k]
    ### END SOLUTION


# %%
check("search_excluding_seen")

# %% [markdown]
# ## 5. What does the approximation cost?
#
# Two different "recalls" meet here, and it pays to keep them apart:
#
# * the **recommender's** Recall@K: did the held-out item make the list (exercise 1, the test split);
# * the **index's** recall, or ANN recall: of the k items the *exact* search returns, how many does
#   the approximate search return too? It measures the index alone, needs no labels, and is what
#   you tune `nprobe` on. An ANN recall of 0.95 means that 5% of the exact list is replaced by the
#   next-best items the probed lists hold; the recommender's hits usually drop by less, because the
#   items an IVF misses tend to be the borderline ones (the run-it part measures both).
#
# ## Exercise 7 — `ann_recall`
#
# The exact top-k plays the role of the relevant set, so this is Recall@K again (reuse exercise
# 1), averaged over queries. The order inside the lists does not matter, only membership: an IVF
# that returns the exact top 10 in a slightly different order has recall 1. Padding zeros in the
# exact list (fewer than k unseen items existed) are not items to find.

# %% tags=["export"]
def ann_recall(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean over queries of |approx ∩ exact| / |exact|: the share of the exact top-k the approximate search finds.

    Args:
        approx: int64 (B, k) item ids from the approximate search; 0 = padding.
        exact: int64 (B, k) item ids from the exact search; 0 = padding.

    Returns:
        float in [0, 1] (queries whose exact list is all padding are left out).
    """
    ### BEGIN SOLUTION
    return float(torch.nanmean(recall_at_k(approx, exact, k=exact.shape[1])))
    ### END SOLUTION


# %%
check("ann_recall")

# %% [markdown]
# ## 6. Provided: measurement helpers
#
# * `padded_seen(sequences, users)`: the `(B, S)` seen-item lists of session 02's sequences.
# * `search_ids(index, queries, k)`: a plain search (no exclusion), labels mapped to item ids.
# * `synthetic_catalog(item_emb, n_items)`: a large catalog with the structure of learned
#   embeddings, for scaling experiments when the dataset's own catalog is small: the real items,
#   plus items that mix two real items and some noise, re-normalised. Neighbourhoods stay as
#   clustered as the model made them, which is what IVF's recall depends on (random Gaussian
#   vectors would be the worst case, not the typical one).
# * `measure_latency(search, queries, batch_size)`: per-call latency percentiles and throughput,
#   after untimed warm-up calls (the first calls pay for allocation and page faults). A GPU FAISS
#   search returns its results on the host, so the clock already includes the GPU's work; to time
#   torch CUDA code, pass `sync=torch.cuda.synchronize` (session 13 is about timing honestly).

# %% tags=["export"]
def padded_seen(sequences, users) -> torch.Tensor:
    """int64 (B, S): the items of ``sequences[u]`` for each user u, right-padded with 0 (provided)."""
    rows = [np.asarray(sequences[int(u)], dtype=np.int64) for u in users]
    out = torch.zeros(len(rows), max([len(r) for r in rows] + [1]), dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, :len(row)] = torch.tensor(row)
    return out


def search_ids(index: faiss.Index, queries: torch.Tensor, k: int) -> torch.Tensor:
    """int64 (B, k) item ids of a plain search (label r is item r + 1, no result = 0) (provided)."""
    _, labels = index.search(faiss_array(queries), k)
    return torch.from_numpy(labels).long() + 1


def synthetic_catalog(item_emb: torch.Tensor, n_items: int, noise: float = 0.35, seed: int = 0) -> torch.Tensor:
    """A catalog of ``n_items`` items built from learned embeddings (provided).

    Rows 1..R keep the R real items' vectors (``item_emb`` is (R + 1, d) with padding row 0); each new
    item is ``normalize((1 - w) v_i + w v_j + noise * eps / sqrt(d))`` for random real items i, j,
    ``w ~ U(0, 0.5)``, ``eps ~ N(0, I)``. Returns float32 (n_items + 1, d), row 0 = zeros.
    """
    base = item_emb[1:].detach().to("cpu", torch.float32)
    real, d = base.shape
    if n_items < real:
        raise ValueError(f"n_items={n_items} is smaller than the {real} real items")
    g = torch.Generator().manual_seed(seed)
    extra = n_items - real
    i, j = torch.randint(0, real, (extra,), generator=g), torch.randint(0, real, (extra,), generator=g)
    w = torch.rand(extra, 1, generator=g) * 0.5
    mixed = (1 - w) * base[i] + w * base[j] + noise / math.sqrt(d) * torch.randn(extra, d, generator=g)
    mixed = mixed / mixed.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.cat([torch.zeros(1, d), base, mixed])


def measure_latency(search: Callable[[np.ndarray], object], queries: np.ndarray, batch_size: int = 1,
                    warmup: int = 10, max_calls: int | None = None,
                    sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Latency of ``search(batch)`` per call and queries per second, after ``warmup`` untimed calls (provided).

    Returns:
        dict with ``p50_ms``, ``p95_ms``, ``mean_ms`` (per call), ``qps`` (queries answered per second
        over the timed calls) and ``calls``.
    """
    batches = [queries[i:i + batch_size] for i in range(0, len(queries), batch_size)]
    for batch in batches[:warmup]:
        search(batch)
    if sync is not None:
        sync()
    times, answered = [], 0
    for batch in batches[:max_calls]:
        start = time.perf_counter()
        search(batch)
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
        answered += len(batch)
    ms = np.asarray(times) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "mean_ms": float(ms.mean()), "qps": answered / float(np.sum(times)), "calls": len(times)}


# %% [markdown]
# ## Run it, part 1: train both towers
#
# Session 05's training loop (`train_two_tower`) with the settings of `harness/configs/two_tower.yaml`
# (`WORKBOOK_PRESET=smoke` makes it seconds; the laptop preset caps each tower at a few minutes on a
# CPU). The dataset is `WORKBOOK_DATASET`, MovieLens-100K by default.

# %%
import os

import matplotlib.pyplot as plt

from harness import upstream
from harness.config import load_config
from harness.data import load_dataset
from harness.evaluation import MetricsTable, evaluate_topk
from harness.plots import metric_bars
from harness.pipeline.retrieval import evaluate_two_tower, history_batch

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
cfg = load_config("two_tower")
ds = load_dataset(DATASET)
print(ds.summary(), f"| preset: {cfg.preset}")
s01, s05 = upstream(1), upstream(5)

models, train_results = {}, {}
for tower in ("mean", "transformer"):
    models[tower], train_results[tower] = s05.train_two_tower(ds, tower, cfg, log=lambda line: None)
    r = train_results[tower]
    print(f"{tower:>11}: {r['steps']:,} steps ({r['epochs']:.1f} epochs) in {r['seconds']:.0f} s, "
          f"{r['examples_per_second']:,.0f} windows/s, final loss {r['final_loss']:.3f}, valid HR@10 "
          f"{r['valid']['HR@10']:.4f}")

# %% [markdown]
# ## Run it, part 2: HR@10, NDCG@10 and Recall@50 on the test split
#
# Each tower's item vectors go into an exact FAISS index; each test user's history goes through the
# user tower; `search_excluding_seen` returns the top 50, and `harness.evaluation.evaluate_topk`
# turns the lists into metrics. The same numbers must come out of `evaluate_two_tower`, which scores
# the whole catalog with a matrix product and excludes seen items with a dense mask: two independent
# paths to one answer. (They can differ only where two items' scores tie to the last float bit.)

# %%
K = 50
test_sequences = ds.sequences(upto="test")
users_test, _ = ds.targets("test")


@torch.no_grad()
def item_vectors(model) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    return model.item_tower(torch.arange(ds.n_items + 1, device=device)).float().cpu()


@torch.no_grad()
def user_vectors(model, users, sequences=test_sequences) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    batch = history_batch(sequences, [int(u) for u in users], cfg.train.max_len)
    return model.user_tower(batch["history"].to(device), batch["mask"].to(device)).float().cpu()


def faiss_recommender(model, index, exclude_seen: bool = True):
    """``topk_fn(users, seen_mask) -> (B, K)`` for evaluate_topk, retrieving with FAISS."""
    def topk(users, _seen_mask):
        queries = user_vectors(model, users)
        if not exclude_seen:
            return search_ids(index, queries, K)
        return search_excluding_seen(index, queries, padded_seen(test_sequences, users.tolist()), K)
    return topk


visible_counts = s01.item_popularity(torch.tensor(ds.history("test")["item_id"].to_numpy()), ds.n_items)
table = MetricsTable()
table.add("popularity", evaluate_topk(lambda users, seen: s01.recommend_popular(visible_counts, seen, k=K),
                                      ds, split="test", ks=(10, K)))
indexes, checks = {}, {}
for tower, label in (("mean", "two-tower mean"), ("transformer", "two-tower transformer")):
    model = models[tower]
    indexes[tower] = build_flat_index(item_vectors(model))
    start = time.perf_counter()
    metrics = evaluate_topk(faiss_recommender(model, indexes[tower]), ds, split="test", ks=(10, K))
    seconds = time.perf_counter() - start
    reference = evaluate_two_tower(model, ds, "test", max_len=cfg.train.max_len, ks=(10, K),
                                   device=next(model.parameters()).device)
    gap = max(abs(metrics[m] - reference[m]) for m in table.columns)
    checks[tower] = gap
    assert gap <= 1.0 / len(users_test) + 1e-9, f"{tower}: FAISS retrieval and evaluate_two_tower disagree by {gap}"
    table.add(label, metrics, note=f"exact FAISS, {seconds:.1f} s for {len(users_test)} users")
print(table)
for tower, gap in checks.items():
    print(f"{tower}: FAISS + exclusion vs evaluate_two_tower: "
          + ("identical" if gap == 0 else f"largest difference {gap:.2e} (one float tie)"))

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
for ax, metric in zip(axes, table.columns):
    metric_bars(ax, table, metric)
    ax.set_title(metric)
fig.suptitle(f"{DATASET}, leave-last-out test, full catalog, seen items excluded ({cfg.preset} preset)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Which tower wins? The sentence below is decided by the numbers above, not written in advance.

# %%
mean_row, tf_row, pop_row = (table.rows[n] for n in ("two-tower mean", "two-tower transformer", "popularity"))
winner, loser = (("two-tower transformer", "two-tower mean") if tf_row["NDCG@10"] > mean_row["NDCG@10"]
                 else ("two-tower mean", "two-tower transformer"))
w, l = table.rows[winner], table.rows[loser]
names = {"two-tower transformer": "Transformer tower", "two-tower mean": "mean-pool tower"}
print(f"The {names[winner]} wins on {DATASET}: HR@10 {w['HR@10']:.4f} vs {l['HR@10']:.4f}, NDCG@10 "
      f"{w['NDCG@10']:.4f} vs {l['NDCG@10']:.4f} ({(w['NDCG@10'] / max(l['NDCG@10'], 1e-12) - 1):+.0%}), "
      f"Recall@50 {w['Recall@50']:.4f} vs {l['Recall@50']:.4f}; popularity has HR@10 {pop_row['HR@10']:.4f}.")
if winner == "two-tower transformer":
    print("The Transformer reads the history in order, so its last position can weight the latest items most, and "
          "MovieLens users rate in sessions (dozens of movies in one sitting, often of a kind): what came just "
          "before predicts what comes next far better than the average of a whole history, which is all the "
          "mean-pool tower sees.")
else:
    print(f"Here the mean-pool tower is ahead. With the {cfg.preset} preset the Transformer may be under-trained "
          "(it has more to learn: attention, positions), or the dataset may carry little order signal; on "
          "MovieLens with the laptop preset the order-aware tower is expected to win, because users rate in "
          "sessions and recent items predict the next one.")
beat = [n for n in ("two-tower mean", "two-tower transformer") if table.rows[n]["HR@10"] > pop_row["HR@10"]]
print("Beats popularity on HR@10: " + (", ".join(beat) if beat else "neither tower (train longer)") + ".")

# %% [markdown]
# And what seen-item exclusion is worth: the same retrieval, without it.

# %%
best = "transformer" if winner == "two-tower transformer" else "mean"
unfiltered = evaluate_topk(faiss_recommender(models[best], indexes[best], exclude_seen=False), ds, "test", ks=(10, K))
print(f"{winner}: HR@10 {table.rows[winner]['HR@10']:.4f} with seen items excluded, "
      f"{unfiltered['HR@10']:.4f} without (the top of the list is filled with movies the user has already rated)")

# %% [markdown]
# ## Run it, part 3: exact vs IVF on a catalog of 100,000 items
#
# MovieLens has 1,682 items, which a flat index searches in microseconds. To see the trade-off a
# real catalog forces, grow one from the winning tower's item embeddings with `synthetic_catalog`
# (100,000 items; 20,000 with the smoke preset), and take every test user's embedding as a query.
#
# * **Exact**: a flat index; its top 10 is the ground truth.
# * **IVF**: `nlist` about $4\sqrt{N}$ (a power of two), and a sweep over `nprobe`.
# * **ANN recall@10** against exact; **latency** per single query (p50, p95) and the throughput of
#   one query at a time and of batches of 256.
#
# Single queries are timed on **one CPU thread**, the way a server runs concurrent requests (one per
# core): for a search that takes microseconds, OpenMP's thread wake-ups and barriers cost more than the
# search itself, and on a busy machine a second thread that is not scheduled can stall every call by
# milliseconds. Batches use all threads, which is where they pay off. The chosen `nprobe` is the
# smallest one that keeps ANN recall@10 ≥ 0.95.

# %%
N_CATALOG = 20_000 if cfg.preset == "smoke" else 100_000
TARGET_RECALL = 0.95
catalog = synthetic_catalog(item_vectors(models[best]), N_CATALOG)
queries = faiss_array(user_vectors(models[best], users_test))
NLIST = 2 ** round(math.log2(4 * math.sqrt(N_CATALOG)))
timed = min(len(queries), 300 if cfg.preset == "smoke" else 600)
print(f"catalog: {N_CATALOG:,} items x {catalog.shape[1]} dims ({catalog[1:].numel() * 4 / 2**20:.0f} MiB); "
      f"{len(queries)} queries; nlist = {NLIST}; FAISS on {'GPU' if faiss_gpu_available() else 'CPU'}")

start = time.perf_counter()
flat = build_flat_index(catalog)
flat_build = time.perf_counter() - start
start = time.perf_counter()
ivf = build_ivf_index(catalog, nlist=NLIST, nprobe=1)
ivf_build = time.perf_counter() - start
print(f"build: flat {flat_build:.2f} s, IVF {ivf_build:.2f} s (k-means with {NLIST} centroids + assignment)")


def timings(index) -> dict:
    """Single-query latency on one thread, and the throughput of batches of 256 on all threads."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        single = measure_latency(lambda q: index.search(q, 10), queries, max_calls=timed)
    finally:
        faiss.omp_set_num_threads(threads)
    batched = measure_latency(lambda q: index.search(q, 10), queries, batch_size=256, warmup=1)
    return {**single, "qps_batch256": batched["qps"]}


exact_top = search_ids(flat, queries, 10)
rows = [{"index": "flat (exact)", "nprobe": None, "recall@10": 1.0, **timings(flat)}]
nprobes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128) if p <= NLIST]
for nprobe in nprobes:
    ivf.nprobe = nprobe
    rows.append({"index": "IVF", "nprobe": nprobe, "recall@10": ann_recall(search_ids(ivf, queries, 10), exact_top),
                 **timings(ivf)})
good = [r for r in rows[1:] if r["recall@10"] >= TARGET_RECALL]
chosen = (good[0] if good else rows[-1])["nprobe"]

print(f"\n{'index':<13}{'nprobe':>7}{'recall@10':>11}{'p50 ms':>9}{'p95 ms':>9}{'QPS (1)':>10}{'QPS (256)':>11}")
for r in rows:
    mark = "  <- chosen" if r["nprobe"] == chosen else ""
    print(f"{r['index']:<13}{'' if r['nprobe'] is None else r['nprobe']:>7}{r['recall@10']:>11.4f}{r['p50_ms']:>9.3f}"
          f"{r['p95_ms']:>9.3f}{r['qps']:>10,.0f}{r['qps_batch256']:>11,.0f}{mark}")
chosen_row = next(r for r in rows if r["nprobe"] == chosen)
print(f"\nchosen nprobe = {chosen} of {NLIST} lists: ANN recall@10 {chosen_row['recall@10']:.3f}, p50 latency "
      f"{chosen_row['p50_ms']:.3f} ms vs {rows[0]['p50_ms']:.3f} ms exact "
      f"({rows[0]['p50_ms'] / chosen_row['p50_ms']:.1f}x faster per query)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
ivf_rows = rows[1:]
axes[0].plot([r["p50_ms"] for r in ivf_rows], [r["recall@10"] for r in ivf_rows], marker="o", label="IVF, p50")
axes[0].plot([r["p95_ms"] for r in ivf_rows], [r["recall@10"] for r in ivf_rows], marker=".", linestyle=":",
             color="tab:blue", alpha=0.6, label="IVF, p95")
for r in ivf_rows:
    axes[0].annotate(str(r["nprobe"]), (r["p50_ms"], r["recall@10"]), textcoords="offset points", xytext=(4, -10))
axes[0].scatter([rows[0]["p50_ms"]], [1.0], marker="s", color="black", zorder=3, label="flat (exact), p50")
axes[0].scatter([chosen_row["p50_ms"]], [chosen_row["recall@10"]], marker="*", s=250, color="tab:red", zorder=4,
                label=f"chosen nprobe = {chosen}")
axes[0].axhline(TARGET_RECALL, color="grey", linestyle="--", linewidth=1)
axes[0].set_xscale("log")
axes[0].set_xlabel("latency per query, one thread (ms, log scale)")
axes[0].set_ylabel("ANN recall@10 vs exact")
axes[0].set_title(f"{N_CATALOG:,} items, nlist = {NLIST} (numbers: nprobe)")
axes[0].legend(loc="lower right")
axes[1].plot(nprobes, [r["qps"] for r in ivf_rows], marker="o", label="IVF, one query per call (1 thread)")
axes[1].plot(nprobes, [r["qps_batch256"] for r in ivf_rows], marker="o", label="IVF, batches of 256")
axes[1].axhline(rows[0]["qps"], color="black", linestyle="--", linewidth=1, label="flat, one query per call (1 thread)")
axes[1].axhline(rows[0]["qps_batch256"], color="black", linestyle=":", linewidth=1, label="flat, batches of 256")
axes[1].set_xscale("log", base=2)
axes[1].set_yscale("log")
axes[1].set_xlabel("nprobe")
axes[1].set_ylabel("queries per second")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ANN recall is about the index. What the *recommender* loses is held-out items, and with seen-item
# exclusion there is a second effect: an IVF that probes few lists may not even hold `k + S`
# candidates, so heavy users' lists come back short. Back on the real catalog, the winning tower
# through an IVF index of 32 lists (about 50 movies each), seen items excluded, against exact
# retrieval (the table's row above):

# %%
users_t, targets_t = ds.targets("test")
targets_t = torch.tensor(np.array(targets_t))[:, None]
real_queries = user_vectors(models[best], users_t)
seen_t = padded_seen(test_sequences, users_t)
exact_lists = search_excluding_seen(indexes[best], real_queries, seen_t, K)
small_ivf = build_ivf_index(item_vectors(models[best]), nlist=32, nprobe=1)
print(f"{'retrieval':<18}{'HR@10':>8}{'Recall@50':>11}{'ANN recall@50':>15}{'short lists':>13}")
print(f"{'exact':<18}{recall_at_k(exact_lists, targets_t, 10).mean():>8.4f}"
      f"{recall_at_k(exact_lists, targets_t, K).mean():>11.4f}{1.0:>15.3f}{0:>13}")
for nprobe in (1, 2, 4, 8, 16):
    small_ivf.nprobe = nprobe
    lists = search_excluding_seen(small_ivf, real_queries, seen_t, K)
    print(f"{f'IVF nprobe={nprobe}':<18}{recall_at_k(lists, targets_t, 10).mean():>8.4f}"
          f"{recall_at_k(lists, targets_t, K).mean():>11.4f}{ann_recall(lists, exact_lists):>15.3f}"
          f"{int((lists == 0).any(dim=1).sum()):>13}")

# %% [markdown]
# ## Reflection
#
# 1. Your catalog grows tenfold. Which of `nlist` and `nprobe` would you change, in which direction,
#    and what happens to latency and recall if you change neither?
# 2. `search_excluding_seen` over-fetches `k + S`. An Amazon power user has 5,000 seen items and the
#    GPU caps k at 2,048. What would you do: cap the history to recent items, search in rounds,
#    filter inside the index, or something else? What does each cost?
# 3. On the real catalog, how many lists did the IVF need to probe before HR@10 matched exact
#    retrieval, and how did the "short lists" column explain the gap at small `nprobe`? Which items
#    does an IVF miss first, and are they the ones users pick next?
# 4. The popularity baseline is an inner product too: which user vector and which item vectors
#    would let a FAISS index serve it?
# 5. Shuffle each test user's history before it enters the Transformer tower and evaluate again. If
#    the Transformer's advantage comes from order and recency, what should happen, and to the
#    mean-pool tower?
#
# **After:** [readings/session_06.md](../readings/session_06.md): Krichene and Rendle on sampled
# metrics, and the FAISS guidelines for choosing an index.
# **Next:** session 07 builds the ranker, DLRM, which re-scores the candidates this retriever returns.
