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
# # Session 03 — The two-tower model
#
# Retrieval has to find a few hundred good items among millions in milliseconds. The
# two-tower model makes that possible by splitting the work: an **item tower** embeds every
# item once, offline; a **user tower** embeds the user's history at request time; the score
# is a dot product, so the best items are a nearest-neighbour search away (session 06).
#
# ```
#   history [i1 i2 ... iL] ──► item encodings ──► user tower ──► u ∈ R^d  (‖u‖ = 1) ─┐
#                                                  (mean pool | Transformer)         ├─► score = u · v
#   candidate item j ──────► item tower (ID + category) ────────► v ∈ R^d (‖v‖ = 1) ─┘
# ```
#
# You write both towers, two user towers in fact: the **mean-pool** tower of YouTube's 2016
# recommender (the history as a bag of items), and a **causal Transformer** in the style of
# modern sequential recommenders (RoPE, SwiGLU, RMSNorm, pre-norm), which sees the order.
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `ItemTower` | ID embedding (`padding_idx=0`) + category embedding → residual MLP → L2 norm |
# | 2 | `MeanPoolUserTower` | masked mean of the history at every position (prefix means) |
# | 3 | `RMSNorm` | root-mean-square normalisation |
# | 4 | `apply_rope` | rotary position embeddings |
# | 5 | `TransformerBlock` | pre-norm attention with RoPE + SwiGLU feed-forward |
# | 6 | `TransformerUserTower` | causal Transformer over the history |
# | 7 | `score_all_items` | cosine scores against the whole catalog |
#
# **Before:** [readings/session_03.md](../readings/session_03.md) (Yi et al. 2019, Section 3;
# `nn.Embedding` and `nn.Module` docs). **After this session:** the reading session
# [R1](../readings/R1.md).
#
# **How your modules are graded.** Beyond shapes and masks, the autograder builds the reference
# module next to yours, gives it random non-trivial weights (no gain of 1, no bias of 0), loads
# its `state_dict` into your module and compares the outputs and gradients. So each exercise
# below fixes the **names and shapes of the parameters**, in a table: any implementation of the
# equations with those names passes; a different computation (another activation, another split
# into heads, a missing residual) fails, with the difference named. If you name a layer
# differently, the message says what to rename.

# %% tags=["export"]
import math

import torch
import torch.nn.functional as F
from torch import nn

# %%
from harness import Checker

check = Checker(session=3, namespace=globals())

# %% [markdown]
# ## 1. The item tower
#
# An item is its ID plus its features. The ID embedding memorises what the data says about
# this particular item; the category embedding generalises across items of a kind (and is all
# a brand-new item has). A small MLP mixes them, added back to the ID embedding as a residual
# so training starts from a plain embedding table:
#
# $$h_i = e_i + \mathrm{MLP}([e_i; c_{\mathrm{cat}(i)}]), \qquad v_i = h_i / \lVert h_i \rVert$$
#
# Item id 0 is padding. `nn.Embedding(..., padding_idx=0)` keeps its vector at zero and never
# updates it; `encode` must also return **zeros** for id 0 (the MLP would otherwise turn the
# zero vector into its bias), so that padding contributes nothing to a sum.
#
# Item features live in the model as a **buffer** (`register_buffer`): a tensor that moves
# with `.to(device)` and is saved in the `state_dict`, but is not trained. Category indices
# run 1..C with 0 for padding, as `RecDataset.category_codes()` returns them.
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `item_embedding` | `nn.Embedding(n_items + 1, dim, padding_idx=0)` | `weight` (n_items + 1, dim) |
# | `category_embedding` | `nn.Embedding(n_categories + 1, category_dim, padding_idx=0)` | `weight` (n_categories + 1, category_dim) |
# | `mlp` | `nn.Sequential(Linear(dim + category_dim, 2 dim), GELU(), Dropout(dropout), Linear(2 dim, dim))` | `0.weight`, `0.bias`, `3.weight`, `3.bias` |
#
# The MLP's input is `[e_i; c]` in that order (ID embedding first). Initialise the ID table
# with a small normal (std 0.05) so that the residual starts close to a plain embedding.

