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
# # Session 02 — The data pipeline
#
# Every model from session 03 on trains on what you build today: the `Dataset` that turns a
# user's history into training examples, the collate function that pads them into batches
# with a mask, and the negative sampler that gives a model something to contrast the true
# next item with.
#
# | # | exercise | what it does |
# | --- | --- | --- |
# | 1 | `NextItemDataset` | one example per (user, position): the items before it, and the item at it |
# | 2 | `collate_sequences` | pads a list of histories into a `(B, L)` batch, with lengths and a boolean mask |
# | 3 | `popularity_distribution` | sampling probabilities ∝ count^α, padding excluded |
# | 4 | `sample_negatives` | draws negatives from that distribution, never a positive, reproducibly |
#
# **Before:** [readings/session_02.md](../readings/session_02.md): the PyTorch data-loading
# tutorial and the Amazon Reviews 2023 format (30 minutes).

# %% tags=["export"]
import math

import numpy as np
import torch
from torch.utils.data import Dataset

# %%
from harness import Checker

check = Checker(session=2, namespace=globals())

# %% [markdown]
# ## 1. From raw files to one schema
#
# The course's main dataset is **Amazon Reviews 2023, Electronics**. It is published as two
# gzip JSON-lines files, one review per line and one product per line, joined on
# `parent_asin` (the product; `asin` is a variant such as a colour):
#
# ```json
# {"rating": 5.0, "title": "Great sound", "text": "...", "images": [], "asin": "B07XJ8C8F5",
#  "parent_asin": "B07XJ8C8F7", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ",
#  "timestamp": 1588687728923, "helpful_vote": 0, "verified_purchase": true}
#
# {"main_category": "All Electronics", "title": "Wireless Earbuds ...", "average_rating": 4.3,
#  "rating_number": 1288, "features": ["..."], "description": ["..."], "price": "None",
#  "images": [...], "videos": [], "store": "...", "categories": ["Electronics",
#  "Headphones, Earbuds & Accessories", "Earbud Headphones"], "details": {...},
#  "parent_asin": "B07XJ8C8F7", "bought_together": null}
# ```
#
# Timestamps are **milliseconds**, a missing price is the *string* `"None"`, and a few lines in
# any large dump are broken. `python -m harness data prepare amazon-electronics` downloads the
# files (with resume), parses them, counts and skips malformed lines, removes repeated
# (user, item) pairs (keeping the earliest), applies iterative 5-core filtering and writes the
# workbook's schema. MovieLens and the synthetic dataset arrive in the same schema:
#
# * interactions: `user_id`, `item_id` (contiguous from 1, **0 = padding**), `rating`,
#   `timestamp`, `split`;
# * items: `item_id`, `title`, `text`, `category`, ...
#
# ### Why leave-last-out
#
# Each user's interactions are sorted by time; the **last** one is the test item, the one
# before it the validation item, the rest is training data. A random split would train on a
# user's future to predict their past, which no deployed system can do, and it inflates
# every metric. Leave-last-out keeps each prediction strictly after the history it uses.

# %%
import os

from harness.data import load_dataset

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
ds = load_dataset(DATASET)
print(ds.summary())
print(ds.interactions["split"].value_counts().to_dict())
train_sequences = ds.sequences(upto="valid")  # per user id: the train items in time order
print("user 1's first ten train items:", train_sequences[1][:10])

# %% [markdown]
# ## Exercise 1 — `NextItemDataset`
#
# A next-item model reads a user's history and predicts the item that comes next. Every
# position of every training sequence is one example: for a sequence `[5, 3, 9, 7]` and
# `max_len=2`,
#
# | position t | history (before t, at most `max_len`, most recent last) | target |
# | --- | --- | --- |
# | 1 | `[5]` | 3 |
# | 2 | `[5, 3]` | 9 |
# | 3 | `[3, 9]` | 7 |
#
# Positions start at `min_history` so every history has at least that many items. Examples are
# ordered by user id, then position. Three rules catch most bugs before they cost a week:
# the history **stops before t** (otherwise the target leaks into the input), truncation keeps
# the **most recent** items, and the dataset holds only arrays and tensors, so `DataLoader`
# workers can receive a copy of it (on macOS and Windows workers are *spawned* and get a
# pickled copy; a lambda or an open file in `self` breaks them).
#
# When `item_categories` is given (a long tensor mapping each item id to a category index,
# 0 for padding), the example also carries `history_categories` and `target_category`.

