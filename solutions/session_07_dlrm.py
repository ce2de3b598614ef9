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
# # Session 07 — DLRM, the ranking model
#
# The retriever of sessions 03–06 narrows millions of items to a few hundred candidates, fast,
# with one dot product per item. Now a **ranker** re-scores those candidates with everything we
# know about the pair: who the user is (age, occupation, recent history), what the item is
# (genres, year, price, store), how popular it is, how active the user is. The two-tower model
# had to compress each side into one vector before the two met in a single dot product; the
# ranker sees the pair *together* and can combine its features in any non-linear way, which is
# affordable because it scores hundreds of candidates, not millions.
#
# The model is Meta's **DLRM** (Naumov et al., 2019), the reference design of industrial ranking
# models: one embedding table per categorical feature, a *bottom MLP* for the dense features,
# a *dot interaction* between every pair of the resulting vectors, and a *top MLP* that turns
# the interactions into one logit.
#
# ```
#   dense x (B, D) ─► standardise ─► bottom MLP ─► z (B, d) ────────────────┐
#   user_id, age, ..., item_id (B,) ─► embedding tables ─► (B, d) each ──────┤
#   history, genres (B, L) ─► embedding bags (masked mean) ─► (B, d) each ───┤
#   extra modules (session 11: text, session 12: semantic IDs) ─► (B, d) ────┤
#                                                                            ▼
#                                          T = [z; e_1; ...; e_{F-1}]   (B, F, d)
#                                                                            │  dot interaction:
#                                                                            ▼  Z = T Tᵀ, keep i > j
#                                                              p   (B, F(F-1)/2)
#                                                                            │
#                                            top MLP([z ; p]) ─► logit (B,)    (no sigmoid)
# ```
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `EmbeddingTables` | one table per sparse feature, embedding bags (masked mean) for multi-valued ones |
# | 2 | `BottomMLP` | standardise the dense features with the training statistics (buffers), then an MLP |
# | 3 | `DotInteraction` | dot products of all distinct pairs, strict lower triangle, index buffers built once |
# | 4 | `DLRM` | the whole model: feature vectors, interaction, top MLP, a logit (no sigmoid) |
#
# The features come from the workbook's feature builder, `harness.pipeline.features`, which
# works on every prepared dataset and never leaks the future; you train the DLRM briefly with
# PyTorch's own binary cross-entropy on uniform negatives and compare it with popularity.
# Session 08 writes the ranking losses, hard negatives and the proper training loop.
#
# **Before:** [readings/session_07.md](../readings/session_07.md): Meta's DLRM blog post, Naumov et
# al. 2019, Sections 2–3, and the model code of `facebookresearch/dlrm`. **After:** the same page's
# post-reading (TorchRec).
#
# **How your modules are graded.** As in session 03: each exercise fixes the names and shapes of
# its parameters and buffers in a table; the autograder loads the reference's (randomised) weights
# into your module and compares outputs and gradients on inputs with padding, unknown values and
# empty bags, besides targeted tests of the classic DLRM mistakes.

# %% tags=["export"]
import math
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.pipeline.features import FeatureBuilder, FeatureSpec

# %%
from harness import Checker

check = Checker(session=7, namespace=globals())

# %% [markdown]
# ## 1. The features
#
# A ranking example is a pair (user, candidate item). `FeatureBuilder.fit(ds, upto="valid")`
# learns, from the interactions visible before the validation split (the training data), what
# every pair's features are, and `builder.batch(users, items)` makes a batch, a dict of tensors:
#
# | kind | in the batch | MovieLens-100K | Amazon / synthetic |
# | --- | --- | --- | --- |
# | **sparse**: one categorical value | int64 `(B,)` per feature | `user_id`, `age` (group), `gender`, `occupation`, `item_id`, `year` (5-year bucket) | `user_id`, `item_id`, `category`, `store` |
# | **bag**: several values | int64 `(B, L)` per feature, left-padded with 0 | `history` (the user's 20 latest items), `genres` | `history` |
# | **dense**: numbers | float32 `(B, D)` under `"dense"` | `log_item_count` (popularity), `log_user_count` (activity) | the same, `log_price`, `price_missing` |
#
# plus the raw ids under `"user"` and `"item"` (not features: later sessions look things up by
# them). Code **0 means unknown**: a missing value, an id the training data never saw (its row
# would never have been trained), a user with no id (serving an anonymous visitor with a
# history), or padding in a bag. The builder's `spec` lists the features, each table's size and
# the dense features' training mean and standard deviation. Everything is computed from the
# history before the split: a training example's history bag stops before its target, and its
# own interaction is not counted in the item's popularity (or every positive would carry its label
# in a feature). A synthetic spec shows the anatomy:

# %%
from harness.pipeline.features import BagFeature, SparseFeature, example_batch

demo_spec = FeatureSpec(
    sparse=(SparseFeature("user_id", 6, "user"), SparseFeature("item_id", 9, "item")),
    bags=(BagFeature("history", 9, 4, "user"),),
    dense=("log_item_count", "log_user_count"), dense_mean=(3.0, 2.0), dense_std=(1.5, 0.8))
print(demo_spec.describe())
demo_batch = example_batch(demo_spec, batch_size=3)
for key, value in demo_batch.items():
    print(f"{key:>8}: {str(value.dtype).replace('torch.', ''):>7} {tuple(value.shape)}  {value.tolist()}")

