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
# # Session 16 — A generative recommender over semantic IDs
#
# Every retriever so far *scores*: a user vector, every item's vector, a nearest-neighbour search.
# A generative retriever *writes*: it reads the user's history as a sequence of tokens and
# generates the next item's identifier, token by token, the way a language model writes the next
# word. The identifier is the item's **semantic ID** from session 12 (a few codes, similar items
# sharing a prefix), so the model's vocabulary is a few hundred codes instead of a catalog of
# items, and the recipe is GPT's: a causal Transformer decoder, next-token cross-entropy, and
# beam search at inference. That is TIGER (Rajput et al., 2023) and the generative half of
# OpenOneRec, at laptop size, and today you build it from scratch in plain PyTorch and compare it
# with your two-tower + FAISS retriever on the same split, by the same protocol.
#
# ```
#   history  i₁ i₂ … iₙ ──► semantic IDs (c₁ c₂ c₃ d) ──► tokens: PAD … BOS c₁ c₂ c₃ d  c₁ c₂ c₃ d  …
#                                                                          │
#                                                 causal Transformer decoder (RoPE, KV cache)
#                                                                          │
#   beam search over the 4 tokens of the next ID, each step masked to the trie of valid IDs
#        ──► the B most probable real items ──► HR@10, NDCG@10, Recall@50 (seen items excluded)
# ```
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `item_token_table` | each item's semantic ID as tokens of one vocabulary (per-level ranges) |
# | 2 | `history_tokens` | a history as a left-padded token sequence: BOS, then the last items' tokens |
# | 3 | `next_token_examples` | training windows from the train items only, targets one token ahead |
# | 4 | `causal_attention` | masked multi-head attention by hand, for queries that continue a cache |
# | 5 | `DecoderBlock` | session 03's block, run over new positions with the keys and values of the old ones |
# | 6 | `GenerativeDecoder` | token embedding, blocks, final norm, output head tied to the embedding |
# | 7 | `build_trie` | the prefix trie of the valid IDs, as a transition table |
# | 8 | `constrained_beam_search` | the B most probable *valid* items per user, batched, seen items excluded |
#
# Provided: the KV cache container, the trie's masking helpers, the loss, the wiring into session
# 05's `fit`, and the comparison harness. The semantic IDs come from session 12's
# `build_semantic_ids`, twice: from the items' text (session 11's vectors) and from your trained
# two-tower's item embeddings (collaborative vectors), the two sources the literature compares.
#
# **Before:** [readings/session_16.md](../readings/session_16.md): TIGER Sections 3–4, OpenOneRec
# Section 3, GENRE's constrained beam search (about 70 minutes). **After:** the same page.
#
# **How your modules are graded.** As in session 03: each module exercise fixes the names and
# shapes of its parameters, and the autograder runs your module with the reference's (perturbed)
# weights, comparing outputs and gradients on padded inputs. Exercises that build on earlier ones
# of this session are graded with the reference's components (the beam search runs the reference
# decoder), so one mistake fails one exercise.

# %% tags=["export"]
import math
import time
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.autograder.loader import upstream

s03 = upstream(3)
RMSNorm, apply_rope = s03.RMSNorm, s03.apply_rope


# %%
from harness import Checker

check = Checker(session=16, namespace=globals())


# %% [markdown]
# ## 1. Items as tokens
#
# Session 12 gave every item a semantic ID: `L` residual k-means codes and a disambiguation index,
# `C = L + 1` columns, each with its own vocabulary size $s_c$ (`SemanticIDs.codebook_sizes`). The
# decoder needs **one** vocabulary. Give each column its own range of token ids, after two special
# tokens: `PAD = 0` (padding, never predicted) and `BOS = 1` (the start of a sequence, what the
# first item is predicted from):
#
# $$\text{token}(c, \text{code}) = 2 + \sum_{c' < c} s_{c'} + \text{code}$$
#
# ```
#   sizes (32, 32, 32, 4):   PAD BOS │ level 0: 2..33 │ level 1: 34..65 │ level 2: 66..97 │ disamb.: 98..101
#   item 40 = (5, 0, 17, 1)  ─►  (7, 34, 83, 99)
# ```
#
# Code 5 of level 0 and code 5 of level 1 mean unrelated things (a coarse cluster, a refinement
# inside some other cluster), so they must be different tokens with their own embeddings; the
# ranges also tell the trie which tokens may come at which position. The vocabulary is tiny, 102
# tokens for 1,682 movies here, and it stays a few thousand for millions of items: that is what
# makes the output softmax cheap, where an item-ID model's softmax grows with the catalog.

# %% tags=["export"]
PAD, BOS = 0, 1  # the two special tokens; the codes of level 0 start at token 2
N_SPECIAL = 2
IGNORE = -100  # target of a position that is not trained (F.cross_entropy's default ignore_index)


def level_offsets(codebook_sizes: Sequence[int]) -> torch.Tensor:
    """int64 (C,): the first token of each column's range (provided): 2, 2 + s_0, 2 + s_0 + s_1, ..."""
    sizes = torch.as_tensor(list(codebook_sizes), dtype=torch.long)
    return N_SPECIAL + torch.cumsum(sizes, 0) - sizes


def vocab_size(codebook_sizes: Sequence[int]) -> int:
    """PAD, BOS and every column's codes (provided)."""
    return N_SPECIAL + int(sum(codebook_sizes))


# %% [markdown]
# ## Exercise 1 — `item_token_table`
#
# Broadcast the offsets over the rows, set row 0 (the padding item) to PAD, and refuse codes that
# do not fit their column: a code equal to its column's size would silently become a token of the
# next column, a bug that shows up much later as a model that "cannot learn".

# %% tags=["export"]
def item_token_table(codes: torch.Tensor, codebook_sizes: Sequence[int]) -> torch.Tensor:
    """Each item's semantic ID as tokens of one shared vocabulary.

    Args:
        codes: int64 (n_items + 1, C): column c < C - 1 is level c's code, the last column the
            disambiguation index; code values of column c lie in ``[0, codebook_sizes[c])``. Row 0 is padding.
        codebook_sizes: length C, the vocabulary size of each column.

    Returns:
        a new int64 tensor (n_items + 1, C): ``codes[:, c] + level_offsets(codebook_sizes)[c]``, and row 0 all PAD.

    Raises:
        ValueError: ``len(codebook_sizes) != C``, or a code of rows 1.. outside its column's range.
    """
    ### BEGIN SOLUTION
    sizes = torch.as_tensor(list(codebook_sizes), dtype=torch.long)
    if codes.ndim != 2 or codes.shape[1] != len(sizes):
        raise ValueError(f"codes has shape {tuple(codes.shape)} but codebook_sizes has {len(sizes)} columns: "
                         "one size per column (levels, then the disambiguation index)")
    body = codes[1:].long()
    bad = (body < 0) | (body >= sizes)
    if bad.any():
        row, col = (int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"item {row + 1} has code {int(body[row, col])} in column {col}, outside "
                         f"[0, {int(sizes[col])}): are the codebook sizes those the codes were built with?")
    table = codes.long() + level_offsets(sizes)
    table[0] = PAD
    return table
    ### END SOLUTION


# %%
check("item_token_table")


# %%
demo_codes = torch.tensor([[0, 0, 0, 0], [5, 0, 17, 1], [5, 0, 4, 0], [5, 17, 0, 0]])
demo_sizes = (32, 32, 32, 4)
print("offsets:", level_offsets(demo_sizes).tolist(), "| vocabulary:", vocab_size(demo_sizes))
print(item_token_table(demo_codes, demo_sizes))