# %% tags=["export"]
class ItemTower(nn.Module):
    """Item embeddings from ID and category.

    Args:
        n_items: catalog size (ids 1..n_items, 0 = padding).
        item_categories: int64 tensor (n_items + 1,), category index (1..n_categories) per item id.
        n_categories: number of categories.
        dim: output size; category_dim: size of the category embedding; dropout: in the MLP.

    ``encode(ids)``: (...,) int64 -> (..., dim), zeros where ``ids == 0``.
    ``forward(ids)``: the same, L2-normalised along the last dimension.
    """

    def __init__(self, n_items: int, item_categories: torch.Tensor, n_categories: int, dim: int = 64,
                 category_dim: int = 16, dropout: float = 0.1):
        super().__init__()
        self.n_items = n_items
        self.dim = dim
        self.register_buffer("item_categories", item_categories.long().clone())
        ### BEGIN SOLUTION
        self.item_embedding = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.category_embedding = nn.Embedding(n_categories + 1, category_dim, padding_idx=0)
        self.mlp = nn.Sequential(nn.Linear(dim + category_dim, 2 * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(2 * dim, dim))
        nn.init.normal_(self.item_embedding.weight, std=0.05)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()
        ### END SOLUTION

    def encode(self, item_ids: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        # Encode each distinct id once: a batch of histories repeats the same items many times.
        unique, inverse = torch.unique(item_ids, return_inverse=True)
        e = self.item_embedding(unique)
        c = self.category_embedding(self.item_categories[unique])
        h = (e + self.mlp(torch.cat([e, c], dim=-1))) * (unique != 0).unsqueeze(-1)
        return h[inverse]
        ### END SOLUTION

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return F.normalize(self.encode(item_ids), dim=-1)
        ### END SOLUTION


# %%
check("ItemTower")

# %% [markdown]
# ## 2. The mean-pool user tower
#
# The simplest user representation: the average of the items they interacted with, then an
# MLP. Two details matter.
#
# * **Masking.** A left-padded batch row `[0, 0, 5, 3, 9]` has three items, not five: sum
#   the real positions and divide by their count, never by `L`.
# * **Every position at once.** Training is cheapest when one window of `L` items yields `L`
#   training examples: position `j` predicts the item after it from the items up to `j`. For
#   a mean, that is a *prefix mean*, one `cumsum` away:
#
# $$p_j = \frac{\sum_{t \le j} m_t\, h_t}{\max(1, \sum_{t \le j} m_t)}, \qquad u_j = \mathrm{normalize}(p_j + \mathrm{MLP}(p_j))$$
#
# `encode(history, mask)` returns all `u_j`, `(B, L, d)`; `forward` returns the last
# position, the embedding of the whole history (left padding puts it in the last column).
# The tower reuses the item tower's `encode` for the history: one item table serves both
# sides, as in most sequential recommenders.
#
# The `max(1, ·)` matters at the positions before a left-padded row's first item: their prefix
# holds no item, and `0 / 0` would be NaN, which then spreads through every gradient. With
# the clamp they are `0`, and the loss masks them out. The autograder compares all positions.
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `item_tower` | the `ItemTower` passed in (shared, not copied) | `item_tower.*` |
# | `mlp` | `nn.Sequential(Linear(dim, 2 dim), GELU(), Dropout(dropout), Linear(2 dim, dim))` | `0.weight`, `0.bias`, `3.weight`, `3.bias` |

# %% tags=["export"]
class MeanPoolUserTower(nn.Module):
    """Masked prefix-mean of the history's item encodings, residual MLP, L2 norm.

    ``encode(history, mask)``: history int64 (B, L), mask bool (B, L) -> (B, L, dim), position j from items <= j.
    ``forward(history, mask)`` -> (B, dim), the last position.
    """

    def __init__(self, item_tower: ItemTower, dim: int = 64, dropout: float = 0.1):
        super().__init__()
        self.item_tower = item_tower
        ### BEGIN SOLUTION
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim))
        ### END SOLUTION

    def encode(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        e = self.item_tower.encode(history)
        m = mask.unsqueeze(-1).to(e.dtype)
        prefix_mean = (e * m).cumsum(dim=1) / m.cumsum(dim=1).clamp_min(1.0)
        return F.normalize(prefix_mean + self.mlp(prefix_mean), dim=-1)
        ### END SOLUTION

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return self.encode(history, mask)[:, -1]
        ### END SOLUTION


# %%
check("MeanPoolUserTower")

# %% [markdown]
# ## 3. A Transformer user tower, the modern way
#
# A mean forgets the order: "camera, then lens" and "lens, then camera" look the same, and
# the last item, often the best predictor of the next, weighs as much as the first. A causal
# Transformer reads the history in order. The recipe below is what current sequential
# recommenders (and LLMs) use instead of the 2017 Transformer: the SASRec layout (Kang and
# McAuley, 2018) with the parts that HSTU (Zhai et al., 2024) and eSASRec (Tikhonovich et al.,
# 2025) found to matter, as summarised in [readings/session_03.md](../readings/session_03.md):
#
# * **RMSNorm** instead of LayerNorm: no mean subtraction, no bias; cheaper, as stable.
# * **Pre-norm**: `x + f(norm(x))`, so the residual stream is never normalised away and deep
#   stacks train without warm-up tricks.
# * **RoPE**: positions enter by *rotating* query and key features, so attention scores depend
#   on the *distance* between items, not on absolute positions; left padding then shifts
#   nothing.
# * **SwiGLU** feed-forward: `W_down(silu(W_gate h) ⊙ W_up h)`, a gated MLP.
#
# ### Exercise 3 — `RMSNorm`
#
# $$\mathrm{RMSNorm}(x) = \frac{x}{\sqrt{\tfrac{1}{d}\sum_k x_k^2 + \epsilon}} \odot g$$
#
# over the last dimension, with a learned gain `g` (ones at init), the parameter `weight` of
# shape `(dim,)`; no bias. Compute the statistic in float32 even when `x` is bf16 (mixed
# precision, session 05), cast the normalised `x` back to `x.dtype`, then multiply by the gain
# (cast to `x.dtype` too): a bf16 input gives a bf16 output.

# %% tags=["export"]
class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension, with a learned gain (shape (dim,))."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        ### BEGIN SOLUTION
        self.weight = nn.Parameter(torch.ones(dim))
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return normed.to(x.dtype) * self.weight.to(x.dtype)
        ### END SOLUTION


# %%
check("RMSNorm")

# %% [markdown]
# ### Exercise 4 — `apply_rope`
#
# Split the `d` features of each query and key into `d/2` pairs `(x_{2i}, x_{2i+1})` and
# rotate pair `i` at position `m` by the angle `m θ_i`, with `θ_i = base^{-2i/d}`:
#
# $$\begin{pmatrix} x'_{2i} \\ x'_{2i+1} \end{pmatrix} =
#   \begin{pmatrix} \cos m\theta_i & -\sin m\theta_i \\ \sin m\theta_i & \cos m\theta_i \end{pmatrix}
#   \begin{pmatrix} x_{2i} \\ x_{2i+1} \end{pmatrix}$$
#
# Rotations preserve norms, and the dot product of a query rotated to `m` and a key rotated to
# `n` depends only on `m - n`: that is the whole point. Low `i` rotate fast (fine position),
# high `i` slowly (coarse position).

# %% tags=["export"]
def apply_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding.

    Args:
        x: float tensor (..., L, d) with d even (for attention: (B, heads, L, head_dim)).
        positions: (L,) positions of the L rows (integers or floats).

    Returns:
        tensor like ``x``: pair (x[..., 2i], x[..., 2i+1]) at row m rotated by m * base ** (-2i / d).
    """
    ### BEGIN SOLUTION
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angle = positions.to(torch.float32)[:, None] * theta[None, :]  # (L, d/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    ### END SOLUTION


# %%
check("apply_rope")

# %% [markdown]
# ### Exercise 5 — `TransformerBlock`
#
# $$x \leftarrow x + \mathrm{Drop}(W_o\,\mathrm{Attn}(\mathrm{RoPE}(q), \mathrm{RoPE}(k), v)), \quad (q, k, v) = W_{qkv}\,\mathrm{RMSNorm}_1(x)$$
# $$x \leftarrow x + \mathrm{Drop}(W_{down}(\mathrm{silu}(W_{gate} h) \odot W_{up} h)), \quad h = \mathrm{RMSNorm}_2(x)$$
#
# `attn_mask` is a boolean tensor broadcastable to `(B, heads, L, L)`, **True where a query may
# attend to a key**, exactly what `F.scaled_dot_product_attention` takes. Positions for RoPE
# are `0..L-1`, and RoPE rotates **both** queries and keys (never values): only then does the
# score depend on the distance between the two positions alone. The feed-forward width is
# `4 * dim`. Apply attention dropout only in training. No linear layer has a bias.
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `norm1`, `norm2` | `RMSNorm(dim)` | `weight` (dim,) |
# | `qkv` | `nn.Linear(dim, 3 dim, bias=False)` | `weight` (3 dim, dim) |
# | `out` | `nn.Linear(dim, dim, bias=False)` | `weight` (dim, dim) |
# | `w_gate`, `w_up` | `nn.Linear(dim, 4 dim, bias=False)` | `weight` (4 dim, dim) |
# | `w_down` | `nn.Linear(4 dim, dim, bias=False)` | `weight` (dim, 4 dim) |
# | `dropout` | `nn.Dropout(dropout)`, on both residual branches | — |
#
# **The fused projection's layout.** `qkv(h)` has `3 dim` features per position: the first
# `dim` are q, the next `dim` are k, the last `dim` are v, and within each, head `h` owns the
# features `[h·head_dim, (h+1)·head_dim)`. That is `qkv(h).view(B, L, 3, heads, head_dim)`,
# permuted to `(3, B, heads, L, head_dim)`. After attention, heads merge back in the same
# order: `(B, heads, L, head_dim)` → `(B, L, heads, head_dim)` → `(B, L, dim)`.

# %% tags=["export"]
class TransformerBlock(nn.Module):
    """Pre-norm Transformer block with RoPE self-attention and a SwiGLU feed-forward.

    ``forward(x, attn_mask)``: x float (B, L, dim), attn_mask bool broadcastable to (B, heads, L, L)
    (True = may attend) -> (B, L, dim).
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.1):
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim={dim} must split into {heads} heads of even size (RoPE rotates pairs)")
        self.heads = heads
        self.dropout_p = dropout
        ### BEGIN SOLUTION
        self.norm1 = RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.norm2 = RMSNorm(dim)
        self.w_gate = nn.Linear(dim, 4 * dim, bias=False)
        self.w_up = nn.Linear(dim, 4 * dim, bias=False)
        self.w_down = nn.Linear(4 * dim, dim, bias=False)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        positions = torch.arange(length, device=x.device)
        q, k = apply_rope(q, positions), apply_rope(k, positions)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                                  dropout_p=self.dropout_p if self.training else 0.0)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        h = self.norm2(x)
        return x + self.dropout(self.w_down(F.silu(self.w_gate(h)) * self.w_up(h)))
        ### END SOLUTION


