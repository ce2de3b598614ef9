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
# # Session 01 — Orientation and the system map
#
# Over sixteen sessions you will build a modern recommender system in PyTorch, end to end:
# two-tower retrieval, a FAISS index, a DLRM ranker, LLM cold-start, semantic IDs,
# `torch.compile`, a FastAPI service, and a generative recommender as the capstone.
#
# **Today** you look at the system you are about to build, check your machine, and get
# to know the data the way a recsys engineer does before training anything: how many
# users and items, how sparse, how skewed. Then you build the baseline every model in
# this workbook has to beat: **recommend what is popular**.
#
# You write four functions:
#
# | # | exercise | what it computes |
# | --- | --- | --- |
# | 1 | `interaction_stats` | users, items, interactions, density, activity per user and per item |
# | 2 | `item_popularity` | interactions per item id, as a tensor indexed by id |
# | 3 | `long_tail_share` | the share of all interactions that the most popular 20% of items take |
# | 4 | `recommend_popular` | the top-k popular items per user, excluding what they have seen |
#
# **Before:** [readings/session_01.md](../readings/session_01.md) (20 minutes).
# **Loop:** fill in each "you write" cell, run the check right below it, then
# `pytest harness/session_01` in a terminal for the full verdict. Stuck? `python -m harness hint 01`.

# %% [markdown]
# ## 1. The system map
#
# Large platforms cannot score millions of items with a heavy model for every request,
# so recommendation is a *cascade*: a cheap model narrows millions of items to about a
# thousand candidates, a richer model ranks those, and a service returns the top few
# within a latency budget. Items that nobody has interacted with yet get their
# representation from their text, through a language model.
#
# ```
#  user history ──► Retrieval (two-tower) ──► ~1000 candidates ──► Ranking (DLRM) ──► top-K ──► Serving (FastAPI)
#                   sessions 03-06               (FAISS, 06)        sessions 07-10                sessions 14-15
#                         ▲
#                         │ item embeddings from text for items with no history
#                   LLM cold-start (e5-base-v2, session 11) ──► semantic IDs (session 12)
#                                                                     │
#                   Generative recommender: decode the next item's semantic ID (session 16)
# ```
#
# | sessions | what they add to the pipeline |
# | --- | --- |
# | 01 | the data's shape, the popularity baseline, the evaluation protocol |
# | 02 | `Dataset`, padding and masks, negative sampling |
# | 03–06 | two-tower retriever: towers, contrastive loss, training loop, FAISS retrieval |
# | 07–10 | DLRM ranker, ranking losses, offline metrics, full retrieve → rank evaluation |
# | 11–12 | text embeddings for cold items, semantic IDs |
# | 13 | `torch.compile` and honest GPU timing |
# | 14–15 | the `/recommend` service, micro-batching, load tests |
# | 16 | a causal Transformer that *generates* semantic IDs: retrieval without an index |
#
# Every stage is evaluated the same way, so numbers are comparable across sessions:
# **leave-last-out**. Each user's last interaction is the test item, the one before it
# the validation item. A model ranks the test item against the *whole catalog*, minus
# the items the user has already seen, and we report **HR@10** (is it in the top 10?)
# and **NDCG@10** (how high?).

# %% tags=["export"]
import math

import pandas as pd
import torch

# %%
# Not exported: notebook-only set-up. `check(...)` runs the autograder's tests of one
# exercise against the functions defined in this notebook.
from harness import Checker

check = Checker(session=1, namespace=globals())

# %% [markdown]
# ## 2. Your machine
#
# The same code runs on a laptop CPU and on a GPU. The report tells you which device the
# workbook will use, which autocast dtype mixed precision will use there (bf16 on recent
# GPUs, fp16 with loss scaling on older ones, plain fp32 on CPU), whether FAISS can use
# the GPU, and which text encoders are available offline.

# %%
from harness.env import environment_report

print(environment_report())

# %% [markdown]
# ## 3. The data
#
# The default dataset is **MovieLens-100K** (it ships with the workbook's dependencies,
# so nothing is downloaded): 100,000 ratings from 943 users on 1,682 movies. Session 02
# adds Amazon Reviews 2023 (Electronics), the course's main dataset, and larger
# MovieLens versions. All of them arrive in one schema:
#
# * `interactions`: `user_id`, `item_id` (contiguous integers from 1; **0 is reserved for
#   padding**), `rating`, `timestamp`, and `split` (`train` / `valid` / `test`);
# * `items`: `item_id`, `title`, `text`, `category`, ...
#
# The dataset name can be changed with the `WORKBOOK_DATASET` environment variable.

# %%
import os

from harness.data import load_dataset

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
ds = load_dataset(DATASET)
print(ds.summary())
ds.interactions.head()

# %%
ds.items[["item_id", "title", "category", "text"]].head()