# %% tags=["export"]
class NextItemDataset(Dataset):
    """Next-item examples from per-user sequences.

    Args:
        sequences: indexable by user id; ``sequences[u]`` is the user's item ids in time order
            (list, NumPy array or tensor; index 0 and users with short histories give no example).
        max_len: keep at most this many of the most recent items as history.
        item_categories: optional int64 tensor (n_items + 1,), category index per item id.
        min_history: smallest history length of an example (>= 1).

    ``dataset[i]`` is a dict: ``user_id`` (int), ``history`` (int64 tensor (h,), 1 <= h <= max_len,
    oldest first), ``target`` (int), and with categories ``history_categories`` (int64 (h,)) and
    ``target_category`` (int). Examples are ordered by user id, then position.
    """

    def __init__(self, sequences, max_len: int, item_categories: torch.Tensor | None = None, min_history: int = 1):
        super().__init__()
        if max_len < 1 or min_history < 1:
            raise ValueError("max_len and min_history must be >= 1")
        self.max_len = max_len
        self.item_categories = item_categories
        ### BEGIN SOLUTION
        arrays = [np.asarray(s, dtype=np.int64) for s in sequences]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # user u's items: flat[offsets[u]:offsets[u + 1]]
        self.flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
        n_examples = np.maximum(lengths - min_history, 0)
        self.users = np.repeat(np.arange(len(arrays)), n_examples)
        # position of each example: min_history, min_history + 1, ... within its user
        starts = np.repeat(np.cumsum(n_examples) - n_examples, n_examples)
        self.positions = np.arange(len(self.users)) - starts + min_history
        ### END SOLUTION

    def __len__(self) -> int:
        ### BEGIN SOLUTION
        return len(self.users)
        ### END SOLUTION

    def __getitem__(self, index: int) -> dict:
        ### BEGIN SOLUTION
        user, t = int(self.users[index]), int(self.positions[index])
        base = self.offsets[user]
        start = base + max(0, t - self.max_len)
        history = torch.from_numpy(self.flat[start:base + t].copy())
        target = int(self.flat[base + t])
        example = {"user_id": user, "history": history, "target": target}
        if self.item_categories is not None:
            example["history_categories"] = self.item_categories[history]
            example["target_category"] = int(self.item_categories[target])
        return example
        ### END SOLUTION


# %%
check("NextItemDataset")
codes, category_names = ds.category_codes()
item_categories = torch.from_numpy(codes)
train_examples = NextItemDataset(train_sequences, max_len=50, item_categories=item_categories)
print(f"{len(train_examples):,} training examples from {ds.n_users:,} users")
train_examples[0]

# %% [markdown]
# ## Exercise 2 — `collate_sequences`
#
# Histories have different lengths; a batch is a rectangle. Pad with item 0, which every
# embedding table in this workbook reserves (`nn.Embedding(..., padding_idx=0)`), and return
# a **mask** that is `True` at real items, so that pooling and attention can ignore padding.
#
# * **left padding** (`[0, 0, 5]`): the most recent item is always in the last column, which
#   is where a causal Transformer reads its output (sessions 03 and 16);
# * **right padding** (`[5, 0, 0]`): the first item is always in column 0, natural for RNNs
#   and packed sequences.
#
# Return a dict with `history` (int64 `(B, L)`), `mask` (bool `(B, L)`), `lengths` (int64
# `(B,)`), `target` and `user_id` (int64 `(B,)`), and, when the examples carry categories,
# `history_categories` padded the same way and `target_category`. `L` is the longest history
# in the batch, at least 1. Raise `ValueError` for any other `padding_side`.