# %% [markdown]
# ## 2. Exercise 1 — `EmbeddingTables`
#
# Each categorical feature $f$ gets its own table $E_f \in \mathbb{R}^{n_f \times d}$ (all with
# the same $d$, so that any two vectors can be compared by a dot product). A sparse feature is a
# lookup, a bag is the **mean of the rows of its non-padding entries**:
#
# $$e_f = E_f[x_f], \qquad e_f = \frac{\sum_{t:\, x_{f,t} \ne 0} E_f[x_{f,t}]}{\max\left(1,\; \lvert\{t : x_{f,t} \ne 0\}\rvert\right)}$$
#
# * A mean, not a sum: a user with 200 movies would otherwise have a vector 100 times longer than
#   a user with 2, and every dot product with it too. (How long the history is, is a feature of
#   its own: `log_user_count`.)
# * Padding is not an item: divide by the number of real entries, never by `L`. An empty bag (a
#   new user) is the zero vector, not `0/0`.
# * Row 0 of every table is zero and never trained (`padding_idx=0`), so unknown values add
#   nothing. `nn.Embedding(..., padding_idx=0)` zeroes it when it is built; an initialisation you
#   apply afterwards overwrites it, so zero it again.
#
# Two ways to write a bag, and both pass: `nn.Embedding` and the masked mean above, on the
# `(B, L, d)` lookup; or `nn.EmbeddingBag(n, d, mode="mean", padding_idx=0)`, which fuses lookup and
# pooling into one kernel without the `(B, L, d)` intermediate (DLRM's own code uses `EmbeddingBag`
# for every table, with offsets into one flat index list; on a CPU its backward pass sorts the
# indices, and the masked mean is faster at our sizes). Initialise the weights as
# `facebookresearch/dlrm` does, $U(-1/\sqrt{n_f},\, 1/\sqrt{n_f})$, then zero row 0.
#
# The output stacks the vectors in the spec's order, `spec.tables` (the sparse features, then
# the bags): `(B, n_tables, d)`. Read each feature from the batch by its name: the batch holds
# other keys too (`"user"`, `"item"`, `"dense"`), in no particular order.
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `tables` | `nn.ModuleDict` with one entry per feature of `spec.tables`, keyed by the feature's name | — |
# | `tables[<sparse feature>]` | `nn.Embedding(cardinality, dim, padding_idx=0)` | `weight` (cardinality, dim) |
# | `tables[<bag feature>]` | `nn.EmbeddingBag(cardinality, dim, mode="mean", padding_idx=0)`, or `nn.Embedding(cardinality, dim, padding_idx=0)` and your masked mean | `weight` (cardinality, dim) |

# %% tags=["export"]
class EmbeddingTables(nn.Module):
    """One embedding table per categorical feature of a spec; bags pooled by a masked mean.

    Args:
        spec: a ``FeatureSpec``; one table per feature of ``spec.tables`` (sparse, then bags).
        dim: the embedding size d of every table.

    ``forward(batch)``: ``batch[name]`` is int64 (B,) for a sparse feature and int64 (B, L) for a
    bag (0 = unknown / padding; other keys are ignored) -> float (B, len(spec.tables), dim), in
    ``spec.tables`` order. Code 0 gives the zero vector; a bag is the mean over its non-zero
    entries, and the zero vector when it has none.
    """

    def __init__(self, spec: FeatureSpec, dim: int = 16):
        super().__init__()
        self.names = [f.name for f in spec.tables]
        self.dim = dim
        ### BEGIN SOLUTION
        self.tables = nn.ModuleDict()
        for f in spec.sparse:
            self.tables[f.name] = nn.Embedding(f.cardinality, dim, padding_idx=0)
        for f in spec.bags:  # a bag's table is an ordinary table; forward pools its rows
            self.tables[f.name] = nn.Embedding(f.cardinality, dim, padding_idx=0)
        with torch.no_grad():
            for table in self.tables.values():
                bound = 1.0 / math.sqrt(table.num_embeddings)
                table.weight.uniform_(-bound, bound)
                table.weight[0].zero_()
        ### END SOLUTION

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ### BEGIN SOLUTION
        vectors = []
        for name in self.names:
            codes = batch[name]
            e = self.tables[name](codes)  # (B, d), or (B, L, d) for a bag
            if codes.ndim == 2:  # a bag: the mean over its non-padding entries
                real = (codes != 0).unsqueeze(-1).to(e.dtype)
                e = (e * real).sum(dim=1) / real.sum(dim=1).clamp_min(1.0)
            vectors.append(e)
        return torch.stack(vectors, dim=1)
        ### END SOLUTION


# %%
check("EmbeddingTables")

# %% [markdown]
# ## 3. Exercise 2 — `BottomMLP`
#
# The dense features live on different scales: `log_item_count` runs from 0 to about 6,
# `log_price` from 0 to 8, a retriever's score (session 10) from -1 to 1. Fed raw to an MLP, the
# widest one dominates the first layer and the ReLUs start out saturated or dead. So standardise
# each column with the **training** mean $\mu$ and standard deviation $\sigma$ from the spec, then
# map the result to one $d$-vector, the same size as the embeddings:
#
# $$z = \mathrm{MLP}_{\text{bot}}\!\left(\frac{x - \mu}{\sigma}\right), \qquad
#   \mathrm{MLP}(h) = \mathrm{ReLU}(W_k \cdots \mathrm{ReLU}(W_1 h + b_1) \cdots + b_k)$$
#
# with a ReLU after **every** layer, the last one included, as in DLRM's bottom MLP.
#
# $\mu$ and $\sigma$ are **buffers**: they are saved in the `state_dict` and move with
# `.to(device)`, so a served model can never be paired with the wrong statistics, but they are
# not parameters, and the optimiser never changes them. Never standardise with the statistics of
# the batch in front of you: a batch of 100 candidates of one user is not the training
# distribution, and the same pair would score differently in another batch. Do not modify the
# caller's tensor in place either.
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `dense_mean`, `dense_std` | buffers (`register_buffer`), float32 copies of the arguments | (D,) each |
# | `mlp` | `nn.Sequential(Linear(D, h_1), ReLU(), Linear(h_1, h_2), ReLU(), ..., Linear(h_k, dim), ReLU())` | `0.weight` (h_1, D), `0.bias` (h_1,), `2.weight`, `2.bias`, ... |
#
# With `hidden=()` the MLP is `Linear(D, dim), ReLU()`.