# %%
check("TransformerBlock")

# %% [markdown]
# ### Exercise 6 — `TransformerUserTower`
#
# Embed the history with the item tower, run the blocks, apply a final `RMSNorm` and
# L2-normalise. The attention mask combines two rules:
#
# * **causal**: position `i` attends to `j ≤ i` only, so that position `i`'s output can be
#   trained to predict item `i + 1` without seeing it;
# * **padding**: no query attends to a padded key.
#
# A padded *query* row would then have nothing to attend to. A softmax over an empty set is
# 0/0: the math kernel of older torch versions, and some GPU kernels, return NaN there, which
# then spreads through the backward pass; the pinned torch on a CPU returns zeros instead. Do
# not rely on either: let every position attend to itself too. A padded position's encoding
# is the zero vector and the projections have no bias, so attending to itself gives the same
# zeros on every kernel, and the loss masks them out anyway. Since the outputs cannot show the
# difference here, the autograder checks the mask you pass to the blocks:
# `(j <= i AND key j is real) OR j == i`, shape `(B, 1, L, L)`. Here it is for one row with
# two padded positions:

# %%
import matplotlib.pyplot as plt

demo_mask = torch.tensor([[False, False, True, True, True]])
L = demo_mask.shape[1]
causal = torch.ones(L, L, dtype=torch.bool).tril()
allowed = (causal & demo_mask[:, None, :]) | torch.eye(L, dtype=torch.bool)
fig, ax = plt.subplots(figsize=(3.2, 3.2))
ax.imshow(allowed[0].numpy(), cmap="Greens")
ax.set_xlabel("key position")
ax.set_ylabel("query position")
ax.set_title("may attend (causal ∧ real key) ∨ self")
plt.show()

# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `item_tower` | the `ItemTower` passed in (shared) | `item_tower.*` |
# | `blocks` | `nn.ModuleList` of `layers` `TransformerBlock(dim, heads, dropout)` | `blocks.0.*`, `blocks.1.*`, ... |
# | `norm` | `RMSNorm(dim)`, after the last block | `weight` (dim,) |
# | `dropout` | `nn.Dropout(dropout)` on the item encodings, before the first block | — |

# %% tags=["export"]
class TransformerUserTower(nn.Module):
    """Causal Transformer over the history (items from the shared item tower).

    ``encode(history, mask)``: int64 (B, L), bool (B, L) -> (B, L, dim) L2-normalised; position j sees items <= j.
    ``forward(history, mask)`` -> (B, dim), the last position (left padding: the whole history).
    """

    def __init__(self, item_tower: ItemTower, dim: int = 64, layers: int = 2, heads: int = 2, dropout: float = 0.1):
        super().__init__()
        self.item_tower = item_tower
        ### BEGIN SOLUTION
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, dropout) for _ in range(layers))
        self.norm = RMSNorm(dim)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def encode(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        length = history.shape[1]
        x = self.dropout(self.item_tower.encode(history))
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        itself = torch.eye(length, dtype=torch.bool, device=x.device)
        attn_mask = ((causal & mask[:, None, :]) | itself).unsqueeze(1)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, attn_mask)
        return F.normalize(self.norm(x), dim=-1)
        ### END SOLUTION

    def forward(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return self.encode(history, mask)[:, -1]
        ### END SOLUTION


# %%
check("TransformerUserTower")

# %% [markdown]
# ## 4. Scoring
#
# The provided `TwoTower` holds the two towers (the user tower shares the item tower), and
# `build_two_tower` builds one from a dataset and the config in
# `harness/configs/two_tower.yaml`. Scoring a user against the catalog is then one matrix
# product of normalised vectors, that is, cosine similarity. Column 0 (padding) must never
# win: set it to `-inf`.

# %% tags=["export"]
class TwoTower(nn.Module):
    """The item tower and a user tower that shares it (provided)."""

    def __init__(self, item_tower: ItemTower, user_tower: nn.Module):
        super().__init__()
        self.item_tower = item_tower
        self.user_tower = user_tower

    @property
    def n_items(self) -> int:
        return self.item_tower.n_items


def build_two_tower(n_items: int, item_categories: torch.Tensor, n_categories: int, tower: str = "mean",
                    dim: int = 64, category_dim: int = 16, dropout: float = 0.1, layers: int = 2,
                    heads: int = 2) -> TwoTower:
    """A two-tower model with a ``"mean"`` or ``"transformer"`` user tower (provided)."""
    items = ItemTower(n_items, item_categories, n_categories, dim=dim, category_dim=category_dim, dropout=dropout)
    if tower == "mean":
        users = MeanPoolUserTower(items, dim=dim, dropout=dropout)
    elif tower == "transformer":
        users = TransformerUserTower(items, dim=dim, layers=layers, heads=heads, dropout=dropout)
    else:
        raise ValueError(f"tower must be 'mean' or 'transformer', got {tower!r}")
    return TwoTower(items, users)


# %% [markdown]
# ### Exercise 7 — `score_all_items`

# %% tags=["export"]
def score_all_items(model: TwoTower, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cosine score of each user against every item id.

    Args:
        model: a ``TwoTower``.
        history, mask: (B, L) int64 and bool, a left-padded batch.

    Returns:
        float tensor (B, n_items + 1); column 0 (padding) is -inf.
    """
    ### BEGIN SOLUTION
    users = model.user_tower(history, mask)
    items = model.item_tower(torch.arange(model.n_items + 1, device=history.device))
    scores = users @ items.T
    scores[:, 0] = -math.inf
    return scores
    ### END SOLUTION


# %%
check("score_all_items")

# %% [markdown]
# ## Run it: shapes, sizes and a first look at the scores
#
# Build both models for the current dataset, push one batch of session 02 through them and
# check every shape with the workbook's shape checker. Training is sessions 04 and 05; until
# then the scores carry no preference. Look at their range: every item embedding passes through
# the same freshly initialised MLP, so all of them start out pointing in similar directions and
# the scores bunch together. Training's job is to spread them apart.

# %%
import os

from harness import upstream
from harness.autograder.checks import expect_shape
from harness.config import load_config
from harness.data import load_dataset
from harness.pipeline.retrieval import history_batch

s02 = upstream(2)
DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
ds = load_dataset(DATASET)
codes, names = ds.category_codes()
cfg = load_config("two_tower")
torch.manual_seed(0)
models = {tower: build_two_tower(ds.n_items, torch.from_numpy(codes), len(names), tower=tower,
                                 dim=cfg.model.dim, category_dim=cfg.model.category_dim, dropout=cfg.model.dropout,
                                 layers=cfg.model.layers, heads=cfg.model.heads)
          for tower in ("mean", "transformer")}
batch = history_batch(ds.sequences("test"), range(1, 9), max_len=cfg.train.max_len)
for tower, model in models.items():
    model.eval()
    with torch.no_grad():
        per_position = model.user_tower.encode(batch["history"], batch["mask"])
        scores = score_all_items(model, batch["history"], batch["mask"])
    expect_shape(per_position, (8, batch["history"].shape[1], cfg.model.dim), f"{tower}: per-position user embeddings")
    expect_shape(scores, (8, ds.n_items + 1), f"{tower}: scores")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{tower:>11}: {n_params:,} parameters; scores of user 1 range "
          f"{scores[0, 1:].min():.3f} .. {scores[0, 1:].max():.3f}")

# %% [markdown]
# Most parameters sit in the item embedding table (`(n_items + 1) × d`); the Transformer adds
# a few tens of thousands. At the scale of a large platform the proportion is the same, only
# more extreme: embedding tables of billions of rows, dense networks of millions of weights.
#
# ## Reflection
#
# 1. The item tower sees an item's category; the user tower sees only item IDs and, through
#    the shared item tower, their categories. What would you add to the user tower in
#    production (context, time of day, device), and why can the item tower *not* see those?
# 2. Why must both towers' outputs be normalised if the score is to be read as a similarity,
#    and what does a temperature (session 04) then do?
# 3. The Transformer tower's last position sees the whole history through causal attention;
#    the mean tower's last position is the plain mean. Which of the two would you expect to
#    win on MovieLens, where users rate many movies in one sitting? Write your guess down;
#    session 06 measures it.
#
# **Next:** reading session R1, then session 04 trains these towers with a contrastive loss.