# %% [markdown]
# ## Exercise 1 — `interaction_stats`
#
# Before modelling anything, measure the log. Return a dict with:
#
# | key | meaning |
# | --- | --- |
# | `n_users`, `n_items` | distinct users and items **that appear in the log** |
# | `n_interactions` | rows of the log |
# | `density` | `n_interactions / (n_users * n_items)`: the filled share of the user × item matrix |
# | `mean_per_user`, `median_per_user` | interactions per user |
# | `mean_per_item`, `median_per_item` | interactions per item (items that appear) |
#
# Values are plain Python numbers (`int` for counts, `float` for the rest).

# %% tags=["export"]
def interaction_stats(interactions: pd.DataFrame) -> dict:
    """Summary statistics of an interaction log.

    Args:
        interactions: one row per interaction, with integer columns ``user_id`` and ``item_id``.

    Returns:
        dict with int ``n_users``, ``n_items``, ``n_interactions`` and float ``density``,
        ``mean_per_user``, ``median_per_user``, ``mean_per_item``, ``median_per_item``.
    """
    ### BEGIN SOLUTION
    per_user = interactions.groupby("user_id").size()
    per_item = interactions.groupby("item_id").size()
    n_users, n_items, n = len(per_user), len(per_item), len(interactions)
    return {
        "n_users": int(n_users),
        "n_items": int(n_items),
        "n_interactions": int(n),
        "density": n / (n_users * n_items),
        "mean_per_user": float(per_user.mean()),
        "median_per_user": float(per_user.median()),
        "mean_per_item": float(per_item.mean()),
        "median_per_item": float(per_item.median()),
    }
    ### END SOLUTION


# %%
check("interaction_stats")
stats = interaction_stats(ds.interactions)
stats

# %% [markdown]
# A density around 6% is high for recommendation data: MovieLens users were asked to
# rate at least 20 movies. Amazon Electronics is about 0.003% dense. The mean per user is
# far above the median: a few users rate a great deal. That skew is the subject of the
# next plots.

# %% [markdown]
# ## Exercise 2 — `item_popularity`
#
# Models index items by id, so popularity should be a tensor indexed by id too:
# `counts[i]` is the number of interactions with item `i`, for every id `0..n_items`,
# including items nobody touched. Id 0 is padding: it may appear in the input (padded
# batches do that) but it is not an item, so `counts[0]` must be 0.

# %% tags=["export"]
def item_popularity(item_ids: torch.Tensor, n_items: int) -> torch.Tensor:
    """Interactions per item id.

    Args:
        item_ids: int64 tensor (N,) of item ids in ``0..n_items``; 0 is padding and is not counted.
        n_items: catalog size (ids run 1..n_items).

    Returns:
        int64 tensor (n_items + 1,) with ``counts[i]`` = occurrences of ``i`` and ``counts[0] == 0``.
    """
    ### BEGIN SOLUTION
    counts = torch.bincount(item_ids.long(), minlength=n_items + 1)
    counts[0] = 0
    return counts
    ### END SOLUTION


# %%
check("item_popularity")
train = ds.split("train")
counts = item_popularity(torch.tensor(train["item_id"].to_numpy()), ds.n_items)
top = torch.argsort(counts, descending=True, stable=True)[:5]
pd.DataFrame({"item_id": top.numpy(), "title": ds.item_titles[top.numpy()], "interactions": counts[top].numpy()})

# %% [markdown]
# ## Power laws
#
# Plot interactions per item and per user against their rank, on log-log axes. A roughly
# straight line means a power law: a short **head** of very popular items, and a **long
# tail** of items with a handful of interactions each. The tail is where recommendation
# is hard (little signal per item) and where it is valuable (users can't find those
# items by themselves). It is also where cold-start lives (session 11).

# %%
import matplotlib.pyplot as plt

from harness.plots import lorenz_curve, rank_frequency

user_counts = ds.split("train").groupby("user_id").size().to_numpy()
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
rank_frequency(axes[0], counts[1:].numpy(), "items", color="tab:blue")
axes[0].set_title("interactions per item")
rank_frequency(axes[1], user_counts, "users", color="tab:orange")
axes[1].set_title("interactions per user")
lorenz_curve(axes[2], counts[1:].numpy(), "items")
axes[2].set_title("concentration of interactions")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Exercise 3 — `long_tail_share`
#
# Put one number on the skew: the share of all interactions that go to the
# `ceil(head_fraction * n_items)` most popular items, where `n_items` is the catalog
# size (slot 0 is padding, not an item). With `head_fraction=0.2` this is the "80/20"
# number: if popularity were uniform it would be 0.2.