# %% [markdown]
# ## 2. Histories as token sequences
#
# A history of `n` items becomes `1 + n·C` tokens: BOS, then each item's `C` tokens, item after
# item. Keep the **last** `max_items` items (the recent past predicts the next item best, and
# attention costs grow with the length), and pad on the **left**, as session 02 did: every row then
# ends at the last column, so the next token is generated in the same column for every user of a
# batch, and with RoPE the shift of a short row changes nothing (attention depends on distances).
#
# ```
#   max_items = 3, C = 4, history [12, 7]:
#   PAD PAD PAD PAD BOS  t(12)₀ t(12)₁ t(12)₂ t(12)₃  t(7)₀ t(7)₁ t(7)₂ t(7)₃        (1 + 3·4 = 13 columns)
# ```
#
# ## Exercise 2 — `history_tokens`

# %% tags=["export"]
def history_tokens(histories: Sequence[Sequence[int]], table: torch.Tensor, max_items: int) -> torch.Tensor:
    """Histories as left-padded token sequences: PAD ... PAD, BOS, the tokens of the last ``max_items`` items.

    Args:
        histories: B sequences of item ids (lists, numpy arrays or tensors), oldest first; may be empty.
        table: int64 (n_items + 1, C) from ``item_token_table``.
        max_items: items kept from the end of each history (>= 1).

    Returns:
        int64 (B, 1 + max_items * C): row b ends with BOS followed by the C tokens of each kept item, in
        order (item after item), and starts with PAD where the history is shorter than ``max_items``.
    """
    ### BEGIN SOLUTION
    width = 1 + max_items * table.shape[1]
    out = torch.full((len(histories), width), PAD, dtype=torch.long)
    for b, history in enumerate(histories):
        items = torch.tensor(np.asarray(history, dtype=np.int64)[len(history) - min(len(history), max_items):])
        row = torch.cat([torch.tensor([BOS]), table[items].reshape(-1)])
        out[b, width - len(row):] = row
    return out
    ### END SOLUTION


# %%
check("history_tokens")


# %% [markdown]
# ## 3. Next-token training data
#
# GPT's objective, on item tokens: position `t` reads tokens `0..t` and is trained to predict
# token `t + 1` (teacher forcing: the true previous tokens are fed, whatever the model would have
# generated). So a sequence of `T` tokens gives the model `inputs = tokens[:-1]` and
# `targets = tokens[1:]`, and one forward pass trains every position at once: each code of each
# item is predicted from everything before it, the first code of an item from the earlier items,
# the later codes from the earlier items *and* the item's own first codes.
#
# ```
#   tokens   PAD  BOS  a₀  a₁  a₂  a₃  b₀  b₁  b₂  b₃
#   inputs   PAD  BOS  a₀  a₁  a₂  a₃  b₀  b₁  b₂
#   targets   ✗   a₀   a₁  a₂  a₃  b₀  b₁  b₂  b₃           ✗ = IGNORE (-100): nothing to learn from padding
# ```
#
# **Which items.** The split is leave-last-out, as for every model of the workbook: each user's
# last item is the test item, the one before it the valid item, and training sees the rest,
# `dataset.sequences(upto="valid")`. A model that trains on `upto="test"` has seen every test item
# in its context and learned to produce it: its test numbers mean nothing. The two-tower models of
# session 05 trained on exactly these items.
#
# **Windows.** A prompt at inference holds `max_items` items and the model predicts one more, so
# train on windows of `max_items + 1` items: no training position sees a longer context than a
# prompt will. Cut each history into non-overlapping windows from its **end** backwards, so the
# most recent items always sit in a full window and every train item is a target exactly once per
# epoch (the oldest window may be shorter; it is left-padded).
#
# ## Exercise 3 — `next_token_examples`

# %% tags=["export"]
def next_token_examples(dataset, table: torch.Tensor, max_items: int) -> dict[str, torch.Tensor]:
    """Next-token training data from the train part of the leave-last-out split.

    Each user's train items (``dataset.sequences(upto="valid")``: never the valid or the test item) are cut
    into non-overlapping windows of up to ``max_items + 1`` items, the first ending at the user's last train
    item, the next just before it, and so on back to the first item. Each window becomes
    ``history_tokens(windows, table, max_items + 1)``, T tokens; the model reads ``inputs`` = the first T - 1
    tokens and is trained to predict ``targets`` = the last T - 1, position by position.

    Returns:
        ``{"inputs": int64 (n_windows, T - 1), "targets": int64 (n_windows, T - 1)}``, with IGNORE in
        ``targets`` wherever the input is PAD. Windows in any order.
    """
    ### BEGIN SOLUTION
    span = max_items + 1
    windows = []
    for sequence in dataset.sequences(upto="valid"):
        for end in range(len(sequence), 0, -span):
            windows.append(sequence[max(0, end - span):end])
    tokens = history_tokens(windows, table, span)
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    targets[inputs == PAD] = IGNORE
    return {"inputs": inputs, "targets": targets}
    ### END SOLUTION


# %%
check("next_token_examples")


# %% [markdown]
# ## 4. The decoder
#
# ### Attention, for queries that continue a sequence
#
# At inference the decoder reads a prompt of `T` tokens once, then generates one token at a time.
# Recomputing the keys and values of the whole sequence for every new token would cost `T` times
# too much: a **KV cache** keeps each block's keys and values of the positions already read, and a
# new token's query attends to those plus its own. So attention must handle `Tq` queries that are
# the **last** `Tq` of `Tk` positions (`Tq = Tk` in training, `Tq = 1` while generating):
#
# $$\mathrm{Attn}(Q, K, V) = \mathrm{softmax}\Big(\frac{Q K^\top}{\sqrt{D}} + M\Big) V, \qquad
#   M_{ij} = \begin{cases} 0 & j \le p_i \text{ and key } j \text{ is real, or } j = p_i \\ -\infty & \text{otherwise}
#   \end{cases}, \qquad p_i = T_k - T_q + i$$
#
# ```
#   Tq = Tk = 4 (training)          Tq = 1 after a cache of 3 (decoding)
#   q0 ■ · · ·                       q (position 3) ■ ■ ■ ■
#   q1 ■ ■ · ·
#   q2 ■ ■ ■ ·                       torch.tril(ones(Tq, Tk)) would let it see key 0 only:
#   q3 ■ ■ ■ ■                       the offset p_i = Tk - Tq + i is the whole difference
# ```
#
# As in session 03, every position may attend to itself: a padded query with only padding before it
# would otherwise have an empty softmax, `0/0 = NaN`, which poisons the gradients. Write it **by
# hand** once, scores, mask, softmax over the keys, weighted sum; `F.scaled_dot_product_attention`
# computes the same thing in one fused kernel, and the autograder compares the two.
#
# ## Exercise 4 — `causal_attention`

# %% tags=["export"]
def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor,
                     dropout_p: float = 0.0) -> torch.Tensor:
    """Multi-head attention of the last Tq positions of a sequence over all its Tk positions, by hand.

    Args:
        q: float (B, H, Tq, D), the queries of positions Tk - Tq .. Tk - 1.
        k, v: float (B, H, Tk, D), keys and values of positions 0 .. Tk - 1.
        key_mask: bool (B, Tk), True where the position holds a real token (not PAD).
        dropout_p: dropout on the attention weights (the caller passes 0 in eval mode).

    Query i (absolute position p = Tk - Tq + i) may attend to key j when ``j <= p`` and key j is real,
    and always to itself (j == p). Returns ``softmax(q k^T / sqrt(D) + mask) v``, float (B, H, Tq, D).
    """
    ### BEGIN SOLUTION
    n_queries, n_keys = q.shape[-2], k.shape[-2]
    query_pos = torch.arange(n_keys - n_queries, n_keys, device=q.device)[:, None]
    key_pos = torch.arange(n_keys, device=q.device)[None, :]
    allowed = ((key_pos <= query_pos) & key_mask[:, None, None, :]) | (key_pos == query_pos)  # (B, 1, Tq, Tk)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~allowed, -math.inf), dim=-1)  # float32 under autocast
    if dropout_p > 0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v
    ### END SOLUTION