# %% tags=["export"]
class BottomMLP(nn.Module):
    """The bottom MLP: standardised dense features -> one d-vector.

    Args:
        dense_mean, dense_std: float (D,), the training statistics of the dense columns (std > 0).
        hidden: the hidden sizes; dim: the output size d.

    ``forward(dense)``: float (B, D), raw values -> (B, dim), ReLU after every layer.
    """

    def __init__(self, dense_mean: torch.Tensor, dense_std: torch.Tensor, hidden: tuple[int, ...] = (32,),
                 dim: int = 16):
        super().__init__()
        self.n_dense = int(dense_mean.shape[0])
        ### BEGIN SOLUTION
        self.register_buffer("dense_mean", dense_mean.detach().float().clone())
        self.register_buffer("dense_std", dense_std.detach().float().clone())
        sizes = [self.n_dense, *hidden, dim]
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        ### END SOLUTION

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        return self.mlp((dense - self.dense_mean) / self.dense_std)
        ### END SOLUTION


# %%
check("BottomMLP")

# %% [markdown]
# ## 4. Exercise 3 — `DotInteraction`
#
# Stack the $F$ feature vectors of a row into $T \in \mathbb{R}^{F \times d}$ (the bottom MLP's
# $z$ first, then the embeddings). Their dot products are one batched matrix product,
#
# $$Z = T\,T^{\top} \in \mathbb{R}^{F \times F}, \qquad Z_{ij} = \langle t_i, t_j \rangle,$$
#
# and DLRM keeps the **strict lower triangle**, $p = (Z_{ij})_{i > j}$, $F(F-1)/2$ numbers:
#
# * $Z$ is symmetric: the upper triangle repeats the lower one, and the top MLP would see every
#   pair twice.
# * The diagonal $Z_{ii} = \lVert t_i \rVert^2$ is not an interaction between two features: it
#   is one feature's squared norm (DLRM's `arch_interaction_itself=False`).
#
# The order of the pairs matters, since the top MLP's weights are tied to positions: use
# `torch.tril_indices(F, F, offset=-1)`, row-major, `(1,0), (2,0), (2,1), (3,0), ...`, which is also
# the order of `facebookresearch/dlrm`. Here it is for F = 4, with the numbers giving each pair's
# position in $p$:

# %%
import matplotlib.pyplot as plt

F_demo = 4
rows_demo, cols_demo = torch.tril_indices(F_demo, F_demo, offset=-1)
order = np.full((F_demo, F_demo), np.nan)
order[rows_demo.numpy(), cols_demo.numpy()] = np.arange(len(rows_demo))
fig, ax = plt.subplots(figsize=(3.4, 3.4))
ax.imshow(np.isfinite(order), cmap="Greens", vmin=0, vmax=1.4)
for (i, j), k in np.ndenumerate(order):
    ax.text(j, i, "" if np.isnan(k) else int(k), ha="center", va="center")
ax.set_xticks(range(F_demo), ["z", "e1", "e2", "e3"])
ax.set_yticks(range(F_demo), ["z", "e1", "e2", "e3"])
ax.set_title("kept: i > j, in this order")
plt.show()

# %% [markdown]
# **Build the indices once.** They depend on $F$ only, so compute them in `__init__` and register
# them as buffers (`rows`, `cols`): they then move to the GPU with the model, once. The reference
# code of DLRM rebuilds them from Python lists in every forward pass: a few microseconds of Python
# and a host-to-device copy per step, on the hot path of a model that serves millions of requests.
# The autograder watches your `forward` for calls that create index tensors (`tril_indices`,
# `arange`, `torch.tensor`, `ones_like(...).tril()`...), and compiles your module with
# `torch.compile(fullgraph=True)`, which fails on a boolean-mask selection (its output size depends
# on the data).
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `rows`, `cols` | int64 buffers, `torch.tril_indices(n_features, n_features, offset=-1)` | (F(F-1)/2,) each, no parameters |

# %% tags=["export"]
class DotInteraction(nn.Module):
    """DLRM's dot interaction: the dot products of every pair of distinct feature vectors.

    Args:
        n_features: F, the number of vectors per row.

    ``forward(features)``: float (B, F, d) -> (B, F * (F - 1) // 2), where column k is
    ``<features[:, i_k], features[:, j_k]>`` for ``(i_k, j_k)`` = column k of
    ``torch.tril_indices(F, F, offset=-1)`` (strict lower triangle: no self-interaction, no
    pair twice).
    """

    def __init__(self, n_features: int):
        super().__init__()
        self.n_features = n_features
        ### BEGIN SOLUTION
        rows, cols = torch.tril_indices(n_features, n_features, offset=-1)
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)
        ### END SOLUTION

    @property
    def n_pairs(self) -> int:
        return self.n_features * (self.n_features - 1) // 2

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        ### BEGIN SOLUTION
        gram = torch.bmm(features, features.transpose(1, 2))  # (B, F, F)
        return gram[:, self.rows, self.cols]
        ### END SOLUTION


