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
# # Session 12 — Semantic IDs
#
# An item ID is an arbitrary integer. Movie 1 and movie 2 share nothing through their IDs, even
# if one is the sequel of the other: every ID gets its own embedding row, learned from that item's
# interactions alone, and a new item's row has learned nothing. A **semantic ID** replaces the
# arbitrary integer by a short tuple of small integers derived from the item's *content*, such that
# similar items share a prefix: `(12, 201, 7)` and `(12, 201, 30)` are close relatives, `(12, 5, 9)`
# a cousin, `(40, ...)` something else. A model that embeds the codes shares what it learns between
# relatives, and a new item arrives with codes that already mean something.
#
# The tuple is built by **residual quantisation** (TIGER, Rajput et al. 2023; RQ-KMeans in
# OpenOneRec): k-means on the item vectors gives the first code; k-means on what the first
# centroid missed (the residual) gives the second; and so on. A last **disambiguation** token makes
# the tuple unique when two items land in the same cell.
#
# ```
#   x ──► k-means₁ ──► c₁ ──► r₁ = x − C₁[c₁] ──► k-means₂ ──► c₂ ──► r₂ = r₁ − C₂[c₂] ──► k-means₃ ──► c₃
#                                                                                                       │
#   semantic ID = (c₁, c₂, c₃, d)   with d = 0, 1, 2, ... among the items that share (c₁, c₂, c₃)  ◄──────┘
#
#   DLRM:  (c₁, c₂, c₃) ──► one embedding table per level ──► sum ──► one more vector in the interaction
# ```
#
# You quantise session 11's text embeddings, measure how good the codes are, and give them to the
# DLRM as a sparse feature: embedding lookups, exactly like any categorical feature. Then an A/B
# test with session 10's paired bootstrap: continuous text vectors vs semantic IDs only vs both,
# on warm and cold items. The codes are saved for session 16, which *generates* them.
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `residual_kmeans` | L levels of k-means, each on the residuals the previous levels left: codes (N, L) |
# | 2 | `reconstruction_errors` | the squared error left after each level (it must fall) |
# | 3 | `codebook_utilization` | share of each level's codes in use, and the perplexity of their distribution |
# | 4 | `disambiguate` | an extra token that makes colliding tuples unique, as in TIGER |
# | 5 | `SemanticIDEmbedding` | one embedding table per level, summed or concatenated: a DLRM feature vector |
#
# Provided: k-means itself (FAISS's `faiss.Kmeans`, seeded), the assembly of the codes into the
# workbook's `SemanticIDs` (saved with the dataset fingerprint), and the A/B harness.
#
# **Before:** [readings/session_12.md](../readings/session_12.md): TIGER Section 3.1, Singh et al. on
# semantic IDs in ranking, FAISS's clustering page. **After:** RQ-VAE Section 3.1 and the hourglass
# paper (same page).

# %% tags=["export"]
import math
from typing import Mapping, Sequence

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.pipeline.semantic_ids import SemanticIDs

# %%
from harness import Checker

check = Checker(session=12, namespace=globals())

# %% [markdown]
# ## 1. Provided: k-means
#
# Lloyd's algorithm: start from $K$ centroids (FAISS picks $K$ random points, from the seed),
# assign every point to its nearest centroid, move each centroid to the mean of its points, repeat
# `niter` times. It minimises the squared distance of the points to their centroids,
#
# $$\min_{C,\,c}\; \sum_i \lVert x_i - C[c_i] \rVert^2 .$$
#
# `kmeans(x, k, seed=...)` returns the centroids $C$ (k, d) and each row's code $c_i \in \{0..k-1\}$.
# It is the same k-means that trains the coarse quantiser of session 06's IVF index: an IVF list
# *is* a one-level semantic ID.