# %%
check("causal_attention")


# %% [markdown]
# ### The block: session 03's, continuing a cache
#
# The decoder's block is session 03's `TransformerBlock`: pre-norm RMSNorm, RoPE attention,
# SwiGLU, the same parameters. `DecoderBlock` *inherits* them (its `__init__` is session 03's) and
# adds one thing to `forward`: it can continue a cache. It gets the new positions `x` (B, Tq, dim),
# their absolute `positions` for RoPE, the key mask of **all** positions (past then new), and the
# `past` keys and values, and returns its output with the keys and values of all positions, for the
# next call.
#
# | attribute (from session 03) | module | parameters (shape) |
# | --- | --- | --- |
# | `norm1`, `norm2` | `RMSNorm(dim)` | `weight` (dim,) |
# | `qkv` | `nn.Linear(dim, 3 dim, bias=False)`, q then k then v, heads contiguous | `weight` (3 dim, dim) |
# | `out` | `nn.Linear(dim, dim, bias=False)` | `weight` (dim, dim) |
# | `w_gate`, `w_up` / `w_down` | SwiGLU, `nn.Linear(dim, 4 dim)` / `nn.Linear(4 dim, dim)`, no bias | `weight` |
# | `dropout` (and `dropout_p` for the attention weights) | `nn.Dropout(dropout)` on both residual branches | — |
#
# Two details decide whether the cache gives the same numbers as one pass: rotate only the **new**
# queries and keys, at the positions given (the cached keys were rotated when they were new, and a
# second rotation would move them), then concatenate along the position axis (`dim=2`); and pass
# `dropout_p` to the attention only in training. The autograder checks that a block with no cache
# computes exactly session 03's `TransformerBlock.forward`, and that prefix + cached suffix equals
# one pass.
#
# ## Exercise 5 — `DecoderBlock`

# %% tags=["export"]
class DecoderBlock(s03.TransformerBlock):
    """Session 03's pre-norm block (same parameters), run over new positions that may continue a cache.

    ``forward(x, positions, key_mask, past=None) -> (y, (k, v))``: x float (B, Tq, dim), the new positions;
    positions int64 (Tq,), their absolute positions (for RoPE); key_mask bool (B, Tk), real tokens among the
    ``Tk = Tpast + Tq`` keys, past ones first; past: ``(k, v)`` (B, heads, Tpast, head_dim) each, returned by
    the previous call, or None. Returns y (B, Tq, dim) and the keys (RoPE applied) and values of all Tk positions.
    """

    def forward(self, x: torch.Tensor, positions: torch.Tensor, key_mask: torch.Tensor,
                past: tuple[torch.Tensor, torch.Tensor] | None = None):
        ### BEGIN SOLUTION
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, positions), apply_rope(k, positions)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        attended = causal_attention(q, k, v, key_mask, dropout_p=self.dropout_p if self.training else 0.0)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        h = self.norm2(x)
        return x + self.dropout(self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))), (k, v)
        ### END SOLUTION


# %%
check("DecoderBlock")


# %% [markdown]
# ### The model
#
# The provided `KVCache` holds each block's `(k, v)` and the key mask of the positions read so far;
# `reorder(rows)` keeps the given rows in the given order (repeating a row copies it), which is what
# beam search needs when beams are extended from their parents.