# %%
check("DotInteraction")

# %% [markdown]
# ## 5. Exercise 4 — `DLRM`
#
# The whole model. With $z$ the bottom MLP's output and $p$ the interaction of
# $T = [z; e_1; \dots; e_{F-1}]$, the top MLP sees both (DLRM's `interact_features` returns
# `cat([z, p])`, so the dense signal also reaches the top MLP directly):
#
# $$\hat{y} = \mathrm{MLP}_{\text{top}}([\,z\,;\,p\,]) \in \mathbb{R}, \qquad P(\text{interaction}) = \sigma(\hat{y})$$
#
# The top MLP has a ReLU after every layer **but the last**: its output is a **logit** $\hat{y}$,
# any real number. There is **no sigmoid in the model**. The loss applies it, inside
# `F.binary_cross_entropy_with_logits`, in the log-sum-exp form that stays exact where
# $\log(1 - \sigma(\hat y))$ computed from a rounded $\sigma(\hat y) = 1.0$ would be $\log 0$. A
# model that returns $\sigma(\hat{y})$ and is trained with the logits loss is squashed twice: its
# "logit" is stuck in $(0, 1)$, so its probabilities in $(0.5, 0.73)$. Ranking needs no sigmoid
# either: it is monotone.
#
# **Extension points.** Later sessions add feature vectors without touching this class:
# `extra` maps names to modules, each turning the batch into one more `(B, d)` vector that joins
# the interaction after the embeddings (session 11: a projection of the item's text embedding;
# session 12: an embedding of its semantic ID). `feature_vectors(batch)` returns the stack
# $T$, `(B, F, d)`, in the order of `feature_names`: `"dense"` (the bottom MLP's $z$), the spec's
# tables, then the extras. `F = 1 + len(spec.tables) + len(extra)`, and the top MLP's input has
# `dim + F(F-1)/2` features.
#
# | attribute | module | parameters (shape) |
# | --- | --- | --- |
# | `embeddings` | `EmbeddingTables(spec, dim)` (DLRM's `emb_l`) | `embeddings.tables.<name>.weight` |
# | `bottom_mlp` | `BottomMLP(mean, std, bottom, dim)` with `mean, std = spec.dense_stats()` (DLRM's `bot_l`) | `bottom_mlp.dense_mean`, `bottom_mlp.dense_std` (buffers), `bottom_mlp.mlp.*` |
# | `extra` | `nn.ModuleDict(extra or {})` | `extra.<name>.*` |
# | `interaction` | `DotInteraction(len(feature_names))` (DLRM's `interact_features`) | buffers `interaction.rows`, `interaction.cols` |
# | `top_mlp` | `nn.Sequential(Linear(dim + P, t_1), ReLU(), ..., Linear(t_k, 1))`, P = F(F-1)/2, no activation after the last (DLRM's `top_l`) | `top_mlp.0.weight` (t_1, dim + P), `top_mlp.0.bias`, ..., last `weight` (1, t_k) |
#
# With `top=()` the top MLP is the single `Linear(dim + P, 1)`.