# %% tags=["export"]
def collate_sequences(batch: list[dict], padding_side: str = "left") -> dict:
    """Pad a list of NextItemDataset examples into tensors.

    Returns:
        dict with ``history`` int64 (B, L) padded with 0, ``mask`` bool (B, L) True at real items,
        ``lengths`` int64 (B,), ``target`` int64 (B,), ``user_id`` int64 (B,), and, if present,
        ``history_categories`` int64 (B, L) and ``target_category`` int64 (B,).
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    ### BEGIN SOLUTION
    lengths = torch.tensor([len(ex["history"]) for ex in batch], dtype=torch.long)
    width = max(int(lengths.max()) if len(batch) else 0, 1)
    keys = ["history"] + (["history_categories"] if batch and "history_categories" in batch[0] else [])
    out = {key: torch.zeros(len(batch), width, dtype=torch.long) for key in keys}
    mask = torch.zeros(len(batch), width, dtype=torch.bool)
    for b, ex in enumerate(batch):
        n = int(lengths[b])
        if n == 0:
            continue
        cols = slice(width - n, width) if padding_side == "left" else slice(0, n)
        for key in keys:
            out[key][b, cols] = torch.as_tensor(ex[key], dtype=torch.long)
        mask[b, cols] = True
    out["mask"] = mask
    out["lengths"] = lengths
    out["target"] = torch.tensor([ex["target"] for ex in batch], dtype=torch.long)
    out["user_id"] = torch.tensor([ex["user_id"] for ex in batch], dtype=torch.long)
    if batch and "target_category" in batch[0]:
        out["target_category"] = torch.tensor([ex["target_category"] for ex in batch], dtype=torch.long)
    return out
    ### END SOLUTION


# %%
check("collate_sequences")
batch = collate_sequences([train_examples[i] for i in (0, 1, 2, 500)], padding_side="left")
{key: tuple(value.shape) for key, value in batch.items()}

# %% [markdown]
# The mask of a batch, as a picture: each row is a user, dark cells are real items. With left
# padding the most recent item of every row lines up in the last column.

# %%
import matplotlib.pyplot as plt

from torch.utils.data import DataLoader

loader = DataLoader(train_examples, batch_size=16, shuffle=True, collate_fn=collate_sequences,
                    generator=torch.Generator().manual_seed(0))
sample = next(iter(loader))
fig, axes = plt.subplots(1, 2, figsize=(12, 3))
axes[0].imshow(sample["mask"].numpy(), aspect="auto", cmap="Greys", interpolation="nearest")
axes[0].set_title("mask (left padding): True = real item")
axes[0].set_xlabel("position")
axes[0].set_ylabel("example in batch")
picked = np.random.default_rng(0).choice(len(train_examples), size=min(5000, len(train_examples)), replace=False)
lengths_all = [len(train_examples[int(i)]["history"]) for i in picked]
axes[1].hist(lengths_all, bins=50)
axes[1].set_title("history length of the training examples (max_len=50)")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### DataLoader workers
#
# `num_workers=2` builds batches in two background processes while the model trains. That only
# works if the dataset can be copied into them, which is why exercise 1 asked for arrays only.
# Workers pay off when a batch is expensive to build (tokenising item text in session 11,
# decoding images); for cheap integer batches, starting processes and shipping tensors between
# them can cost more than the work itself. Measure before you assume.

# %%
import time


def batches_per_second(num_workers: int, n_batches: int = 60) -> float:
    loader = DataLoader(train_examples, batch_size=256, shuffle=True, num_workers=num_workers,
                        collate_fn=collate_sequences, generator=torch.Generator().manual_seed(0),
                        persistent_workers=False)
    start = time.perf_counter()
    for i, _ in enumerate(loader):
        if i + 1 == n_batches:
            break
    return n_batches / (time.perf_counter() - start)


for workers in (0, 2):
    print(f"num_workers={workers}: {batches_per_second(workers):.0f} batches of 256 per second")

# %% [markdown]
# ## Negative sampling
#
# Retrieval models (sessions 03–06) contrast the true next item with *other items in the same
# batch*; ranking models (sessions 07–08) need explicit negatives. Which items you sample
# shapes what the model learns:
#
# * **uniform** negatives are mostly obscure items, easy to tell apart: the model learns
#   little beyond popularity;
# * **popularity** negatives, drawn ∝ count^α, are items the user could plausibly have seen;
#   α = 0.75 is word2vec's compromise between the two.
#
# A negative must never be one of the user's positives, and sampling must be reproducible: a
# `torch.Generator` that you pass explicitly makes runs repeatable without touching the
# global random state that dropout and shuffling use.

# %% [markdown]
# ## Exercise 3 — `popularity_distribution`

# %% tags=["export"]
def popularity_distribution(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """Sampling probabilities proportional to ``counts ** alpha``.

    Args:
        counts: int or float tensor (n_items + 1,), interactions per item id (slot 0 = padding).
        alpha: 0 gives a uniform distribution over items 1..n_items, 1 is proportional to counts.

    Returns:
        float64 tensor (n_items + 1,) that sums to 1, with probability 0 for padding (index 0).
    """
    ### BEGIN SOLUTION
    probs = counts.to(torch.float64).pow(alpha)
    probs[0] = 0.0
    return probs / probs.sum()
    ### END SOLUTION


# %%
check("popularity_distribution")

# %% [markdown]
# ## Exercise 4 — `sample_negatives`
#
# For each row `b`, draw `num_negatives` items **with replacement** from `probs` restricted to
# the items that are not in `positives[b]` (a padded row of the user's item ids, 0 = padding).
# Rejection sampling is the scalable way: draw from `probs`, find the draws that hit a positive,
# redraw only those, repeat. It never builds a `(B, n_items)` matrix, which matters when the
# catalog has 368K items. Use `generator` for every random draw. If a row's positives hold all
# of the probability mass, raise `ValueError` instead of looping forever.

# %% tags=["export"]
def sample_negatives(probs: torch.Tensor, positives: torch.Tensor, num_negatives: int,
                     generator: torch.Generator | None = None, max_rounds: int = 50) -> torch.Tensor:
    """Negatives drawn from ``probs``, never one of each row's positives.

    Args:
        probs: float tensor (n_items + 1,) summing to 1 with ``probs[0] == 0``.
        positives: int64 tensor (B, L) of each user's positive item ids, padded with 0.
        num_negatives: negatives per row.
        generator: the source of randomness (the global RNG is never used when it is given).
        max_rounds: rejection rounds before the remaining rows are sampled exactly.

    Returns:
        int64 tensor (B, num_negatives); ``out[b]`` never contains an id of ``positives[b]`` nor 0.

    Raises:
        ValueError: if some row's positives hold (nearly) all of the probability mass.
    """
    ### BEGIN SOLUTION
    positives = positives.long()
    batch = positives.shape[0]
    # Probability mass left to each row once its (distinct) positives are removed.
    ordered = positives.sort(dim=1).values
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    left = 1.0 - (probs[ordered] * first).sum(dim=1)
    if (left <= 1e-12).any():
        row = int(torch.nonzero(left <= 1e-12)[0])
        raise ValueError(f"row {row}: its positives hold all of the probability mass, no negative can be drawn")
    samples = torch.multinomial(probs, batch * num_negatives, replacement=True, generator=generator)
    samples = samples.view(batch, num_negatives)
    for _ in range(max_rounds):
        clash = (samples.unsqueeze(-1) == positives.unsqueeze(1)).any(dim=-1)
        if not clash.any():
            return samples
        samples[clash] = torch.multinomial(probs, int(clash.sum()), replacement=True, generator=generator)
    # Rows still clashing put most of their mass on positives: sample them exactly.
    rows = (samples.unsqueeze(-1) == positives.unsqueeze(1)).any(dim=-1).any(dim=1).nonzero().squeeze(1)
    weights = probs.expand(len(rows), -1).clone().scatter_(1, positives[rows], 0.0)
    samples[rows] = torch.multinomial(weights, num_negatives, replacement=True, generator=generator)
    return samples
    ### END SOLUTION


# %%
check("sample_negatives")

# %% [markdown]
# ## Run it: what do different negatives look like?
#
# Sample 50 negatives for 512 training examples under α = 0, 0.75 and 1, excluding each user's
# train items. Two things to read off: how popular the sampled items are, and how often a
# negative shares the target's category. Popularity sampling moves the negatives towards the
# head, where the model must actually compete; whether it also makes them *similar* to the
# target depends on the data (on MovieLens, genre barely moves: popular movies span genres).
# Session 08 mines negatives that are similar by construction, from the retriever itself.

# %%
counts = torch.from_numpy(ds.item_counts(upto="valid"))
loader = DataLoader(train_examples, batch_size=512, shuffle=True, collate_fn=collate_sequences,
                    generator=torch.Generator().manual_seed(0))
batch = next(iter(loader))
positives = torch.nn.utils.rnn.pad_sequence(
    [torch.from_numpy(np.asarray(train_sequences[u])) for u in batch["user_id"].tolist()], batch_first=True)
generator = torch.Generator().manual_seed(0)

fig, ax = plt.subplots(figsize=(7, 4))
rows = []
for alpha in (0.0, 0.75, 1.0):
    probs = popularity_distribution(counts, alpha)
    negatives = sample_negatives(probs, positives, 50, generator=generator)
    same_category = (item_categories[negatives] == batch["target_category"][:, None]).float().mean().item()
    median_count = counts[negatives].float().median().item()
    rows.append((alpha, median_count, same_category))
    ax.hist(np.log10(counts[negatives].numpy().ravel() + 1), bins=40, alpha=0.5, label=f"α = {alpha}")
ax.set_xlabel("log10(1 + interactions of the sampled item)")
ax.set_ylabel("negatives")
ax.legend()
plt.show()
for alpha, median_count, same_category in rows:
    print(f"α = {alpha:4}: median popularity of a negative {median_count:6.0f}, "
          f"same category as the target {same_category:.1%}")

# %% [markdown]
# ## Reflection
#
# 1. The dataset makes one example per position, so a user with 500 interactions contributes
#    500 examples and one with 5 contributes 5. Which users dominate training, and what would
#    you change if you cared about light users?
# 2. Your sampler excludes a user's *train* positives. What about the validation and test
#    items: should a negative ever be the item the user will interact with next? Why does it
#    hardly matter for uniform sampling over a large catalog but matter for small ones?
# 3. Session 04 uses the *other items in the batch* as negatives instead of sampled ones. Which
#    distribution do in-batch negatives follow, and what correction does that call for?
#
# **After:** Meta's *Recommending items to more than a billion people* (see the readings page).

# %% [markdown]
# **Next:** session 03 builds the two towers that turn these batches into embeddings.