# %% tags=["export"]
def long_tail_share(counts: torch.Tensor, head_fraction: float = 0.2) -> float:
    """Share of interactions captured by the most popular items.

    Args:
        counts: int tensor (n_items + 1,) of interactions per item id; slot 0 is padding.
        head_fraction: fraction of the catalog that forms the head, in (0, 1].

    Returns:
        float in [0, 1]: sum of the top ``ceil(head_fraction * n_items)`` counts / sum of all counts.
    """
    ### BEGIN SOLUTION
    items = counts[1:].double()
    n_head = math.ceil(head_fraction * items.numel())
    head = torch.sort(items, descending=True).values[:n_head]
    return float(head.sum() / items.sum())
    ### END SOLUTION


# %%
check("long_tail_share")
print(f"the top 20% of items take {long_tail_share(counts):.1%} of the training interactions")

# %% [markdown]
# ## Exercise 4 — `recommend_popular`
#
# The popularity baseline recommends the same list to everyone, minus what each user has
# already seen. Three details make it a correct baseline rather than a leaky one:
#
# 1. **Seen items are excluded.** `seen[b, i]` is `True` when user `b` has interacted
#    with item `i`; those items must never come back.
# 2. **Padding is not an item.** Column 0 must never be recommended.
# 3. **Ties are broken deterministically**, by the lower item id. `torch.topk` returns
#    tied items in an unspecified order, so two runs (or a CPU and a GPU) could disagree.
#    A stable descending sort keeps equal scores in id order.
#
# If some user has fewer than `k` unseen items, raise a `ValueError` that says so.

# %% tags=["export"]
def recommend_popular(counts: torch.Tensor, seen: torch.Tensor, k: int) -> torch.Tensor:
    """Top-k most popular unseen items for each user.

    Args:
        counts: int or float tensor (n_items + 1,), popularity per item id (slot 0 = padding).
        seen: bool tensor (B, n_items + 1), True where the user has interacted with the item.
        k: number of items to recommend per user.

    Returns:
        int64 tensor (B, k) of item ids, most popular first, ties broken by the lower id.

    Raises:
        ValueError: if a user has fewer than ``k`` unseen items.
    """
    ### BEGIN SOLUTION
    available = (~seen[:, 1:]).sum(dim=1)
    if (available < k).any():
        user = int(torch.nonzero(available < k)[0])
        raise ValueError(f"user row {user} has only {int(available[user])} unseen items, fewer than k={k}")
    scores = counts.to(torch.float64).expand(seen.shape[0], -1).clone()
    scores = scores.masked_fill(seen, -math.inf)
    scores[:, 0] = -math.inf
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return order[:, :k]
    ### END SOLUTION


# %%
check("recommend_popular")

# %% [markdown]
# ## Run it: the popularity baseline on the test split
#
# The evaluation protocol is provided by `harness.evaluation`: for every user, rank the
# held-out test item against all items the user has not seen (their train and valid
# items are removed) and compute HR@K and NDCG@K. Popularity is counted on what is
# visible before the test items, train and valid: counting the test items themselves
# would leak the answer. For scale, a uniformly random ranking gets HR@10 = 10 / (unseen
# items) ≈ 0.006 in expectation; the `random` row measures it on 943 users, so it is noisy.

# %%
from harness.evaluation import MetricsTable, evaluate_topk

visible = torch.tensor(ds.history("test")["item_id"].to_numpy())
visible_counts = item_popularity(visible, ds.n_items)


def popular_lists(users: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    return recommend_popular(visible_counts, seen, k=50)


table = MetricsTable()
table.add("popularity", evaluate_topk(popular_lists, ds, split="test", ks=(10, 50)))
generator = torch.Generator().manual_seed(0)
table.add("random", evaluate_topk(
    lambda users, seen: recommend_popular(torch.rand(ds.n_items + 1, generator=generator), seen, k=50),
    ds, split="test", ks=(10, 50)))
print(table)

# %%
fig, ax = plt.subplots(figsize=(5, 3))
from harness.plots import metric_bars

metric_bars(ax, table, "HR@10")
ax.set_title(f"{DATASET}, leave-last-out test")
plt.show()

# %% [markdown]
# Popularity is a strong baseline on MovieLens: about 9% of users find their next movie
# in the global top 10. Every model from session 03 on is reported next to this row; a
# model that does not beat it has not learned anything personal.
#
# ## Reflection
#
# 1. Popularity was counted on train and valid. What exactly would leak if you counted
#    it on all interactions, test included? Try it: by how much does HR@10 move, and why
#    that much for a model that recommends the same list to everyone?
# 2. Ties in popularity are broken by item id. Why does an evaluation need *some*
#    deterministic tie-breaking rule, and why is "lower id first" acceptable here?
# 3. The head (20% of items) takes most interactions. What does that predict about the
#    quality of learned embeddings for tail items, and which session addresses it?
# 4. Where in the cascade would you put the popularity model in production (hint: think
#    about new users with no history)?
#
# **After:** the "System map" notes in [readings/session_01.md](../readings/session_01.md).
# **Next:** session 02 builds the `Dataset`, the padded batches and the negative samples
# that every model from session 03 on trains on.