# %% tags=["export"]
class DLRM(nn.Module):
    """DLRM (Naumov et al., 2019): embeddings and a bottom MLP, dot interaction, top MLP, one logit.

    Args:
        spec: the ``FeatureSpec`` of the batches (tables, dense statistics).
        dim: d, the size of every feature vector; bottom, top: hidden sizes of the two MLPs.
        extra: optional ``{name: module}``; each module maps the batch to float (B, dim), one more
            feature vector in the interaction (after the embeddings, in this order).

    ``feature_vectors(batch)`` -> float (B, F, dim), in ``feature_names`` order: the bottom MLP's
    output, ``spec.tables``, then ``extra``; F = 1 + len(spec.tables) + len(extra).
    ``forward(batch)`` -> float (B,): logits (no sigmoid).
    """

    def __init__(self, spec: FeatureSpec, dim: int = 16, bottom: tuple[int, ...] = (32,),
                 top: tuple[int, ...] = (64, 32), extra: Mapping[str, nn.Module] | None = None):
        super().__init__()
        self.spec = spec
        self.dim = dim
        self.feature_names = ("dense", *(f.name for f in spec.tables), *(extra or {}))
        ### BEGIN SOLUTION
        mean, std = spec.dense_stats()
        self.embeddings = EmbeddingTables(spec, dim)
        self.bottom_mlp = BottomMLP(mean, std, tuple(bottom), dim)
        self.extra = nn.ModuleDict(extra or {})
        self.interaction = DotInteraction(len(self.feature_names))
        sizes = [dim + self.interaction.n_pairs, *top]
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.top_mlp = nn.Sequential(*layers, nn.Linear(sizes[-1], 1))
        ### END SOLUTION

    def feature_vectors(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ### BEGIN SOLUTION
        z = self.bottom_mlp(batch["dense"])
        parts = [z.unsqueeze(1), self.embeddings(batch)]
        parts += [module(batch).unsqueeze(1) for module in self.extra.values()]
        return torch.cat(parts, dim=1)
        ### END SOLUTION

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ### BEGIN SOLUTION
        features = self.feature_vectors(batch)
        pairs = self.interaction(features)
        return self.top_mlp(torch.cat([features[:, 0], pairs], dim=1)).squeeze(-1)
        ### END SOLUTION


# %%
check("DLRM")

# %% [markdown]
# ## 6. Provided: building and scoring
#
# `build_dlrm` reads the sizes from `harness/configs/dlrm.yaml`; `score_candidates` scores a
# matrix of candidates per user in chunks (what the retrieve → rank evaluation of session 10 and
# the server of session 14 call).

# %% tags=["export"]
def build_dlrm(spec: FeatureSpec, cfg, extra: Mapping[str, nn.Module] | None = None) -> DLRM:
    """A DLRM at the sizes of ``cfg.model`` (``load_config("dlrm")``) (provided)."""
    return DLRM(spec, dim=cfg.model.dim, bottom=tuple(cfg.model.bottom), top=tuple(cfg.model.top), extra=extra)


@torch.no_grad()
def score_candidates(model: nn.Module, builder: FeatureBuilder, users, candidates: torch.Tensor, *,
                     extra_dense: Mapping[str, torch.Tensor] | None = None, chunk: int = 65_536,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Logits of each user's candidates, in eval mode (provided).

    Args:
        users: int64 (B,) user ids; candidates: int64 (B, K) item ids (0 = padding, scored anyway).
        builder: featurises the pairs with its state (histories and counts up to ``builder.upto``).
        extra_dense: ``{name: (B, K)}`` for the columns declared with ``builder.with_extra_dense``.
        chunk: pairs per forward pass; device: where the model runs (default: its parameters').

    Returns:
        float32 (B, K) on the CPU.
    """
    device = device or next(model.parameters()).device
    users = torch.as_tensor(np.array(users) if not torch.is_tensor(users) else users, dtype=torch.long).reshape(-1)
    candidates = torch.as_tensor(candidates, dtype=torch.long)
    B, K = candidates.shape
    flat_users, flat_items = users.repeat_interleave(K), candidates.reshape(-1)
    extra = {k: torch.as_tensor(v).reshape(-1) for k, v in (extra_dense or {}).items()}
    was_training = model.training
    model.eval()
    try:
        out = []
        for start in range(0, B * K, chunk):
            part = slice(start, start + chunk)
            batch = builder.batch(flat_users[part], flat_items[part],
                                  extra_dense={k: v[part] for k, v in extra.items()} or None)
            out.append(model({k: v.to(device) for k, v in batch.items()}).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).reshape(B, K) if out else torch.zeros(B, K)


# %% [markdown]
# ## Run it, part 1: features and shapes on the real data
#
# The dataset is `WORKBOOK_DATASET` (MovieLens-100K by default), the sizes come from
# `harness/configs/dlrm.yaml` at the `WORKBOOK_PRESET` preset. Fit the features on the training
# interactions and look at the spec:

# %%
import os
import time

from harness.autograder.checks import expect_shape
from harness.config import load_config
from harness.data import load_dataset
from harness.seeding import seed_everything

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
cfg = load_config("dlrm")
ds = load_dataset(DATASET)
print(ds.summary(), f"| preset: {cfg.preset}")
start = time.perf_counter()
builder = FeatureBuilder.fit(ds, upto="valid", history_len=cfg.features.history_len,
                             min_count=cfg.features.min_count, max_vocab=cfg.features.max_vocab)
print(f"features fit on the {len(builder.positives().users):,} training interactions in "
      f"{time.perf_counter() - start:.2f} s\n")
print(builder.spec.describe())

# %% [markdown]
# Build the model and push a batch of training examples through it, checking the shape of every
# stage:

# %%
seed_everything(cfg.train.seed)
model = build_dlrm(builder.spec, cfg)
positives = builder.positives()
rows = torch.randperm(len(positives.users), generator=torch.Generator().manual_seed(0))[:256]
batch = builder.batch(positives.users[rows], positives.items[rows], positions=positives.positions[rows])
B, d, F_all, n_tables = len(rows), cfg.model.dim, len(model.feature_names), len(builder.spec.tables)
with torch.no_grad():
    e = model.embeddings(batch)
    z = model.bottom_mlp(batch["dense"])
    stack = model.feature_vectors(batch)
    pairs = model.interaction(stack)
    logits = model(batch)
expect_shape(e, (B, n_tables, d), "embeddings: one d-vector per table")
expect_shape(z, (B, d), "bottom MLP output z")
expect_shape(stack, (B, F_all, d), "feature vectors T = [z; embeddings]")
expect_shape(pairs, (B, F_all * (F_all - 1) // 2), "dot interaction: strict lower triangle")
expect_shape(logits, (B,), "logits")
print(f"B = {B}, d = {d}, F = {F_all} vectors -> {pairs.shape[1]} pairs; top MLP input {d + pairs.shape[1]}; "
      f"logits {tuple(logits.shape)}, range {logits.min():.3f} .. {logits.max():.3f} (untrained)")

# %% [markdown]
# Where the parameters are: one row of `d` numbers per value of every categorical feature, and
# two small MLPs.

# %%
print(f"{'part':<22}{'rows':>8}{'parameters':>12}")
counts = {}
for name, table in model.embeddings.tables.items():
    counts[f"table `{name}`"] = table.weight.numel()
    print(f"{'table `' + name + '`':<22}{table.num_embeddings:>8,}{table.weight.numel():>12,}")
for part in ("bottom_mlp", "top_mlp"):
    counts[part] = sum(p.numel() for p in getattr(model, part).parameters())
    print(f"{part:<22}{'':>8}{counts[part]:>12,}")
total = sum(p.numel() for p in model.parameters())
in_tables = sum(v for k, v in counts.items() if k.startswith("table"))
print(f"{'total':<22}{'':>8}{total:,}   ({in_tables / total:.0%} in the embedding tables)")

# %% [markdown]
# ## Run it, part 2: a short training run with uniform negatives
#
# Every training interaction is a positive (label 1), each with `cfg.train.negatives` items drawn
# uniformly from the catalog minus the user's training items (label 0; rejection sampling against
# a sorted list of (user, item) keys, the vectorised cousin of session 02's `sample_negatives`),
# featurised at the positive's position: same user, same history. The loss is
# PyTorch's own `F.binary_cross_entropy_with_logits` on the model's logits, the optimiser Adam.
# This is the minimum to see the model learn; session 08 writes the ranking losses, hard negatives
# mined from the retriever and the proper training loop.
#
# The score is the held-out **AUC**: for each user, the probability that the model scores their
# held-out item above an item they never interacted with (ties count half), averaged over users:
#
# $$\mathrm{AUC}_u = \frac{1}{|N_u|}\sum_{j \in N_u} \left(\mathbb{1}[s_{u,\text{held-out}} > s_{u,j}] + \tfrac12\,\mathbb{1}[s_{u,\text{held-out}} = s_{u,j}]\right)$$
#
# After each epoch it is estimated on the validation split with 100 uniformly drawn unseen items
# per user: AUC is a *mean over negatives*, so a uniform sample estimates the full-catalog value
# without bias (unlike HR@10, session 06), with the standard error printed. At the end, the test
# split is scored against the **whole catalog** (seen items excluded), which also gives HR@10 and
# NDCG@10, although a ranker's real job is to re-rank a retriever's short list (session 10).
# Popularity (training counts) is the baseline.
#
# On a CPU this runs on **one thread**. Each step works on a few thousand rows of 16 numbers:
# small operations, where waking and synchronising a pool of threads costs as much as it saves.
# On the 2-core machine these notebooks were measured on, one thread was as fast as two when the
# machine was idle, and 5 to 10 times faster when other programs were using the cores (the pool's
# threads then wait for each other at every operation).

# %%
from tqdm.auto import tqdm

from harness.env import pick_device
from harness.evaluation import metrics_from_ranks, ranks_from_scores, seen_mask

device = pick_device()  # CUDA when there is a GPU; the features are built on the CPU and moved
if device.type == "cpu":
    torch.set_num_threads(1)  # small operations: see the note above


def ids(x) -> torch.Tensor:
    """int64 tensor from a tensor or a (possibly read-only) numpy array."""
    return x.long() if torch.is_tensor(x) else torch.tensor(np.asarray(x), dtype=torch.long)


def pair_keys(users, items) -> torch.Tensor:
    """One int64 key per (user, item) pair, for fast membership tests against a sorted key list."""
    return ids(users) * (ds.n_items + 1) + ids(items)


def interacted(split: str, include_targets: bool = False) -> torch.Tensor:
    """Sorted keys of the pairs visible before ``split`` (and of its held-out pairs when asked)."""
    frame = ds.history(split)
    keys = [pair_keys(frame["user_id"].to_numpy(), frame["item_id"].to_numpy())]
    if include_targets:
        keys.append(pair_keys(*ds.targets(split)))
    return torch.cat(keys).sort().values


def uniform_negatives(users: torch.Tensor, k: int, excluded: torch.Tensor, generator: torch.Generator,
                      max_rounds: int = 100) -> torch.Tensor:
    """(B, k) items drawn uniformly from 1..n_items, never a pair in the sorted keys ``excluded``."""
    out = torch.randint(1, ds.n_items + 1, (len(users), k), generator=generator)
    for _ in range(max_rounds):  # rejection: a user has seen a small share of the catalog
        keys = pair_keys(users[:, None], out)
        clash = excluded[torch.searchsorted(excluded, keys).clamp_max(len(excluded) - 1)] == keys
        if not clash.any():
            return out
        out[clash] = torch.randint(1, ds.n_items + 1, (int(clash.sum()),), generator=generator)
    raise RuntimeError("some user has interacted with nearly every item: no uniform negative found")


def auc_against(target_scores: torch.Tensor, scores: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Per-user AUC of the held-out item's score (B, 1) against the scores (B, N) where ``negatives`` is True."""
    wins = ((scores < target_scores) & negatives).sum(1) + 0.5 * ((scores == target_scores) & negatives).sum(1)
    return wins / negatives.sum(1).clamp_min(1)


def sampled_auc(score_pairs, split: str, n_negatives: int = 100, seed: int = 0) -> tuple[float, float]:
    """Mean per-user AUC of ``split``'s held-out items against uniform unseen items, and its standard error."""
    users, targets = (ids(x) for x in ds.targets(split))
    negatives = uniform_negatives(users, n_negatives, interacted(split, include_targets=True),
                                  torch.Generator().manual_seed(seed))  # never seen, never the held-out item
    scores = score_pairs(users, torch.cat([targets[:, None], negatives], dim=1))
    auc = auc_against(scores[:, :1], scores[:, 1:], torch.ones_like(negatives, dtype=torch.bool))
    return auc.mean().item(), (auc.std() / math.sqrt(len(auc))).item()


def catalog_evaluation(score_pairs, split: str, batch_users: int = 128) -> dict:
    """Per-user AUC against every unseen item, and HR@10 / NDCG@10 from the same full-catalog scores."""
    users, targets = ds.targets(split)
    sequences = ds.sequences(upto=split)
    every_item = torch.arange(1, ds.n_items + 1)
    aucs, ranks = [], []
    for start in range(0, len(users), batch_users):
        u, t = ids(users[start:start + batch_users]), ids(targets[start:start + batch_users])
        scores = torch.cat([torch.full((len(u), 1), -math.inf), score_pairs(u, every_item.expand(len(u), -1))], 1)
        seen = seen_mask(sequences, u.tolist(), ds.n_items)
        negatives = ~seen
        negatives[:, 0] = False
        negatives[torch.arange(len(u)), t] = False
        aucs.append(auc_against(scores.gather(1, t[:, None]), scores, negatives))
        ranks.append(ranks_from_scores(scores, t, seen))
    metrics = metrics_from_ranks(torch.cat(ranks), ks=(10,))
    return {"AUC": torch.cat(aucs).mean().item(), "HR@10": metrics["HR@10"], "NDCG@10": metrics["NDCG@10"]}


def dlrm_pairs(model, feature_builder):
    return lambda users, candidates: score_candidates(model, feature_builder, users, candidates, device=device)


def popularity_pairs(split: str):
    counts = torch.as_tensor(ds.item_counts(upto=split), dtype=torch.float32)
    return lambda users, candidates: counts[candidates]


train_pairs = interacted("valid")
generator = seed_everything(cfg.train.seed)
model = build_dlrm(builder.spec, cfg).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
k = cfg.train.negatives
steps_per_epoch = math.ceil(len(positives.users) / cfg.train.batch_size)
total_steps = steps_per_epoch * cfg.train.epochs
if cfg.train.max_steps:
    total_steps = min(total_steps, cfg.train.max_steps)
probe = {key: value.to(device) for key, value in batch.items()}  # the batch of part 1, for part 3's plot
with torch.no_grad():
    stack_before = model.feature_vectors(probe).cpu()

popularity_valid = sampled_auc(popularity_pairs("valid"), "valid")
losses, curve, step, train_seconds = [], [(0, *sampled_auc(dlrm_pairs(model, builder), "valid"))], 0, 0.0
timed_steps = 0
progress = tqdm(total=total_steps, desc="DLRM, BCE on uniform negatives")
while step < total_steps:
    start = time.perf_counter()
    order = torch.randperm(len(positives.users), generator=generator)
    for begin in range(0, len(order), cfg.train.batch_size):
        if step >= total_steps:
            break
        idx = order[begin:begin + cfg.train.batch_size]
        u, i, t = positives.users[idx], positives.items[idx], positives.positions[idx]
        negatives = uniform_negatives(u, k, train_pairs, generator)  # (b, k), never a training item of u
        features = builder.batch(torch.cat([u, u.repeat_interleave(k)]), torch.cat([i, negatives.reshape(-1)]),
                                 positions=torch.cat([t, t.repeat_interleave(k)]))
        labels = torch.cat([torch.ones(len(u)), torch.zeros(len(u) * k)]).to(device)
        logits = model({key: value.to(device) for key, value in features.items()})
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        step += 1
        if step == 1:  # the first step pays one-off costs (lazy imports, allocations): time the rest
            start = time.perf_counter()
        else:
            timed_steps += 1
        progress.update(1)
        progress.set_postfix(loss=f"{loss.item():.3f}")
    train_seconds += time.perf_counter() - start
    curve.append((step, *sampled_auc(dlrm_pairs(model, builder), "valid")))
    progress.write(f"step {step}: valid AUC (100 sampled negatives) {curve[-1][1]:.4f} ± {curve[-1][2]:.4f}")
progress.close()
pairs_per_second = timed_steps * cfg.train.batch_size * (1 + k) / max(train_seconds, 1e-9)
print(f"{step} steps ({step / steps_per_epoch:.1f} epochs of {len(positives.users):,} positives, each with {k} "
      f"negatives); steps 2..{step} took {train_seconds:.1f} s, {pairs_per_second:,.0f} pairs/s; "
      f"loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}")

# %%
start = time.perf_counter()
at_test = builder.at(ds, "test")  # the same spec; each user's valid interaction is now part of the history
results = {"popularity": catalog_evaluation(popularity_pairs("test"), "test"),
           "DLRM": catalog_evaluation(dlrm_pairs(model, at_test), "test")}
sampled = {"popularity": sampled_auc(popularity_pairs("test"), "test"), "DLRM": sampled_auc(dlrm_pairs(model, at_test), "test")}
print(f"test split, {len(ds.targets('test')[0]):,} users ({time.perf_counter() - start:.1f} s):\n")
print(f"{'model':<12}{'AUC, catalog':>14}{'AUC, 100 sampled':>20}{'HR@10':>9}{'NDCG@10':>9}")
for name, r in results.items():
    print(f"{name:<12}{r['AUC']:>14.4f}{sampled[name][0]:>13.4f} ± {sampled[name][1]:.4f}{r['HR@10']:>9.4f}"
          f"{r['NDCG@10']:>9.4f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
window = max(1, len(losses) // 30)
axes[0].plot(losses, alpha=0.3, label="per step")
axes[0].plot(np.arange(window - 1, len(losses)), np.convolve(losses, np.ones(window) / window, mode="valid"),
             label=f"mean of {window}")
axes[0].set_xlabel("step")
axes[0].set_ylabel("BCE with logits")
axes[0].set_title("training loss")
axes[0].legend()
steps_axis, auc_axis, err_axis = (np.array(c) for c in zip(*curve))
axes[1].errorbar(steps_axis, auc_axis, yerr=err_axis, marker="o", capsize=3, label="DLRM")
axes[1].axhline(popularity_valid[0], color="grey", linestyle="--", label="popularity")
axes[1].set_xlabel("step")
axes[1].set_ylabel("valid AUC (100 sampled negatives)")
axes[1].set_title(f"{DATASET} ({cfg.preset} preset)")
axes[1].legend(loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# Which one wins, and by how much, is decided by the numbers above:

# %%
dl, pop = results["DLRM"], results["popularity"]
verdict = "beats" if dl["AUC"] > pop["AUC"] else "does not beat"
print(f"On {DATASET}, the DLRM {verdict} popularity on held-out AUC over the whole catalog: {dl['AUC']:.4f} vs "
      f"{pop['AUC']:.4f} ({dl['AUC'] - pop['AUC']:+.4f}); HR@10 {dl['HR@10']:.4f} vs {pop['HR@10']:.4f}. The "
      f"sampled estimates agree with the full-catalog AUC within "
      f"{max(abs(sampled[n][0] - results[n]['AUC']) for n in results):.4f}.")
if dl["AUC"] > pop["AUC"]:
    print("Popularity is one of the DLRM's own features (log_item_count), so matching it is easy for the model; "
          "what it adds comes from the pairs: the user's history and attributes against the item's id and "
          "attributes, through the dot interaction.")
else:
    print(f"With the {cfg.preset} preset the model is under-trained ({step} steps); the laptop preset trains "
          "longer. Uniform negatives are easy, too: the model first learns to tell popular items from the rest.")

# %% [markdown]
# ## Run it, part 3: what the interaction sees
#
# The mean of $Z = T T^\top$ over the batch of 256 training examples of part 1, before and after
# training, for the pairs the top MLP sees: the strict lower triangle (the grey diagonal and upper
# triangle are not passed on). Large entries are the pairs of features whose vectors the model
# learned to align (red) or oppose (blue) on the training examples.

# %%
model.eval()
with torch.no_grad():
    stack_after = model.feature_vectors(probe).cpu()
fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
labels = list(model.feature_names)
kept = np.tril(np.ones((len(labels), len(labels)), dtype=bool), -1)
cmap = plt.get_cmap("RdBu_r").copy()
cmap.set_bad("0.88")  # the diagonal and the upper triangle: never seen by the top MLP
for ax, stack_, title in ((axes[0], stack_before, "untrained"), (axes[1], stack_after, f"after {step} steps")):
    gram = (stack_ @ stack_.transpose(1, 2)).mean(0).numpy()
    limit = float(np.abs(gram[kept]).max()) or 1.0
    image = ax.imshow(np.ma.masked_array(gram, mask=~kept), cmap=cmap, vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_title(f"mean <t_i, t_j>, i > j, over a batch: {title}")
    fig.colorbar(image, ax=ax, fraction=0.046)
plt.tight_layout()
plt.show()
gram_after = (stack_after @ stack_after.transpose(1, 2)).mean(0)
rows_, cols_ = model.interaction.rows.cpu(), model.interaction.cols.cpu()
pairs_after = gram_after[rows_, cols_]
strongest = pairs_after.abs().argsort(descending=True)[:5]
print("largest |mean dot product| after training: " + ", ".join(
    f"{labels[int(rows_[p])]}·{labels[int(cols_[p])]} {float(pairs_after[p]):+.3f}" for p in strongest))

# %% [markdown]
# ## Reflection
#
# 1. The dot interaction has no parameters: every pair of features interacts through the same
#    inner product of their embeddings. What can it not express that a learned interaction can?
#    Think of "this user likes this genre, but only for recent movies": an interaction of three
#    features. Where in DLRM could such a thing still be learned?
# 2. The history bag and `item_id` have separate tables here, so an item's vector as a candidate
#    and as part of a history are unrelated. What would sharing one table change, in parameters and
#    in what the `history · item_id` dot product means? (The two-tower model of session 03 shares.)
# 3. The cost of the interaction grows as $F^2$. A production ranker has hundreds of sparse
#    features. What would you do: group features, project them to fewer vectors first, keep only
#    some pairs?
# 4. Standardisation uses the statistics of the training data. A year later, the catalog's
#    popularity has grown tenfold. What happens to `log_item_count` at serving time, and what would
#    you monitor?
# 5. The feature builder does not count a training example's own interaction in the item's
#    popularity. Suppose it did: every positive would have a count of at least 1, and a sampled
#    negative often 0. What would the model learn from `log_item_count`, and how would it show on
#    the test split, where the held-out interaction is not in the counts?
# 6. **Revisit after R1:** PyEmma's [*Recsys 2025 Paper
#    Summary*](https://pyemma.github.io/Recsys-2025-Paper-Summary) covers SUAN (Stacked Unified
#    Attention Network, [arXiv:2508.15326](https://arxiv.org/abs/2508.15326)). DLRM's interaction
#    is fixed: one dot product per pair of feature vectors, computed the same way for every
#    example, with the top MLP weighing the pairs the same way for everyone. SUAN builds the
#    interaction from attention blocks instead: the user's behaviour sequence, made target-aware
#    by joining the candidate's features to each behaviour, attends to itself (with biases for
#    time and position) and to the user's profile features, and a learned fusion gates how much of
#    each signal passes on, per example. Stacking the blocks raises the order of the interactions,
#    and the paper finds the model keeps improving as it grows (the served model is a lighter,
#    distilled one). Compare the two: which interactions does each compute, what does each cost
#    per candidate, and which parts of `DLRM` (the `extra` vectors, `DotInteraction`) would you
#    replace to move towards it?
#
# **Next:** session 08 trains this model properly: BCE and BPR written by hand, numerically stable,
# and negatives mined from the retriever instead of drawn uniformly.