# %% tags=["export"]
class KVCache:
    """The keys and values a decoder has computed so far, per block, for incremental decoding (provided).

    ``layers[i]`` is block i's ``(k, v)``, each (B, heads, T, head_dim); ``key_mask`` (B, T) marks the real
    tokens among those T positions. Empty until the decoder's first call with it.
    """

    def __init__(self):
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.key_mask: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.key_mask is None else int(self.key_mask.shape[1])

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep rows ``rows`` (int64 (B',)), in that order: a row may be repeated (beams of one parent)."""
        self.layers = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.layers]
        self.key_mask = self.key_mask.index_select(0, rows)


# %% [markdown]
# `GenerativeDecoder` embeds the tokens, runs the blocks and turns the last hidden states into
# logits over the vocabulary with the **transposed token embedding** (a tied head, as in GPT-2 and
# T5): a token's input and output vectors are the same row, which halves the embedding parameters
# and lets rare codes learn from both sides. With a cache, the new tokens' positions start at
# `cache.length`, their key mask is appended to the cache's, and each block continues from its own
# cached keys and values; the cache is then updated with what the blocks returned.
#
# $$h_0 = \mathrm{Drop}(E[x]), \qquad h_{l} = \mathrm{Block}_l(h_{l-1}), \qquad \text{logits} = \mathrm{RMSNorm}(h_{\text{last}})\, E^\top$$
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `token_embedding` | `nn.Embedding(vocab_size, dim, padding_idx=PAD)`, normal init std 0.02, PAD row zeroed | `weight` (vocab_size, dim) |
# | `blocks` | `nn.ModuleList` of `layers` `DecoderBlock(dim, heads, dropout)` | `blocks.0.*`, `blocks.1.*`, ... |
# | `norm` | `RMSNorm(dim)`, after the last block | `weight` (dim,) |
# | `dropout` | `nn.Dropout(dropout)` on the token embeddings | — |
#
# No `head` parameter: the output projection *is* `token_embedding.weight`. (The PAD row is
# zero at the start; with a tied head it also scores the PAD token, never a target, so training
# moves it, which is harmless: PAD keys are masked and PAD is never generated.)
#
# ## Exercise 6 — `GenerativeDecoder`

# %% tags=["export"]
class GenerativeDecoder(nn.Module):
    """Causal Transformer decoder over semantic-ID tokens, with a tied output head.

    ``forward(tokens, cache=None)``: tokens int64 (B, T) -> logits float (B, T, vocab_size); position t's
    logits predict token t + 1. With a ``KVCache``, the tokens continue the ones the cache holds (their
    positions start at ``cache.length``) and the cache is extended with them.
    """

    def __init__(self, vocab_size: int, dim: int = 128, layers: int = 4, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.vocab_size = vocab_size
        ### BEGIN SOLUTION
        self.token_embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD)
        self.blocks = nn.ModuleList(DecoderBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = RMSNorm(dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        with torch.no_grad():
            self.token_embedding.weight[PAD].zero_()
        ### END SOLUTION

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        ### BEGIN SOLUTION
        start = cache.length if cache is not None else 0
        key_mask = tokens != PAD
        if start:
            key_mask = torch.cat([cache.key_mask, key_mask], dim=1)
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.dropout(self.token_embedding(tokens))
        presents = []
        for i, block in enumerate(self.blocks):
            x, present = block(x, positions, key_mask, cache.layers[i] if start else None)
            presents.append(present)
        if cache is not None:
            cache.layers, cache.key_mask = presents, key_mask
        return self.norm(x) @ self.token_embedding.weight.T
        ### END SOLUTION


# %%
check("GenerativeDecoder")


# %% [markdown]
# ## 5. Training (provided)
#
# The loss is the mean cross-entropy of the next token over the trained positions,
# `F.cross_entropy(logits, targets, ignore_index=IGNORE)`; every code of every item counts the same
# (the loss on an item's first code is the hard part, predicting *which* cluster comes next; the
# later codes are refinements the model gets mostly from the first). It trains through your
# session-05 `fit`: AMP (bf16 on a GPU), warm-up + cosine, clipping, checkpoints, resume, W&B;
# with session 04's AdamW groups (no decay on embeddings and norms).

# %% tags=["export"]
def next_token_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    """Mean cross-entropy of the next token over the trained (non-IGNORE) positions (provided)."""
    logits = model(batch["inputs"])
    return F.cross_entropy(logits.float().flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE)


# %% [markdown]
# ## 6. Decoding
#
# ### The trie of valid IDs
#
# An unconstrained decoder can write any 4 tokens, and most 4-token strings are no item: with 32 ×
# 32 × 32 × 4 possible IDs and 1,682 movies, 99.96% of them. TIGER reported how often its model
# generated invalid IDs; GENRE (De Cao et al., 2021) showed how to make it impossible: put every
# valid identifier in a **prefix trie**, and at each step allow only the tokens that extend the
# current prefix to a node of the trie.
#
# ```
#   root ─ 7 ─┬─ 34 ─┬─ 70 ─ 98   item 12        children[node, token] = child node, or -1
#             │      └─ 83 ─┬─ 98   item 3        item[leaf]            = the item it spells
#             │             └─ 99   item 40       (items 3 and 40 collided on (5, 0, 17): the
#             └─ 51 ─ 66 ─ 98       item 7         disambiguation token tells them apart)
# ```
#
# Store it as a **transition table**, a tensor `children` (n_nodes, vocab_size) with -1 where a
# token leads nowhere: a batch of beams' allowed tokens is then one gather, `children[nodes] >= 0`,
# on the GPU as on the CPU. Build it level by level: the pairs (parent node, token) of all items,
# made unique, are the new nodes of that level, so items that share a prefix share its node.
# (The dense table has n_nodes × vocab entries, fine for thousands of items; for millions, store
# each node's children sparsely, in CSR form, and gather the same way.)
#
# The provided `Trie` holds `children`, `item` and the `table`, and adds the masking helpers the
# beam search uses: `allowed(nodes, available)`, the (U, b, vocab) mask of tokens that extend each
# beam, and `available(exclude)`, which marks the nodes that still have an allowed (unseen) item
# below them.

# %% tags=["export"]
@dataclass
class Trie:
    """The valid semantic IDs as a prefix trie stored as a transition table (provided container).

    ``children[node, token]`` is the node reached from ``node`` by ``token``, -1 when that is not a valid
    prefix; node 0 is the root (the empty prefix). ``item[node]`` is the item id of a leaf (a full ID of
    ``depth`` tokens), 0 for every other node. ``table`` is the item token table it was built from.
    """

    children: torch.Tensor  # int64 (n_nodes, vocab_size)
    item: torch.Tensor      # int64 (n_nodes,)
    table: torch.Tensor     # int64 (n_items + 1, depth)

    @property
    def depth(self) -> int:
        return int(self.table.shape[1])

    @property
    def n_nodes(self) -> int:
        return int(self.children.shape[0])

    def walk(self, tokens: torch.Tensor) -> torch.Tensor:
        """The node of each prefix: tokens int64 (..., l) -> int64 (...), -1 where it is not in the trie."""
        node = torch.zeros(tokens.shape[:-1], dtype=torch.long, device=tokens.device)
        for level in range(tokens.shape[-1]):
            node = torch.where(node >= 0, self.children[node.clamp_min(0), tokens[..., level]], node)
        return node

    def paths(self) -> torch.Tensor:
        """int64 (n_items + 1, depth + 1): the nodes from the root to each item's leaf (row 0: -1)."""
        table = self.table.to(self.children.device)
        out = [torch.zeros(len(table), dtype=torch.long, device=table.device)]
        for level in range(self.depth):
            out.append(self.children[out[-1].clamp_min(0), table[:, level]])
        paths = torch.stack(out, dim=1)
        paths[0] = -1
        return paths

    def available(self, exclude: torch.Tensor) -> torch.Tensor:
        """bool (U, n_nodes): nodes with at least one item below them that ``exclude`` (U, n_items + 1) allows."""
        paths = self.paths()[1:]  # (n_items, depth + 1)
        allowed = (~exclude[:, 1:].to(self.children.device)).float()  # (U, n_items)
        below = torch.zeros(len(exclude), self.n_nodes, device=self.children.device)
        for level in range(paths.shape[1]):
            below.index_add_(1, paths[:, level], allowed)
        return below > 0

    def allowed(self, nodes: torch.Tensor, available: torch.Tensor | None = None) -> torch.Tensor:
        """bool (U, b, vocab_size): the tokens that extend each beam's node (U, b) to a valid prefix.

        Nodes of -1 (dead beams) allow nothing. With ``available`` (U, n_nodes) from :meth:`available`, a
        token is allowed only if some allowed item lies below the node it leads to.
        """
        child = self.children[nodes.clamp_min(0)]  # (U, b, V)
        ok = (child >= 0) & (nodes >= 0)[..., None]
        if available is not None:
            reach = available.gather(1, child.clamp_min(0).flatten(1)).view_as(child)
            ok &= reach
        return ok


# %% [markdown]
# ## Exercise 7 — `build_trie`

# %% tags=["export"]
def build_trie(table: torch.Tensor, vocab_size: int) -> Trie:
    """The prefix trie of the items' token tuples.

    Args:
        table: int64 (n_items + 1, depth) from ``item_token_table``; row 0 (padding) is not an item.
        vocab_size: columns of the transition table.

    Returns:
        ``Trie(children, item, table)``: one node per distinct prefix of rows 1.. (prefixes shared by several
        items are one node), root 0, ``children`` int64 (n_nodes, vocab_size) with -1 where no child,
        ``item`` int64 (n_nodes,) with each item id at its leaf and 0 elsewhere.

    Raises:
        ValueError: two items have the same token tuple (their IDs collide: the disambiguation column should
            tell them apart).
    """
    ### BEGIN SOLUTION
    tokens = table[1:].long()
    n_items, depth = tokens.shape
    children = torch.full((1 + n_items * depth, vocab_size), -1, dtype=torch.long)
    node = torch.zeros(n_items, dtype=torch.long)  # every item starts at the root
    n_nodes = 1
    for level in range(depth):
        pairs, inverse = torch.unique(torch.stack([node, tokens[:, level]], dim=1), dim=0, return_inverse=True)
        ids = torch.arange(n_nodes, n_nodes + len(pairs))
        children[pairs[:, 0], pairs[:, 1]] = ids
        node, n_nodes = ids[inverse], n_nodes + len(pairs)
    if len(torch.unique(node)) < n_items:
        leaf, counts = torch.unique(node, return_counts=True)
        clash = torch.nonzero(node == leaf[counts > 1][0]).flatten() + 1
        raise ValueError(f"items {clash.tolist()} share the token tuple {table[int(clash[0])].tolist()}: "
                         "their semantic IDs collide; the disambiguation column must tell them apart")
    item = torch.zeros(n_nodes, dtype=torch.long)
    item[node] = torch.arange(1, n_items + 1)
    return Trie(children[:n_nodes], item, table)
    ### END SOLUTION


# %%
check("build_trie")


# %% [markdown]
# ### Constrained beam search
#
# The model's probability of an ID is the product of its tokens' conditional probabilities; in log
# space a sum, $\log p(c_1 c_2 c_3 d) = \sum_l \log \mathrm{softmax}(z_l)[c_l]$ (a product of four
# probabilities of 0.01 is $10^{-8}$; of forty, below float32's range: always add log-probabilities).
# The best IDs cannot be enumerated for a large catalog, so **beam search** keeps the B best
# prefixes at each level:
#
# 1. read the prompts into a `KVCache`, once; `log_softmax` of the last position;
# 2. start with **one** beam per user, the root, score 0 (B copies of the root would all extend to
#    the same best token: B identical beams);
# 3. at each of the C levels: mask the log-probabilities with `trie.allowed(nodes, available)`
#    (`-inf` where a token leaves the trie or leads only to seen items), add them to the beams'
#    scores, and keep the B best of all (beam, token) pairs of the user: `topk` over the flattened
#    `(b · vocab)` candidates, `parent = idx // vocab`, `token = idx % vocab`;
# 4. follow the trie to the new nodes, reorder the cache rows to the parents
#    (`row = user · b + parent`), and feed the chosen tokens, one per beam, to get the next level's
#    log-probabilities;
# 5. the leaves' items are the answer, best first; every item appears once, since distinct beams
#    are distinct prefixes.
#
# **Seen items.** Session 06 over-fetched `k + S` neighbours and dropped the seen ones; here the
# search itself excludes them: `trie.available(exclude)` removes the subtrees with only seen items
# below, so all B beams end on unseen items (a user who has seen half the catalog still gets B
# candidates).
#
# **Scores.** Return the model's own log-probability of each ID, the sum of `log_softmax` over the
# full vocabulary (masking restricts the search, it does not renormalise). A candidate whose score
# is `-inf` is a dead beam (fewer allowed items than B): its node becomes -1, its item 0.
#
# Beam size 1 is greedy decoding; a beam as large as the catalog is an exact ranking of every item
# by the model's probability; the autograder checks both, and that the scores equal a teacher-forced
# recomputation.
#
# ## Exercise 8 — `constrained_beam_search`

# %% tags=["export"]
@torch.no_grad()
def constrained_beam_search(model: nn.Module, prompts: torch.Tensor, trie: Trie, beam_size: int,
                            exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``beam_size`` most probable valid items after each prompt, by beam search constrained to the trie.

    Args:
        model: a ``GenerativeDecoder`` (in eval mode), called ``trie.depth`` times, always with one ``KVCache``:
            once with the prompts, then once per further level with one token per beam, (U * beams, 1).
        prompts: int64 (U, T), left-padded, from ``history_tokens`` (each ends with an item's last token or BOS).
        trie: from ``build_trie``; every generated ID is a path of it.
        beam_size: B, beams kept at every level and items returned.
        exclude: optional bool (U, n_items + 1), True for items never to return (seen items).

    Returns:
        ``(items, log_probs)``: int64 (U, B) distinct item ids per row, most probable first, and float32 (U, B)
        their log-probabilities under the model, ``sum_l log_softmax(logits_l)[token_l]`` over the ID's tokens.
        Where fewer than B items are allowed, the row ends with item 0 and log-probability -inf.
    """
    ### BEGIN SOLUTION
    users = prompts.shape[0]
    cache = KVCache()
    log_p = torch.log_softmax(model(prompts, cache)[:, -1:].float(), dim=-1)  # (U, 1, V)
    available = trie.available(exclude) if exclude is not None else None
    nodes = torch.zeros(users, 1, dtype=torch.long, device=prompts.device)  # one beam per user: the root
    scores = torch.zeros(users, 1, device=prompts.device)
    vocab = log_p.shape[-1]
    for level in range(trie.depth):
        allowed = trie.allowed(nodes, available)  # (U, b, V)
        candidates = (scores[..., None] + log_p.masked_fill(~allowed, -math.inf)).flatten(1)  # (U, b * V)
        scores, flat = candidates.topk(min(beam_size, candidates.shape[1]), dim=1)
        parent, token = flat // vocab, flat % vocab
        child = trie.children[nodes.gather(1, parent).clamp_min(0), token]
        nodes = torch.where(torch.isfinite(scores), child, torch.full_like(child, -1))
        if level + 1 < trie.depth:
            rows = (torch.arange(users, device=prompts.device)[:, None] * allowed.shape[1] + parent).flatten()
            cache.reorder(rows)
            log_p = torch.log_softmax(model(token.reshape(-1, 1), cache).float(), dim=-1).view(users, -1, vocab)
    items = torch.where(nodes >= 0, trie.item[nodes.clamp_min(0)], torch.zeros_like(nodes))
    if items.shape[1] < beam_size:
        pad = beam_size - items.shape[1]
        items = torch.cat([items, items.new_zeros(users, pad)], dim=1)
        scores = torch.cat([scores, scores.new_full((users, pad), -math.inf)], dim=1)
    return items, scores
    ### END SOLUTION


# %%
check("constrained_beam_search")


# %% [markdown]
# ## 7. Provided: training and evaluation glue
#
# * `train_generative(dataset, sids, cfg)`: `next_token_examples` → `TokenWindows` → session 05's
#   `fit`, with the config's schedule; returns the model and `fit`'s record, plus the parameter count,
#   the training throughput in target tokens per second and the valid HR@10 / NDCG@10.
# * `generative_recommender(...)`: a `topk_fn(users, seen)` for `harness.evaluation.evaluate_topk`,
#   the very protocol of every other row: the prompt is the history visible before the split, seen
#   items are excluded in the search, users go in chunks (each beam holds a cache of the prompt).
# * `evaluate_generative(...)`: HR/NDCG/Recall@K through it; `prefix_accuracy(...)`: how often the
#   first 1, 2, ... C tokens of the held-out item's ID are right.

# %% tags=["export"]
class TokenWindows(torch.utils.data.Dataset):
    """``next_token_examples``' tensors as a map-style dataset of ``{"inputs", "targets"}`` rows (provided)."""

    def __init__(self, examples: dict[str, torch.Tensor]):
        self.inputs, self.targets = examples["inputs"], examples["targets"]

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.inputs[i], "targets": self.targets[i]}


def build_generative(sids, cfg: SimpleNamespace) -> GenerativeDecoder:
    """A decoder at the config's size for a set of semantic IDs (provided)."""
    m = cfg.model
    return GenerativeDecoder(vocab_size(sids.codebook_sizes), dim=m.dim, layers=m.layers, heads=m.heads,
                             dropout=m.dropout)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def generative_recommender(model: nn.Module, trie: Trie, sequences: Sequence, max_items: int, beam_size: int,
                           batch_users: int = 32, device: torch.device | str = "cpu") -> Callable:
    """``topk_fn(users, seen_mask) -> (B, beam_size)`` for ``harness.evaluation.evaluate_topk`` (provided).

    Each user's prompt is the last ``max_items`` items of ``sequences[user]`` (the history visible before the
    evaluated split); seen items are excluded inside the beam search. Users go through in chunks of
    ``batch_users``: every beam of a chunk holds a KV cache of the whole prompt.
    """
    device = torch.device(device)
    table = trie.table

    def topk(users: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        out = []
        try:
            for start in range(0, len(users), batch_users):
                chunk = users[start:start + batch_users].tolist()
                prompts = history_tokens([sequences[u] for u in chunk], table, max_items).to(device)
                items, _ = constrained_beam_search(model, prompts, trie, beam_size,
                                                   exclude=seen[start:start + batch_users].to(device))
                out.append(items.cpu())
        finally:
            model.train(was_training)
        return torch.cat(out)

    return topk


def generative_trie(sids, device: torch.device | str = "cpu") -> Trie:
    """The trie of a set of semantic IDs, on ``device`` (provided)."""
    table = item_token_table(sids.codes, sids.codebook_sizes)
    trie = build_trie(table, vocab_size(sids.codebook_sizes))
    return Trie(trie.children.to(device), trie.item.to(device), trie.table.to(device))


def evaluate_generative(model: nn.Module, sids, dataset, split: str, cfg: SimpleNamespace,
                        ks: Sequence[int] = (10, 50), beam_size: int | None = None,
                        device: torch.device | str = "cpu") -> dict[str, float]:
    """HR/NDCG/Recall@K of generative retrieval on ``split`` with the workbook's protocol (provided).

    The same users, held-out items and seen-item exclusion as every other model (``evaluate_topk``); the
    beam keeps ``max(ks)`` items unless ``beam_size`` says otherwise.
    """
    from harness.evaluation import evaluate_topk

    beam = beam_size or max(ks)
    recommend = generative_recommender(model, generative_trie(sids, device), dataset.sequences(upto=split),
                                       cfg.train.max_items, beam, cfg.generate.batch_users, device)
    return evaluate_topk(recommend, dataset, split, ks=ks)


# %% tags=["export"]
def generative_training(dataset, sids, cfg: SimpleNamespace, device: torch.device | str) -> SimpleNamespace:
    """Everything ``fit`` needs to train a decoder on a set of semantic IDs (provided).

    Seeds every RNG with ``cfg.train.seed`` first. Returns ``model``, ``examples`` (a ``TokenWindows``),
    ``optimizer`` (session 04's AdamW groups), ``scheduler`` (session 05's warm-up + cosine), ``amp_dtype``,
    ``total_steps``, ``trained_tokens`` (targets per epoch) and ``eval_fn`` (valid HR@10 / NDCG@10).
    """
    from harness.seeding import seed_everything

    s04, s05 = upstream(4), upstream(5)
    device, t = torch.device(device), cfg.train
    seed_everything(t.seed)
    table = item_token_table(sids.codes, sids.codebook_sizes)
    examples = next_token_examples(dataset, table, t.max_items)
    model = build_generative(sids, cfg).to(device)
    optimizer = s04.build_optimizer(model, t.lr, t.weight_decay, tuple(t.betas))
    total_steps = t.epochs * math.ceil(len(examples["inputs"]) / t.batch_size)
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(s05.warmup_cosine, warmup_steps=t.warmup_steps, total_steps=total_steps,
                           min_ratio=t.min_lr_ratio))

    def eval_fn(m: nn.Module) -> dict:
        metrics = evaluate_generative(m, sids, dataset, "valid", cfg, ks=(10,), device=device)
        return {k: metrics[k] for k in ("HR@10", "NDCG@10")}

    return SimpleNamespace(model=model, examples=TokenWindows(examples), optimizer=optimizer, scheduler=scheduler,
                           amp_dtype=s05.resolve_amp(t.amp, device), total_steps=total_steps,
                           trained_tokens=int((examples["targets"] != IGNORE).sum()), eval_fn=eval_fn)


def train_generative(dataset, sids, cfg: SimpleNamespace, *, device: torch.device | str | None = None,
                     run: Any = None, checkpoint_path=None, resume: bool = False,
                     log: Callable[[str], None] = print) -> tuple[nn.Module, dict]:
    """Train a decoder on ``sids`` with session 05's ``fit`` (AMP, clipping, schedule, checkpoints) (provided).

    Args:
        dataset: a ``RecDataset``; trains on the train part of the leave-last-out split only.
        sids: a ``SemanticIDs`` (``harness.pipeline.semantic_ids``).
        cfg: ``load_config("generative", preset)``.

    Returns:
        (model in eval mode, result): ``fit``'s dict plus ``parameters``, ``tokens_per_second`` (trained target
        tokens per second), ``valid`` (HR@10 / NDCG@10 on the valid split) and ``amp_dtype``.
    """
    from harness.env import pick_device

    s05 = upstream(5)
    device = torch.device(device) if device is not None else pick_device()
    setup = generative_training(dataset, sids, cfg, device)
    result = s05.fit(setup.model, setup.examples, loss_fn=next_token_loss, optimizer=setup.optimizer,
                     cfg=cfg.train, scheduler=setup.scheduler, amp_dtype=setup.amp_dtype, device=device, run=run,
                     checkpoint_path=checkpoint_path, resume=resume, eval_fn=setup.eval_fn, log=log)
    setup.model.eval()
    result["parameters"] = count_parameters(setup.model)
    # fit counts windows; an epoch trains every target token once, so a window holds this many on average
    result["tokens_per_second"] = result["examples_per_second"] * setup.trained_tokens / max(len(setup.examples), 1)
    result["valid"] = setup.eval_fn(setup.model)
    result["amp_dtype"] = str(setup.amp_dtype).replace("torch.", "") if setup.amp_dtype else "fp32"
    return setup.model, result


# %% tags=["export"]
def prefix_accuracy(items: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> dict[str, list[float]]:
    """How often the generated IDs get the held-out item's first 1, 2, ... C tokens right (provided).

    Args:
        items: int64 (U, K) generated items, best first; targets: int64 (U,) held-out items; table: tokens.

    Returns:
        ``{"top1": [...], "any": [...]}``, one value per prefix length 1..C: the share of users whose best item
        matches the target's first l tokens, and whose K items include one that does (hierarchical recall@K).
    """
    got, want = table[items.clamp_min(0)], table[targets][:, None, :]  # (U, K, C), (U, 1, C)
    same = (got == want).long().cumprod(dim=-1).bool() & (items != 0)[..., None]  # prefix of length l + 1 matches
    return {"top1": same[:, 0].float().mean(0).tolist(), "any": same.any(dim=1).float().mean(0).tolist()}


# %% [markdown]
# How big is it? Each block holds $16\,d^2$ weights ($4d^2$ in attention, $12d^2$ in SwiGLU) and
# two norm gains, the embedding $V d$. The plan asks for 4–6 layers and about 10M parameters, the
# default in `harness/configs/generative.yaml`; the laptop preset trains a smaller one, because
# five minutes on a 2-core CPU buy only so many tokens (the run-it part measures how many).

# %%
from harness.config import load_config
from harness.pipeline.generative import semantic_id_settings

for preset in ("laptop", "gpu"):
    c, codes = load_config("generative", preset).model, semantic_id_settings(preset)
    vocab = 2 + codes.levels * codes.codebook_size + 8  # session 12's codebooks and a disambiguation column of 8
    n = count_parameters(GenerativeDecoder(vocab, dim=c.dim, layers=c.layers, heads=c.heads))
    print(f"{preset:>7} preset: dim {c.dim}, {c.layers} layers, {c.heads} heads, vocabulary {vocab} -> {n:,} "
          f"parameters ({16 * c.dim ** 2 * c.layers:,} in the blocks' 16 d^2 per layer)")


# %% [markdown]
# ## Run it, part 1: the baseline, two-tower + FAISS
#
# Your session-05 loop trains the Transformer two-tower (`harness/configs/two_tower.yaml`, the
# dataset of `WORKBOOK_DATASET`, MovieLens-100K by default; `WORKBOOK_PRESET=smoke` makes
# everything seconds), and session 06's exact FAISS index retrieves with seen items excluded. Its
# item embeddings are also the collaborative vectors of part 2.

# %%
import os

import matplotlib.pyplot as plt

from harness.config import load_config
from harness.data import load_dataset
from harness.env import pick_device
from harness.evaluation import MetricsTable, evaluate_topk
from harness.pipeline.generative import code_sets, shorter_run
from harness.pipeline.retrieval import history_batch
from harness.plots import metric_bars

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
cfg, tower_cfg = load_config("generative"), load_config("two_tower")
SMOKE = cfg.preset == "smoke"
device = pick_device()
ds = load_dataset(DATASET)
s01, s05, s06 = upstream(1), upstream(5), upstream(6)
print(ds.summary(), f"| preset {cfg.preset} | device {device.type}")

tower, tower_result = s05.train_two_tower(ds, "transformer", tower_cfg, device=device, log=lambda line: None)
tower.eval()
print(f"two-tower transformer: {tower_result['steps']:,} steps in {tower_result['seconds']:.0f} s, valid HR@10 "
      f"{tower_result['valid']['HR@10']:.4f}")

test_sequences = ds.sequences(upto="test")
users_test, targets_test = ds.targets("test")
K = cfg.generate.beam_size  # 50: the longest list evaluated (Recall@50)


@torch.no_grad()
def user_vectors(users) -> torch.Tensor:
    batch = history_batch(test_sequences, [int(u) for u in users], tower_cfg.train.max_len)
    return tower.user_tower(batch["history"].to(device), batch["mask"].to(device)).float().cpu()


with torch.no_grad():
    index = s06.build_flat_index(tower.item_tower(torch.arange(ds.n_items + 1, device=device)).float().cpu())


def faiss_topk(users, _seen):
    return s06.search_excluding_seen(index, user_vectors(users), s06.padded_seen(test_sequences, users.tolist()), K)


table = MetricsTable()
popular = s01.item_popularity(torch.tensor(ds.history("test")["item_id"].to_numpy()), ds.n_items)
table.add("popularity", evaluate_topk(lambda users, seen: s01.recommend_popular(popular, seen, k=K), ds, "test",
                                      ks=(10, K)), "session 01")
start = time.perf_counter()
table.add("two-tower transformer", evaluate_topk(faiss_topk, ds, "test", ks=(10, K)),
          f"sessions 03-06, exact FAISS, {time.perf_counter() - start:.1f} s for {len(users_test)} users")
print(table)

# %% [markdown]
# ## Run it, part 2: two code sets
#
# Session 12's `build_semantic_ids`, with session 12's settings (`harness/configs/semantic_ids.yaml`),
# on two kinds of item vectors:
#
# * **text**: session 11's embeddings of the item's title and genres: items that *read* alike share
#   a prefix (the semantic IDs of TIGER, built from content; a new item gets one on arrival);
# * **collaborative**: the two-tower's item embeddings: items that the same users *watch* share a
#   prefix (the choice several later papers compare against, and the one that carries the signal a
#   next-item model needs, but only for items with interactions).

# %%
sets = code_sets(ds, cfg.preset, retriever=tower, log=lambda line: None)
for name, sids in sets.items():
    print(f"[{name}]", sids.describe(), "\n")

# %% [markdown]
# ## Run it, part 3: train a decoder on each
#
# `train_generative` with the config's preset. On the laptop preset the 2-core CPU's budget is five
# minutes for both: the collaborative codes get the config's schedule, the text codes
# `train.second_share` of its steps and minutes (`shorter_run`; the pipeline does the same), which
# the table's notes record.

# %%
decoders, runs = {}, {}
for i, (name, sids) in enumerate(sets.items()):
    run_cfg = shorter_run(cfg, runs[next(iter(runs))]["steps"]) if i else cfg
    decoders[name], runs[name] = train_generative(ds, sids, run_cfg, device=device, log=lambda line: None)
    r = runs[name]
    print(f"{name:>13}: {r['parameters']:,} parameters, {r['steps']:,} steps ({r['epochs']:.1f} epochs, stopped by "
          f"{r['stopped_by']}) in {r['seconds']:.0f} s, {r['tokens_per_second']:,.0f} tokens/s ({r['amp_dtype']}); "
          f"loss {r['history'][0]['loss']:.3f} -> {r['final_loss']:.3f}; valid HR@10 {r['valid']['HR@10']:.4f}")

fig, ax = plt.subplots(figsize=(7, 3))
for name, r in runs.items():
    ax.plot([h["step"] for h in r["history"]], [h["loss"] for h in r["history"]], label=f"{name} codes")
ax.set_xlabel("step")
ax.set_ylabel("next-token cross-entropy")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Run it, part 4: the comparison
#
# Same users, same held-out items, same seen-item exclusion, same K: `evaluate_topk` on the lists of
# both paradigms. While at it, every generated list is checked: real items only, none seen, none twice.

# %%
names = sorted(sets, key=lambda n: -runs[n]["valid"]["HR@10"])  # the better code set on the VALID split first
generated, timings = {}, {}
for name in names:
    trie = generative_trie(sets[name], device)
    recommend = generative_recommender(decoders[name], trie, test_sequences, cfg.train.max_items, K,
                                       cfg.generate.batch_users, device)
    lists = []

    def keep(users, seen, recommend=recommend, lists=lists):
        out = recommend(users, seen)
        lists.append((out, seen))
        return out

    start = time.perf_counter()
    metrics = evaluate_topk(keep, ds, "test", ks=(10, K))
    timings[name] = time.perf_counter() - start
    items = torch.cat([out for out, _ in lists])
    seen = torch.cat([s for _, s in lists])
    real = items > 0
    valid = bool(real.all()) and not bool(seen.gather(1, items).any())
    distinct = all(len(set(row)) == len(row) for row in items.tolist())
    generated[name] = items
    r = runs[name]
    table.add("generative" if name == names[0] else f"generative ({name} codes)", metrics,
              f"session 16; {r['parameters'] / 1e6:.2f}M params, {r['steps']} steps, {r['seconds']:.0f} s training "
              f"({r['tokens_per_second']:,.0f} tokens/s), beam {K}, {timings[name]:.1f} s for {len(users_test)} users")
    print(f"{name}: {items.numel():,} generated items, {real.float().mean():.2%} real items, none seen: {valid}, "
          f"distinct per user: {distinct}")
print()
print(table)

# %% [markdown]
# Is the gap real, or the luck of 943 test users? Session 10's paired bootstrap resamples the users
# once for all systems and gives each difference to the two-tower its 95% interval.

# %%
s10 = upstream(10)
targets = torch.tensor(np.array(targets_test, dtype=np.int64))
faiss_lists = torch.cat([faiss_topk(torch.tensor(np.array(users_test[i:i + 256], dtype=np.int64)), None)
                         for i in range(0, len(users_test), 256)])
lists = {"two-tower transformer": faiss_lists,
         **{("generative" if n == names[0] else f"generative ({n} codes)"): generated[n] for n in names}}
for metric in ("HR@10", "NDCG@10"):
    per_user = {system: s10.per_user_metrics(ranked, targets, ks=(10,))[metric] for system, ranked in lists.items()}
    boot = s10.paired_bootstrap(per_user, "two-tower transformer", n_resamples=200 if SMOKE else 1000)
    for system, b in boot.items():
        if system != "two-tower transformer":
            table.add_difference(system, metric, "two-tower transformer", b["delta"], b["delta_low"], b["delta_high"])
            print(f"{system:<28} {metric}: {b['mean']:.4f} [{b['low']:.4f}, {b['high']:.4f}], vs two-tower "
                  f"{b['delta']:+.4f} [{b['delta_low']:+.4f}, {b['delta_high']:+.4f}]")
print()
print(table)

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
for ax, metric in zip(axes, table.columns):
    metric_bars(ax, table, metric)
    ax.set_title(metric)
fig.suptitle(f"{DATASET}: two-tower + FAISS vs generative retrieval, leave-last-out test, seen items excluded "
             f"({cfg.preset} preset)")
plt.tight_layout()
plt.show()

best, tt = table.rows["generative"], table.rows["two-tower transformer"]
print(f"Generative retrieval ({names[0]} codes) reaches HR@10 {best['HR@10']:.4f}, {best['HR@10'] / tt['HR@10']:.0%} of "
      f"the two-tower's {tt['HR@10']:.4f} (NDCG@10 {best['NDCG@10'] / tt['NDCG@10']:.0%}, Recall@50 "
      f"{best['Recall@50'] / tt['Recall@50']:.0%}); the {names[1]} codes reach HR@10 "
      f"{table.rows[f'generative ({names[1]} codes)']['HR@10']:.4f}.")


# %% [markdown]
# ## Run it, part 5: where the errors are, level by level
#
# An ID is right only if every token is. `prefix_accuracy` counts, per prefix length, how often the
# best generated ID starts like the held-out item's ID, and how often one of the top 10 does (the
# hierarchical recall of Promise, R1). A wrong first code dooms the rest: the model was trained on
# true prefixes (teacher forcing) and never learned to recover from its own mistakes.

# %%
fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 3.4), squeeze=False)
for ax, name in zip(axes[0], names):
    table_tokens = item_token_table(sets[name].codes, sets[name].codebook_sizes)
    acc = prefix_accuracy(generated[name][:, :10], targets, table_tokens)
    levels = np.arange(1, len(acc["top1"]) + 1)
    ax.bar(levels - 0.2, acc["top1"], width=0.4, label="best ID")
    ax.bar(levels + 0.2, acc["any"], width=0.4, label="any of the top 10")
    ax.set_xticks(levels, [f"first {l}" for l in levels])
    ax.set_ylim(0, 1)
    ax.set_title(f"{name} codes: prefix of the held-out ID right")
    ax.legend()
    print(f"{name:>13}: best ID right on the first 1..{len(levels)} tokens: "
          + ", ".join(f"{a:.3f}" for a in acc["top1"]) + "; top-10: " + ", ".join(f"{a:.3f}" for a in acc["any"]))
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Run it, part 6: what a request costs
#
# Latency per user, one request at a time on one thread (the way a server runs one request per
# core), and throughput with batches: the two-tower's user tower + an exact FAISS search, against
# the decoder's prompt pass and its C decoding steps with B beams each.

# %%
import faiss


def per_user_ms(fn, users, repeats: int) -> float:
    threads, faiss_threads = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    try:
        fn(users[:1])  # warm-up
        times = []
        for u in users[:repeats]:
            start = time.perf_counter()
            fn(u[None])
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(faiss_threads)
    return 1000 * float(np.median(times))


def batched_users_per_s(fn, users) -> float:
    start = time.perf_counter()
    for i in range(0, len(users), 256):
        fn(users[i:i + 256])
    return len(users) / (time.perf_counter() - start)


lat_users = torch.tensor(np.array(users_test[: (10 if SMOKE else 400)], dtype=np.int64))
from harness.evaluation import seen_mask

seen_of = lambda users: seen_mask(test_sequences, users.tolist(), ds.n_items)
tries = {name: generative_trie(sets[name], device) for name in names}


def generate_fn(name, beam):
    rec = generative_recommender(decoders[name], tries[name], test_sequences, cfg.train.max_items, beam,
                                 cfg.generate.batch_users, device)
    return lambda users: rec(users, seen_of(users))


latency = {"two-tower + FAISS": (per_user_ms(lambda u: faiss_topk(u, None), lat_users, len(lat_users)),
                                 batched_users_per_s(lambda u: faiss_topk(u, None), lat_users))}
for beam in (10, K):
    fn = generate_fn(names[0], beam)
    latency[f"generative, beam {beam}"] = (per_user_ms(fn, lat_users, min(len(lat_users), 100)),
                                           batched_users_per_s(fn, lat_users))
print(f"{'':<22}{'ms per user (1 thread)':>24}{'users/s (batches)':>20}")
for label, (ms, qps) in latency.items():
    print(f"{label:<22}{ms:>24.2f}{qps:>20,.0f}")

# %% [markdown]
# ## Run it, part 7: the beam is the dial
#
# A wider beam keeps more prefixes alive, so fewer good items are pruned at the first levels, and
# costs proportionally more. The sweep measures HR@10 and NDCG@10 on the test split, and the time per
# user of the whole evaluation, for the better code set.

# %%
beams = (10, 20) if SMOKE else (10, 20, 50, 100)  # at least 10 items, for HR@10
sweep = []
for beam in beams:
    start = time.perf_counter()
    m = evaluate_generative(decoders[names[0]], sets[names[0]], ds, "test", cfg, ks=(10,), beam_size=beam,
                            device=device)
    sweep.append({"beam": beam, **m, "ms_per_user": 1000 * (time.perf_counter() - start) / len(users_test)})
    print(f"beam {beam:>4}: HR@10 {m['HR@10']:.4f}, NDCG@10 {m['NDCG@10']:.4f}, "
          f"{sweep[-1]['ms_per_user']:.2f} ms per user (batched)")

fig, ax = plt.subplots(figsize=(6.5, 3.6))
ax.plot([s["beam"] for s in sweep], [s["HR@10"] for s in sweep], marker="o", label="HR@10")
ax.plot([s["beam"] for s in sweep], [s["NDCG@10"] for s in sweep], marker="o", label="NDCG@10")
ax.axhline(tt["HR@10"], color="grey", linestyle="--", linewidth=1, label="two-tower HR@10")
for s in sweep:
    ax.annotate(f"{s['ms_per_user']:.1f} ms", (s["beam"], s["HR@10"]), textcoords="offset points", xytext=(4, 6))
ax.set_xscale("log", base=2)
ax.set_xlabel("beam size (annotated: evaluation time per user)")
ax.set_ylabel(f"test metric ({names[0]} codes)")
ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Reflection
#
# The plan's question, now with numbers: **what does the two-tower model do well that the
# generative model has to work hard to replicate, and what does the generative approach solve that
# your two-tower cannot?** Answer with your table, your latency per request for both, and what it
# would take to add 10,000 new items to each.
#
# 1. Where did the generative model's hits come from, level by level (part 5)? At which level does it
#    lose most, and what would you change first: the codebook (sizes, levels, the vectors it
#    quantises), the model, or the decoding?
# 2. Beam size against HR@10 and latency (part 7): how does the curve compare with session 06's
#    `nprobe` sweep, the retriever's own speed/recall dial?
# 3. The decoder has far more weights than the two-tower's Transformer, and trained for the same few
#    minutes. Is the comparison fair? What would you hold fixed to make it fair: parameters, training
#    compute, or latency?
# 4. Text codes or collaborative codes: which won here, and why? Which would you choose for a
#    catalog where a tenth of the items are new every week (the cold-start protocol of session 11)?
# 5. A new item arrives with a description. Trace what each system must do before it can be
#    recommended: the two-tower + FAISS, the decoder over text codes, the decoder over collaborative
#    codes. Which needs retraining, and which only a new row in a table?
#
# **After:** [readings/session_16.md](../readings/session_16.md): GLASS's retrieval-guided decoding,
# the hourglass phenomenon of residual quantisation, Promise's train-test mismatch, HSTU.
#
# **Revisit:** R1's reflection prompt (your half page from before session 04); session 13, to
# compile the decoder (the growing sequence of generation is the classic source of recompiles, a
# preallocated cache of fixed length avoids them); session 15, to batch beam search across requests.