# %% tags=["export"]
def kmeans(x: torch.Tensor, k: int, *, seed: int = 0, niter: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of the rows of ``x`` with ``faiss.Kmeans`` (provided).

    Args:
        x: float (N, d), any device; k: number of centroids (1 <= k <= N); seed: FAISS's seed.

    Returns:
        centroids float32 (k, d) and codes int64 (N,): the index of each row's nearest centroid.
    """
    data = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
    n, d = data.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means with k={k} centroids needs 1 <= k <= N = {n} points")
    # min_points_per_centroid=1: small catalogs are fine here (FAISS warns below 39 points per centroid)
    km = faiss.Kmeans(d, k, niter=niter, seed=seed, verbose=False, min_points_per_centroid=1)
    km.train(data)
    _, nearest = km.index.search(data, 1)
    return torch.from_numpy(km.centroids.copy()), torch.from_numpy(nearest[:, 0].astype(np.int64))


# %% [markdown]
# ## 2. Exercise 1 — `residual_kmeans`
#
# Level 1 clusters the vectors; every later level clusters the **residuals**, what the levels
# before it have not explained:
#
# $$r^{(0)} = x, \qquad c_l = \mathrm{kmeans}_l\big(r^{(l-1)}\big), \qquad r^{(l)} = r^{(l-1)} - C_l[c_l], \qquad
#   \hat{x}^{(l)} = \sum_{j \le l} C_j[c_j]$$
#
# so that $x = \hat x^{(L)} + r^{(L)}$ at every depth. Clustering the vectors again at level 2
# instead of the residuals is the classic mistake: level 2 then repeats level 1 with other seeds,
# and the error stops falling after the first level. Use
# `kmeans(residual, codebook_size, seed=seed + l, niter=niter)` for level $l = 0, 1, \dots$ (a
# different seed per level, so the levels do not start from the same random points), compute in
# float32, and do not modify the caller's tensor.

# %% tags=["export"]
def residual_kmeans(vectors: torch.Tensor, levels: int, codebook_size: int, *, seed: int = 0,
                    niter: int = 20) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Residual k-means: L levels of ``codebook_size`` centroids, each fit on the previous level's residuals.

    Args:
        vectors: float (N, d), one row per item (no padding row).
        levels: L; codebook_size: K, centroids per level; seed: level l uses ``seed + l``.

    Returns:
        codes int64 (N, L), column l the level-l code in 0..K-1, and the L codebooks, float32 (K, d) each.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 1 `residual_kmeans` (session 12) is not implemented yet: replace this line with your code")


# %%
check("residual_kmeans")

# %% [markdown]
# ## 3. Exercise 2 — `reconstruction_errors`
#
# How much each level adds: the mean squared error of the reconstruction from the first $l$
# levels,
#
# $$e_l = \frac{1}{N}\sum_i \Big\lVert x_i - \sum_{j \le l} C_j[c_{ij}] \Big\rVert^2, \qquad l = 1..L,$$
#
# summed over the $d$ dimensions (a squared Euclidean distance), averaged over the items. It falls
# with every level when the levels quantise residuals; divided by $\frac1N\sum_i \lVert x_i\rVert^2$
# it is the share of the vectors' energy the codes have not captured yet. Return float32 (L,).

# %% tags=["export"]
def reconstruction_errors(vectors: torch.Tensor, codes: torch.Tensor, codebooks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean squared reconstruction error after each level.

    Args:
        vectors: float (N, d); codes: int64 (N, L); codebooks: L float tensors (K_l, d).

    Returns:
        float32 (L,): entry l-1 is mean_i ||x_i - sum_{j<=l} C_j[codes[i, j]]||^2.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 2 `reconstruction_errors` (session 12) is not implemented yet: replace this line with your code")


# %%
check("reconstruction_errors")

# %% [markdown]
# ## 4. Exercise 3 — `codebook_utilization`
#
# A codebook of $K$ codes where the items pile into a few is wasted capacity: collisions go up,
# and the codes tell items apart less well. Two numbers per level:
#
# * the **share of codes used**: distinct codes that occur, over $K$;
# * the **perplexity** of the code distribution, $\exp(H)$ with $H = -\sum_k p_k \ln p_k$ and
#   $p_k$ the share of items with code $k$ (terms with $p_k = 0$ count 0: $0 \ln 0 = 0$, not NaN).
#   It reads as "the number of equally used codes with the same entropy": $K$ when every code is
#   used equally, 1 when every item has the same code. The natural log with `exp`, or `log2` with
#   `2 **`: the pair must match.
#
# Each level separately: level 2's codes are unrelated to level 1's, and pooling them would hide a
# collapsed level behind a healthy one.

# %% tags=["export"]
def codebook_utilization(codes: torch.Tensor, codebook_sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per level: the share of the codebook in use and the perplexity of the code distribution.

    Args:
        codes: int64 (N, L) with codes[:, l] in 0..codebook_sizes[l]-1 (items only, no padding row).
        codebook_sizes: L ints.

    Returns:
        {"used": float32 (L,) distinct codes / K_l, "perplexity": float32 (L,) exp(entropy), in [1, K_l]}.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 3 `codebook_utilization` (session 12) is not implemented yet: replace this line with your code")


# %%
check("codebook_utilization")

# %% [markdown]
# ## 5. Exercise 4 — `disambiguate`
#
# Two items with the same $L$ codes are a **collision**: a model that generates the codes (session
# 16) could not say which of the two it meant. TIGER appends one more token: the items that share a
# tuple get $0, 1, 2, \dots$ in a fixed order, and every other item gets 0.
#
# ```
#   item   codes         -> with the disambiguation token
#   1      (3, 1, 4)        (3, 1, 4, 0)
#   2      (2, 7, 1)        (2, 7, 1, 0)
#   3      (3, 1, 4)        (3, 1, 4, 1)     second item with (3, 1, 4)
#   4      (3, 1, 4)        (3, 1, 4, 2)     third
#   5      (3, 1, 5)        (3, 1, 5, 0)     differs in the last level: no collision
# ```
#
# The order within a group is the rows' order (lower row first), so that the IDs are reproducible.
# Vectorised, `torch.unique(codes, dim=0, return_inverse=True)` numbers the groups, and a stable
# sort of the group numbers puts each group's rows together in row order; a Python loop with a
# dictionary of counters is fine too at catalog sizes. Return a new tensor; the input stays as it was.

# %% tags=["export"]
def disambiguate(codes: torch.Tensor) -> torch.Tensor:
    """Append a disambiguation column that makes every row unique.

    Args:
        codes: int64 (N, L).

    Returns:
        int64 (N, L + 1): the codes, then column L = the number of earlier rows (lower index) with
        the same L codes (0 for the first row of each tuple, and for every row whose tuple is unique).
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 4 `disambiguate` (session 12) is not implemented yet: replace this line with your code")


# %%
check("disambiguate")

# %% [markdown]
# ## 6. Provided: the semantic IDs of a catalog
#
# `build_semantic_ids` puts your exercises together: residual k-means on items 1..n (row 0 is the
# padding item), the disambiguation column, and the statistics (relative error, codes used and
# perplexity per level, the collision rate before and after disambiguation), into the workbook's
# `SemanticIDs` (from `harness.pipeline.semantic_ids`, the contract with session 16): codes
# `(n_items + 1, L + 1)` with a zero padding row, one vocabulary size per column, the source of the
# vectors and the dataset fingerprint. The pipeline calls this very function (through `upstream(12)`).

# %% tags=["export"]
def collision_rate(codes: torch.Tensor) -> float:
    """Share of rows whose full code tuple also belongs to another row (provided)."""
    if len(codes) == 0:
        return 0.0
    _, group, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    return float((counts[group] > 1).double().mean())


def build_semantic_ids(vectors: torch.Tensor, *, levels: int, codebook_size: int, seed: int, source: str,
                       fingerprint: str, niter: int = 20) -> SemanticIDs:
    """Semantic IDs of items 1..n from ``vectors`` (n_items + 1, d), row 0 ignored (provided)."""
    x = vectors[1:].detach().to("cpu", torch.float32)
    k = min(int(codebook_size), len(x))
    codes, codebooks = residual_kmeans(x, levels, k, seed=seed, niter=niter)
    full = disambiguate(codes)
    errors = reconstruction_errors(x, codes, codebooks)
    energy = float((x.double() ** 2).sum(dim=1).mean())
    usage = codebook_utilization(codes, [k] * levels)
    padded = torch.cat([torch.zeros(1, levels + 1, dtype=torch.long), full], dim=0)
    sizes = (k,) * levels + (int(full[:, levels].max()) + 1 if len(full) else 1,)
    stats = {"levels": levels, "codebook_size": k, "n_items": len(x),
             "reconstruction_error": errors.tolist(), "relative_error": (errors / max(energy, 1e-12)).tolist(),
             "used": usage["used"].tolist(), "perplexity": usage["perplexity"].tolist(),
             "collision_rate_before": collision_rate(codes), "collision_rate_after": collision_rate(full),
             "largest_group": sizes[-1]}
    return SemanticIDs(padded, sizes, source, fingerprint, stats)


# %% [markdown]
# ## 7. Exercise 5 — `SemanticIDEmbedding`
#
# In the ranker, a semantic ID is a sparse feature: one embedding table per level (a code of level
# 1 and the same number at level 2 mean unrelated things), and the item's vector is the **sum** of
# its levels' rows (Singh et al.'s default; a sum of prefix-level vectors makes items that share a
# prefix share part of their vector) or their **concatenation**, projected back to $d$:
#
# $$s = \sum_{l} E_l[c_l] \qquad\text{or}\qquad s = W\,[E_1[c_1]; \dots; E_C[c_C]], \quad W \in \mathbb{R}^{d \times C d}$$
#
# It is a DLRM `extra` module (session 07): it maps the batch to `(B, d)`, one more vector in the
# interaction, and finds an item's codes from the batch's raw item id `batch["item"]` in a buffer
# (the codes table travels with the model). Codes run from 0, and 0 is a real code, so table rows
# are **shifted by one**: code $c$ is row $c + 1$, and row 0 (`padding_idx=0`) is kept for the padding
# item, id 0, whose vector is zero. Initialise each table like DLRM's,
# $U(-1/\sqrt{n}, 1/\sqrt{n})$ for $n$ rows, then zero row 0.
#
# Which columns to embed is the caller's choice: the pipeline passes the $L$ k-means levels and
# leaves out the disambiguation index, which has no meaning (a ranker that embedded it would get a
# unique ID per item back, and a new item's index says nothing about it).
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `codes` | buffer, int64 copy of the argument | (n_items + 1, C) |
# | `tables` | `nn.ModuleList` of `nn.Embedding(codebook_sizes[l] + 1, dim, padding_idx=0)`, one per column | `tables.<l>.weight` (K_l + 1, dim) |
# | `proj` | `mode="concat"` only: `nn.Linear(C * dim, dim, bias=False)` | `proj.weight` (dim, C dim) |

# %% tags=["export"]
class SemanticIDEmbedding(nn.Module):
    """A semantic ID as one DLRM feature vector: per-level embedding tables, summed or concatenated.

    Args:
        codes: int64 (n_items + 1, C), the codes of each item id (row 0 = padding), codes[:, l] in
            0..codebook_sizes[l]-1.
        codebook_sizes: C ints; dim: d; mode: "sum" or "concat".

    ``forward(batch)``: ``batch["item"]`` int64 (B,) raw item ids -> float (B, dim); the zero vector
    for item 0.
    """

    def __init__(self, codes: torch.Tensor, codebook_sizes: Sequence[int], dim: int = 16, mode: str = "sum"):
        super().__init__()
        if mode not in ("sum", "concat"):
            raise ValueError(f"mode must be 'sum' or 'concat', got {mode!r}")
        if codes.ndim != 2 or codes.shape[1] != len(codebook_sizes):
            raise ValueError(f"codes {tuple(codes.shape)} need one column per codebook size ({len(codebook_sizes)})")
        self.mode = mode
        self.dim = dim
        # YOUR CODE HERE
        raise NotImplementedError("exercise 5 `SemanticIDEmbedding` (SemanticIDEmbedding.__init__) (session 12) is not implemented yet: replace this line with your code")

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # YOUR CODE HERE
        raise NotImplementedError("exercise 5 `SemanticIDEmbedding` (SemanticIDEmbedding.forward) (session 12) is not implemented yet: replace this line with your code")


# %%
check("SemanticIDEmbedding")

# %% [markdown]
# ## Run it, part 1: the catalog's semantic IDs
#
# Session 11's text vectors of every item (from the on-disk cache when session 11 or the pipeline
# has encoded them already), quantised by your functions with the settings of
# `harness/configs/semantic_ids.yaml`:

# %%
import os
import time

import matplotlib.pyplot as plt
import pandas as pd

from harness import upstream
from harness.config import load_config
from harness.data import load_dataset
from harness.env import pick_device
from harness.pipeline import coldstart as cs
from harness.pipeline.semantic_ids import load_semantic_ids, save_semantic_ids, semantic_ids_path

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
cfg = load_config("semantic_ids")
cfg_cold, cfg_rank = cs.ranker_configs()
device = pick_device()
ds = load_dataset(DATASET)
text_model = cs.load_text_model(cfg_cold.text.model, device=device)
vectors = cs.item_text_vectors(ds, text_model, batch_size=int(cfg_cold.text.batch_size),
                               max_tokens=int(cfg_cold.text.max_tokens), progress=False)
start = time.perf_counter()
sids = build_semantic_ids(vectors, levels=int(cfg.codes.levels), codebook_size=int(cfg.codes.codebook_size),
                          seed=int(cfg.codes.seed), source=f"text:{text_model.name}",
                          fingerprint=ds.meta["fingerprint"], niter=int(cfg.codes.niter))
print(f"{ds.summary()}; built in {time.perf_counter() - start:.1f} s\n")
print(sids.describe())

# %% [markdown]
# Three views of the codes: how much of the vectors each level explains, how evenly each level uses
# its codebook (codes sorted by how many items they hold: a healthy level is flat, a collapsed one
# a cliff), and how large the groups of items are that share all L codes.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
levels_axis = np.arange(1, sids.levels + 1)
axes[0].plot(levels_axis, sids.stats["relative_error"], marker="o")
axes[0].set_xticks(levels_axis)
axes[0].set_xlabel("levels used")
axes[0].set_ylabel("squared error / squared norm")
axes[0].set_title("reconstruction error after each level")
for level in range(sids.levels):
    counts = np.sort(np.bincount(sids.codes[1:, level].numpy(), minlength=sids.codebook_sizes[level]))[::-1]
    axes[1].plot(np.arange(1, len(counts) + 1), counts, marker=".", label=f"level {level + 1} (perplexity "
                 f"{sids.stats['perplexity'][level]:.1f})")
axes[1].set_yscale("symlog")
axes[1].set_xlabel("code, by rank")
axes[1].set_ylabel("items with the code")
axes[1].set_title("codebook use")
axes[1].legend(fontsize=8)
_, group_sizes = torch.unique(sids.codes[1:, :sids.levels], dim=0, return_counts=True)
sizes, how_many = np.unique(group_sizes.numpy(), return_counts=True)
axes[2].bar(sizes, how_many * sizes)
axes[2].set_yscale("log")
axes[2].set_xlabel(f"items sharing the same {sids.levels} codes")
axes[2].set_ylabel("items")
axes[2].set_title(f"collisions: {sids.stats['collision_rate_before']:.1%} of items before disambiguation")
plt.tight_layout()
plt.show()

# %% [markdown]
# What a shared prefix means: the items of the most crowded level-1 code, and within it, of its
# most crowded level-2 code (titles only; the text they were encoded from also has the genres).

# %%
titles = ds.item_titles
first = int(torch.mode(sids.codes[1:, 0]).values)
in_first = torch.nonzero(sids.codes[:, 0] == first).squeeze(1)
in_first = in_first[in_first > 0]
second = int(torch.mode(sids.codes[in_first, 1]).values)
in_second = in_first[sids.codes[in_first, 1] == second]
print(f"level-1 code {first}: {len(in_first)} items, e.g. " + "; ".join(titles[int(i)] for i in in_first[:8]))
print(f"  ... and level-2 code {second} within it: {len(in_second)} items, e.g. "
      + "; ".join(titles[int(i)] for i in in_second[:8]))
example = int(in_second[0])
print(f"item {example} ({titles[example]}): semantic ID {tuple(sids.codes[example].tolist())}; "
      f"lookup -> {sids.lookup()[tuple(sids.codes[example].tolist())]}")

# %% [markdown]
# **How the codebook size trades error for collisions.** More codes per level: less error, fewer
# collisions, but fewer items per code to share what they learn, and a larger vocabulary for
# session 16 to generate. Measured with your `residual_kmeans`, the same vectors, three levels:

# %%
sweep = [4, 8, 16] if cfg.preset == "smoke" else [8, 16, 32, 64, 128]
x_items = vectors[1:]
energy = float((x_items.double() ** 2).sum(1).mean())
rows = []
for size in sweep:
    size = min(size, len(x_items))
    codes_k, books_k = residual_kmeans(x_items, int(cfg.codes.levels), size, seed=int(cfg.codes.seed))
    errors_k = reconstruction_errors(x_items, codes_k, books_k) / energy
    usage_k = codebook_utilization(codes_k, [size] * int(cfg.codes.levels))
    rows.append({"K": size, "relative error (last level)": float(errors_k[-1]),
                 "collisions before": collision_rate(codes_k), "after": collision_rate(disambiguate(codes_k)),
                 "codes used, level 1": float(usage_k["used"][0]),
                 "perplexity, last level": float(usage_k["perplexity"][-1])})
sweep_table = pd.DataFrame(rows).set_index("K")
print(sweep_table.round(4).to_string())
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.plot(sweep_table.index, sweep_table["relative error (last level)"], marker="o", label="relative error")
ax.plot(sweep_table.index, sweep_table["collisions before"], marker="s", label="share of items colliding")
ax.set_xscale("log", base=2)
ax.set_xlabel(f"codes per level K ({int(cfg.codes.levels)} levels)")
ax.set_title(f"{DATASET}: the codebook size")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Run it, part 2: saved for session 16
#
# The codes, the collision map and the code → item lookup go to `runs/semantic_ids/`, with the
# dataset fingerprint: session 16 loads them with `load_semantic_ids(path, fingerprint=...)`, which
# refuses codes built for another dataset (their item ids would mean other items).

# %%
path = save_semantic_ids(semantic_ids_path(DATASET, cfg.preset, sids.source), sids)
back = load_semantic_ids(path, fingerprint=ds.meta["fingerprint"])
assert torch.equal(back.codes, sids.codes) and len(back.lookup()) == ds.n_items
print(f"saved to {path.relative_to(path.parents[2])}: codes {tuple(back.codes.shape)}, "
      f"{len(back.collision_map())} collision groups, {len(back.lookup()):,} IDs in the lookup, all unique")

# %% [markdown]
# ## Run it, part 3: A/B — continuous vs discrete vs both
#
# Session 11's cold-start protocol and rankers, three representations of an item's content, all with
# ID dropout (so that each must carry the cold items alone):
#
# * **continuous**: session 11's text vector, projected into the interaction;
# * **discrete**: your `SemanticIDEmbedding` of the $L$ k-means levels (no disambiguation index)
#   instead: $L$ small tables whose rows are *learned from interactions* and shared by every item
#   with the same code;
# * **both**: the two vectors.
#
# Each reranks the text retriever's top-K test candidates. Which is better is the question of session
# 10: one number per user and system, and the **paired** bootstrap of the difference to the
# continuous ranker on the same users.

# %%
from harness.pipeline.ranking import RankingData, retrieve_candidates

s10 = upstream(10)
split = cs.cold_start_split(ds)
print(split.summary())
history = int(cfg_cold.retrieval.history)
data = RankingData.build(split.dataset, cs.text_retriever_view(vectors, history, exclude=split.cold_items), cfg_rank)
test_view = cs.text_retriever_view(vectors, history)
test_candidates = retrieve_candidates(test_view, split.dataset, "test", int(cfg_cold.retrieval.K))
p_drop = float(cfg_cold.ranker.id_dropout)
L = sids.levels


def semantic_feature():
    return {"semantic_id": SemanticIDEmbedding(sids.codes[:, :L], sids.codebook_sizes[:L], dim=cfg_rank.model.dim,
                                               mode=str(cfg.embedding.mode))}


s11 = upstream(11)
builds = {
    "continuous (text vector)": lambda spec: s11.build_cold_start_dlrm(spec, cfg_rank, vectors=vectors, id_dropout=p_drop),
    "discrete (semantic IDs)": lambda spec: s11.build_cold_start_dlrm(spec, cfg_rank, id_dropout=p_drop,
                                                                      extra=semantic_feature()),
    "both": lambda spec: s11.build_cold_start_dlrm(spec, cfg_rank, vectors=vectors, id_dropout=p_drop,
                                                   extra=semantic_feature()),
}
pipeline_names = {"continuous (text vector)": "DLRM text + ID dropout", "discrete (semantic IDs)":
                  "DLRM semantic IDs + ID dropout", "both": "DLRM text + semantic IDs + ID dropout"}
per_user = {}
for name, build in builds.items():
    variant = cs.variant_of(pipeline_names[name], cfg_cold)  # as in the pipeline: text rankers see the text score
    start = time.perf_counter()
    model, result = cs.train_cold_start_ranker(data, variant, cfg_rank, build, cold_items=split.cold_items,
                                               device=device, log=lambda line: None)
    per_user[name] = cs.per_user_cold_warm(cs.ranked_by(model, data, variant, test_candidates, device),
                                           test_candidates.targets)
    print(f"{name}: {result['steps']} steps in {time.perf_counter() - start:.0f} s, valid NDCG@10 "
          f"{result['valid']['NDCG@10']:.4f}")

# %%
ab_run = cs.ColdStartRun(split, vectors, text_model.name, data, test_view, test_candidates, cfg_cold, cfg_rank,
                         per_user=per_user)
names = list(builds)
boot = cs.cold_warm_bootstrap(ab_run, names, "continuous (text vector)")
records = cs.cold_warm_records(ab_run, names, "continuous (text vector)", boot)
print(cs.format_cold_warm(records, f"{DATASET}: item representations, rerank of the text retriever's top-"
                          f"{test_candidates.items.shape[1]}", "continuous (text vector)"))

fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
for ax, which in zip(axes, ("cold", "warm")):
    for i, name in enumerate(names):
        b = boot[(which, "NDCG@10")][name]
        ax.errorbar([b["delta"]], [i], xerr=[[b["delta"] - b["delta_low"]], [b["delta_high"] - b["delta"]]],
                    fmt="o", capsize=4, color=f"C{i}")
    ax.axvline(0.0, color="grey", linestyle="--")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("Δ NDCG@10 vs continuous, 95% paired bootstrap")
    ax.set_title(f"{which} set ({int((split.is_cold_case if which == 'cold' else ~split.is_cold_case).sum())} users)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read off the table, computed from it:

# %%
for which in ("cold", "warm"):
    for name in names[1:]:
        b = boot[(which, "NDCG@10")][name]
        verdict = ("better" if b["delta_low"] > 0 else "worse" if b["delta_high"] < 0 else
                   "not distinguishable from it")
        print(f"{which} set: {name} NDCG@10 {b['mean']:.4f} vs continuous {boot[(which, 'NDCG@10')][names[0]]['mean']:.4f},"
              f" Δ {b['delta']:+.4f} [{b['delta_low']:+.4f}, {b['delta_high']:+.4f}]: {verdict} at 95%")

# %% [markdown]
# ## Reflection
#
# 1. Your codebook has K codes per level, L levels, and the catalog N items. If codes were uniform
#    and independent, how many items would collide (a birthday problem over $K^L$ cells)? Compare
#    with the collision rate above: what does the difference say about how evenly k-means used its
#    codes, and where in the hourglass does usage concentrate?
# 2. An item's description changes and its semantic ID changes with it. What breaks in a ranker
#    that learned embeddings for the old codes, and in session 16's generative model that learned to
#    produce them? What would you version, and when would you retrain the codebook?
# 3. For a cold item, the discrete codes' embeddings were trained on *other* items with the same
#    codes. When is that better than the continuous text vector (the A/B's cold set), and when worse?
#    What does the warm set say about what the codes add for items with plenty of interactions?
# 4. OpenOneRec trains its codebook on a sample of the inventory. Would you train on all items or
#    a sample, here and at Amazon's 368K items? Think of the cost, the long tail, and new items.
# 5. **Revisit from R2:** PyEmma's *A Random Walk Down Recsys, Part 3*: codebook updates by
#    exponential moving average and dead-code reset. Which of your levels has dead codes (the usage
#    plot), and how would resetting them to random residuals change the collision rate?
#
# **Next:** session 16 generates these semantic IDs with a causal Transformer, constrained to valid
# IDs by a trie built from the lookup saved above.
