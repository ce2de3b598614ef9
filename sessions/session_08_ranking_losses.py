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
# # Session 08 — Ranking losses, hard negatives, and training the ranker
#
# Session 07 built the DLRM and trained it for a few minutes with PyTorch's own loss on
# uniformly drawn negatives. That taught it the easy lesson: popular items are more likely
# than random ones. But the ranker never sees random items. It sees the **retriever's top
# 100**, a hundred items that all look good, and its whole job is to put the right one first.
# Today you write what makes it learn that job:
#
# * the two classic ranking losses, **pointwise** binary cross-entropy and **pairwise** BPR
#   (Rendle et al., 2009), written so that no logit can make them overflow;
# * **hard negatives**: items the trained retriever ranks high for a user at that moment, which
#   the user did not pick; mixed with uniform and popularity negatives as in Yang et al. (2020);
# * the loss that session 05's training loop calls, so the ranker trains with the very
#   schedule, clipping, mixed precision and checkpoints you wrote there.
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `bce_with_logits` | pointwise loss on logits, exact at any logit (±100 included) |
# | 2 | `bpr_loss` | pairwise loss, $-\log\sigma(s^+ - s^-)$, stable, one or many negatives per positive |
# | 3 | `mine_hard_negatives` | negatives drawn from the retriever's top-K, the user's positives removed |
# | 4 | `mixed_negatives` | uniform, popularity and hard negatives in given proportions |
# | 5 | `ranking_loss` | the `loss_fn(model, batch)` of session 05's `fit`: one forward, groups, BCE or BPR |
#
# The workbook provides the sampling utilities around them (`harness.pipeline.ranking`: the
# retriever's query before every training example, the hard-negative pools, the batches) and
# `train_ranker`, which hands everything to session 05's `fit`. The run-it part trains four
# rankers side by side, pointwise vs pairwise and uniform vs hard negatives, and compares them on
# the validation split: on the retriever's candidates, which is where a ranker earns its keep.
#
# **Before:** [readings/session_08.md](../readings/session_08.md): Rendle et al., *BPR* (Sections
# 1–4), Burges on RankNet and LambdaRank, the `BCEWithLogitsLoss` and `logsigmoid` docs (about an hour).

# %% tags=["export"]
import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from harness.autograder.loader import upstream

SOURCES = ("uniform", "popularity", "hard")  # mixed_negatives codes its columns 0, 1, 2 in this order

# %%
from harness import Checker

check = Checker(session=8, namespace=globals())

# %% [markdown]
# ## 1. Pointwise: binary cross-entropy on logits
#
# The DLRM returns a **logit** $x$ per (user, item) pair, $p = \sigma(x) = 1/(1 + e^{-x})$ the
# probability of an interaction. With label $y \in \{0, 1\}$ (or a soft label in $[0, 1]$), the
# negative log-likelihood is
#
# $$\ell(x, y) = -\,y \log \sigma(x) - (1 - y) \log\bigl(1 - \sigma(x)\bigr).$$
#
# Computed as written it breaks in float32. For $x = 100$, $\sigma(x)$ rounds to exactly 1.0 and
# $\log(1 - 1) = -\infty$; for $x = -100$, $\sigma(x) = 3.7 \cdot 10^{-44}$ is below float32's
# smallest normal number and $\log$ of what is left is garbage, or $-\infty$ at $x = -104$. Even
# where it stays finite, its gradient goes through $1/\sigma(x)$ and $1/(1-\sigma(x))$, which
# overflow first. A confidently wrong logit then gives an infinite or NaN loss, and one NaN
# gradient poisons every weight (session 05's NaN guard would stop the run).
#
# The fix is algebra. With $\log\sigma(x) = -\log(1 + e^{-x})$ and $\log(1 - \sigma(x)) =
# -x - \log(1 + e^{-x})$:
#
# $$\ell(x, y) = (1 - y)\,x + \log(1 + e^{-x}) = \max(x, 0) - x\,y + \log\bigl(1 + e^{-|x|}\bigr).$$
#
# The last form is the one to compute: $e^{-|x|} \le 1$ never overflows, and `torch.log1p(z)`
# computes $\log(1 + z)$ exactly for tiny $z$ (where `log(1 + z)` rounds $1 + z$ to 1 and
# returns 0: a confidently *right* example would have a loss of exactly 0 instead of
# $e^{-30} \approx 10^{-13}$). Its gradient is the famous $\partial\ell/\partial x = \sigma(x) - y$:
# bounded by 1 in absolute value, whatever $x$ is.
#
# The next cell shows the naive formula failing where the stable one (here PyTorch's) does not:

# %%
x = torch.tensor([-100.0, -30.0, 0.0, 30.0, 100.0], requires_grad=True)
for y_value in (1.0, 0.0):
    y = torch.full_like(x, y_value)
    naive = -(y * torch.log(torch.sigmoid(x)) + (1 - y) * torch.log(1 - torch.sigmoid(x)))
    (grad_naive,) = torch.autograd.grad(naive.sum(), x)
    stable = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    (grad_stable,) = torch.autograd.grad(stable.sum(), x)
    print(f"y = {y_value:.0f}  logits      {x.tolist()}")
    print(f"       naive loss  {[f'{v:.3g}' for v in naive.tolist()]}   gradient {[f'{v:.3g}' for v in grad_naive.tolist()]}")
    print(f"       stable loss {[f'{v:.3g}' for v in stable.tolist()]}   gradient {[f'{v:.3g}' for v in grad_stable.tolist()]}")

# %% [markdown]
# ## Exercise 1 — `bce_with_logits`
#
# Write the stable form with elementwise tensor operations (`clamp_min`, `abs`, `exp`, `log1p`),
# not with `F.binary_cross_entropy_with_logits`, `F.softplus` or `F.logsigmoid`: the point is to
# know why they are written the way they are. Labels may be bool, int or float (soft labels in
# $[0, 1]$ are allowed): convert them to the logits' dtype. One detail of autograd: at exactly
# $x = 0$, $\max(x, 0)$ and $|x|$ have kinks and autograd picks one subgradient each, so the
# gradient there comes out as $1 - y$ instead of $\tfrac12 - y$. It is harmless (a logit is
# almost never exactly 0 twice), and `torch.logaddexp(x, 0)` would avoid it; the autograder never
# asks for a gradient at exactly 0.

# %% tags=["export"]
def bce_with_logits(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of ``sigmoid(logits)`` against ``labels``, computed without overflow.

    Args:
        logits: float tensor of any shape (the model's raw scores, no sigmoid applied).
        labels: the same shape; bool, int or float in [0, 1] (soft labels allowed).
        reduction: ``"mean"`` (over every element), ``"sum"``, or ``"none"`` (elementwise).

    Returns:
        ``max(x, 0) - x * y + log1p(exp(-|x|))``, reduced: a scalar, or a tensor shaped like ``logits``
        for ``"none"``, in the logits' dtype; finite (with finite gradients) for any finite logits.

    Raises:
        ValueError: for any other ``reduction``.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    # YOUR CODE HERE
    raise NotImplementedError("exercise 1 `bce_with_logits` (session 08) is not implemented yet: replace this line with your code")


# %%
check("bce_with_logits")

# %% [markdown]
# ## 2. Pairwise: Bayesian Personalized Ranking
#
# BCE asks "is this item an interaction?" of every pair on its own, and with implicit feedback the
# question is ill-posed: an unobserved item is not a *dislike*, it is an item the user has not met
# (yet). Rendle et al. ask a question that the data can answer: **does the user prefer the item they
# interacted with over one they did not?** With the model's scores $s^+$ of the positive and $s^-$ of
# a negative of the same user, and $P(+ \succ -) = \sigma(s^+ - s^-)$, maximising the likelihood of
# the observed preferences gives the BPR loss
#
# $$\ell_{\text{BPR}} = -\log \sigma\bigl(s^+ - s^-\bigr) = \log\bigl(1 + e^{-(s^+ - s^-)}\bigr),
#   \qquad \frac{\partial \ell}{\partial s^-} = \sigma\bigl(s^- - s^+\bigr).$$
#
# Only the *difference* of the scores matters: adding a constant to every score of a user changes
# nothing, so a BPR-trained model's scores are no probabilities (BCE's are, if it is well
# trained). That is exactly what ranking needs, and what ranking metrics measure. The gradient
# tells which pairs teach: a negative already far below the positive ($s^- \ll s^+$) gets a gradient
# near 0, one scored above it gets nearly 1. Easy (uniform) negatives stop teaching early; hard
# ones keep teaching. (RankNet, in the reading, is the same loss on pairs of documents.)
#
# $-\log\sigma(d)$ is BCE with label 1 on the logit $d$, so it has the same stable form;
# `F.logsigmoid(d)` computes $\log\sigma(d)$ that way (`torch.log(torch.sigmoid(d))` returns $-\infty$
# for $d = -104$ in float32, and NaN gradients before that).
#
# ## Exercise 2 — `bpr_loss`
#
# Each row $b$ has one positive score and one or $N$ negative scores, compared with *that* row's
# positive only. Mind the broadcasting: `pos - neg` with `pos` of shape `(B,)` and `neg` of shape
# `(B, N)` lines `pos` up with the *columns* of `neg` (it compares user $j$'s positive with user
# $b$'s $j$-th negative, silently, when $B = N$), and `pos[:, None] - neg[None, :]` with `neg` of
# shape `(B,)` compares every positive with every user's negative. The mean is over all $B \cdot N$ pairs.

# %% tags=["export"]
def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BPR: ``-log sigmoid(pos - neg)`` for each (positive, negative) pair of the same row, computed stably.

    Args:
        pos_scores: float (B,), the score of each row's positive.
        neg_scores: float (B,) (one negative per row) or (B, N) (N negatives per row).
        reduction: ``"mean"`` over all pairs, ``"sum"``, or ``"none"`` (a (B,) or (B, N) tensor, like ``neg_scores``).

    Returns:
        the loss, finite with finite gradients for any finite scores.

    Raises:
        ValueError: for any other ``reduction``, or when ``neg_scores`` has another number of rows than ``pos_scores``.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if neg_scores.shape[0] != pos_scores.shape[0] or neg_scores.ndim not in (1, 2):
        raise ValueError(f"neg_scores must be (B,) or (B, N) with B = {pos_scores.shape[0]}, got {tuple(neg_scores.shape)}")
    # YOUR CODE HERE
    raise NotImplementedError("exercise 2 `bpr_loss` (session 08) is not implemented yet: replace this line with your code")


# %%
check("bpr_loss")

# %% [markdown]
# The two losses and their gradients against the score, for a positive (label 1) and a negative
# (label 0) under BCE, and against the difference $s^+ - s^-$ under BPR. BCE pushes every score
# towards its label's side of 0 on its own; BPR only cares that the positive is ahead, and by how much.

# %%
import matplotlib.pyplot as plt

grid = torch.linspace(-8, 8, 401, requires_grad=True)
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4))
for label, style in ((1.0, "-"), (0.0, "--")):
    loss = bce_with_logits(grid, torch.full_like(grid, label), reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), grid)
    axes[0].plot(grid.detach(), loss.detach(), style, color="tab:blue", label=f"BCE, label {label:.0f}")
    axes[1].plot(grid.detach(), grad.detach(), style, color="tab:blue", label=f"BCE, label {label:.0f}")
bpr = bpr_loss(grid, torch.zeros_like(grid), reduction="none")
(grad_bpr,) = torch.autograd.grad(bpr.sum(), grid)
axes[0].plot(grid.detach(), bpr.detach(), color="tab:red", label="BPR, against s+ - s-")
axes[1].plot(grid.detach(), grad_bpr.detach(), color="tab:red", label="BPR, d loss / d s+")
axes[0].set_ylabel("loss")
axes[1].set_ylabel("gradient")
for ax in axes:
    ax.set_xlabel("logit x (BCE) or score difference s+ - s- (BPR)")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Which negatives? The ones the ranker will face
#
# A ranker trained on uniform negatives learns to tell the catalog's average item from an
# interaction: mostly a matter of popularity, which one of its features spells out. Behind a
# retriever it never sees average items: every candidate already survived the retriever's cut. The
# remedy (Huang et al. 2020 at Facebook Search, and most industrial rankers) is to train on **hard
# negatives mined from the retriever**: for a training example (user $u$ at position $t$, target
# $i_t$), run the trained retriever on what $u$ had seen *before* $t$, take its top-K, and draw the
# negatives from those, minus the user's positives.
#
# ```
#  user u:  i_1  i_2  ...  i_{t-1}  │ i_t (target)  i_{t+1} ...
#           └── history before t ──┘
#                     │ retriever (session 05's tower; exact scores over the catalog, session 06's mask_seen)
#                     ▼
#           top-K:  j_1  j_2  j_3 ... j_K      ── minus the user's positives ──► draw n negatives
# ```
#
# Two rules keep it honest:
#
# * **No future in the query.** The query of the example at $t$ is the retriever's user vector from
#   items $< t$ only. A query built from the whole training sequence has seen $i_t$ and the items
#   after it: the mined "negatives" would be the neighbours of the target itself, and the retrieval
#   score feature (section 6) would know the answer. The workbook's `RetrieverView.position_queries`
#   reads the causal tower's outputs position by position (two forward passes over the training data, not
#   one per example), and its tests check that changing a user's later items leaves earlier queries unchanged.
# * **Positives are never negatives.** The target, the history, and (a choice the workbook makes)
#   every later training interaction of the user: an item the user picks next week is not a negative
#   today. The exercise takes them as `exclude`.
#
# Which of the remaining candidates? Taking always the top few makes the hardest possible negatives,
# and many of them are **unlabelled positives**: items the user would like but has not met. Huang et
# al. found that negatives from ranks 101–500 beat those from the very top; `skip_top` drops the first
# ranks, and drawing uniformly *among* the rest keeps each epoch's negatives fresh.
#
# ## Exercise 3 — `mine_hard_negatives`
#
# Vectorised, for a batch of examples. The membership test of session 06's `search_excluding_seen`
# works here too: sort each row of `exclude` (with a 0 column, so padding is dropped by the same test),
# `torch.searchsorted` each candidate into its own row. To draw $n$ of the eligible candidates
# uniformly without replacement, give each a random key (`torch.rand(..., generator=generator)`),
# give the ineligible ones a key below every eligible one, and keep the $n$ largest keys
# (`torch.topk` or a sort). Rows with fewer than $n$ eligible candidates return all of them,
# then zeros. Never write into the caller's tensors.

# %% tags=["export"]
def mine_hard_negatives(candidates: torch.Tensor, exclude: torch.Tensor, n: int, *,
                        generator: torch.Generator | None = None, skip_top: int = 0) -> torch.Tensor:
    """Negatives drawn from the retriever's top-K candidates of each example, its positives removed.

    Args:
        candidates: int64 (B, K), each example's retrieved items, best first, distinct; 0 = padding.
        exclude: int64 (B, S), the items that must never be a negative of the row (at least its
            history and its target), padded with 0.
        n: negatives per row.
        generator: the source of randomness (the global RNG is untouched when it is given).
        skip_top: ignore the first ``skip_top`` candidates of every row.

    Returns:
        int64 (B, n): for each row, ``n`` distinct items drawn uniformly without replacement from its
        eligible candidates (in ``candidates[b, skip_top:]``, not in ``exclude[b]``, not 0), in random
        order. A row with m < n eligible candidates gets all m of them first, then n - m zeros.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 3 `mine_hard_negatives` (session 08) is not implemented yet: replace this line with your code")


# %%
check("mine_hard_negatives")

# %% [markdown]
# ## 4. Mixed negative sampling
#
# Hard negatives alone make a fragile ranker: it sees only items that look good, never learns that a
# random item is bad (the serving path does send it some: a cold user's fallback list, an IVF that
# probed the wrong lists), and it overfits the retriever's blind spots. Yang et al. (2020) showed for
# two-tower retrievers that **mixing** two sources of negatives, the in-batch ones (distributed like
# popularity) and uniform ones from the whole catalog, beats either alone; Huang et al. found the same
# for hard and random negatives. The ranker's recipe here mixes three:
#
# | source | drawn from | teaches |
# | --- | --- | --- |
# | uniform | every item the user has not interacted with | "a random item is not it" |
# | popularity | $P(i) \propto \text{count}(i)^{\alpha}$ (session 02's `popularity_distribution`) | "popular is not enough" |
# | hard | the retriever's top-K at that moment (exercise 3) | "this good candidate is not it" |
#
# in proportions given by `shares` (normalised: `{"uniform": 1, "hard": 1}` is half and half). Turning
# shares into counts that add up to exactly $n$ is the *largest remainder* method: each source gets
# $\lfloor n \cdot \text{share} \rfloor$, and the negatives left over go one each to the sources with the
# largest fractional parts (ties in the order uniform, popularity, hard). Rounding each share on its own
# can hand out $n \pm 1$ negatives: with $n = 5$ and three equal shares, `round(5 / 3) = 2` each, 6 in all.
#
# Uniform and popularity draws are session 02's `sample_negatives` (with replacement, positives
# rejected), through `upstream(2)`: your session 02 code, or the reference. A row whose hard pool runs
# short (an example with no history has no retriever query, hence no candidates) gets uniform
# negatives in the missing slots, marked as uniform in `source`.
#
# ## Exercise 4 — `mixed_negatives`

# %% tags=["export"]
def mixed_negatives(n: int, shares: Mapping[str, float], *, candidates: torch.Tensor, exclude: torch.Tensor,
                    probs: torch.Tensor, generator: torch.Generator | None = None,
                    skip_top: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` negatives per row: uniform, popularity and hard ones in the proportions of ``shares``.

    Args:
        n: negatives per row.
        shares: ``{"uniform": a, "popularity": b, "hard": c}``, non-negative weights with a positive sum
            (missing sources count 0; normalised). Counts per source by the largest remainder method:
            ``floor(n * share)``, the leftover ones to the largest fractional parts, ties in ``SOURCES`` order.
        candidates: int64 (B, K), the retriever's top-K per row, for the hard negatives (exercise 3).
        exclude: int64 (B, S), the row's positives, padded with 0: never a negative, from any source.
        probs: float (n_items + 1,), the popularity distribution (``probs[0] = 0``); uniform draws use
            every item 1..n_items equally.
        generator: every random draw uses it.
        skip_top: passed to ``mine_hard_negatives``.

    Returns:
        ``(negatives, source)``: int64 (B, n) item ids, the uniform columns first, then popularity, then
        hard; and int64 (B, n) with each negative's source as an index into ``SOURCES`` (0 uniform,
        1 popularity, 2 hard). Missing hard negatives (fewer eligible candidates than asked) are
        replaced by uniform draws, with source 0. Never 0, never an excluded item.

    Raises:
        ValueError: a share is negative, all are 0, or a key is not in ``SOURCES``.
    """
    unknown = set(shares) - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown negative source(s) {sorted(unknown)}: use {SOURCES}")
    # YOUR CODE HERE
    raise NotImplementedError("exercise 4 `mixed_negatives` (session 08) is not implemented yet: replace this line with your code")


# %%
check("mixed_negatives")

# %% [markdown]
# ## 5. The loss that the training loop calls
#
# Session 05's `fit` trains anything given `loss_fn(model, batch) -> scalar`. The ranker's batches come
# from the workbook's collate function (`harness.pipeline.ranking.RankingCollate`): $B$ positives, each
# with its $n$ negatives featurised *at the positive's position* (same user, same history, same
# retrieval query), laid out in **groups** of $G = 1 + n$ consecutive rows, the positive first:
#
# ```
#  row:     0     1 ... n    │ n+1   n+2 ... 2n+1 │ ...      batch["group_size"] = G = 1 + n
#          pos_0 negatives_0 │ pos_1 negatives_1  │ ...      every feature tensor has B * G rows
# ```
#
# One forward pass scores all $B \cdot G$ rows; `.view(B, G)` puts each group in a row, the positive in
# column 0 (`.view(G, B)` would mix groups, and nothing would complain). Then
#
# * **pointwise** (`loss="bce"`): `bce_with_logits` on every entry of the $(B, G)$ matrix, labels 1 in
#   column 0 and 0 elsewhere, averaged over all $B \cdot G$ entries;
# * **pairwise** (`loss="bpr"`): `bpr_loss(scores[:, 0], scores[:, 1:])`: each positive against its own
#   negatives, never against itself.
#
# No sigmoid anywhere in between: the model returns logits, and both losses take logits. And compute the
# loss in float32 (`.float()` on the logits): under autocast on a GPU (session 05) the model's logits come
# out in bf16 or fp16, whose 3 significant digits are plenty for a forward pass and too few for a loss.
#
# ## Exercise 5 — `ranking_loss`

# %% tags=["export"]
def ranking_loss(model: nn.Module, batch: Mapping, *, loss: str = "bce") -> torch.Tensor:
    """The ranker's training loss on a batch of groups (a ``loss_fn`` for session 05's ``fit``).

    Args:
        model: a ranker; ``model(batch)`` returns float (B * G,) logits, one per row of the batch.
        batch: feature tensors with B * G rows, in groups of ``G = batch["group_size"]`` consecutive rows,
            the positive first and its ``G - 1`` negatives after it.
        loss: ``"bce"`` (pointwise, over all B * G rows: label 1 for positives, 0 for negatives) or
            ``"bpr"`` (pairwise: each positive against the negatives of its own group).

    Returns:
        the mean loss, a float32 scalar tensor (from one forward pass of ``model``; bf16 or fp16 logits,
        as autocast makes them, are cast to float32 first).

    Raises:
        ValueError: for another ``loss``.
    """
    if loss not in ("bce", "bpr"):
        raise ValueError(f"loss must be 'bce' or 'bpr', got {loss!r}")
    # YOUR CODE HERE
    raise NotImplementedError("exercise 5 `ranking_loss` (session 08) is not implemented yet: replace this line with your code")


# %%
check("ranking_loss")

# %% [markdown]
# ## 6. Training the ranker with session 05's loop (provided)
#
# `harness.pipeline.ranking.train_ranker(data, variant, cfg, loss_fn=ranking_loss, sampler=mixed_negatives)`
# wires your pieces into the loop you wrote in session 05, with nothing copied:
#
# * the model: session 07's `build_dlrm` at the sizes of `harness/configs/dlrm.yaml`; its features from
#   `FeatureBuilder.fit(ds, "valid")` (training interactions only), plus, optionally, one dense feature
#   **`retrieval_score`**: the retriever's cosine of (the example's query, the item). The ranker then
#   starts from the retriever's opinion and learns how to correct it;
# * the batches: `RankingCollate` draws each positive's negatives with *your* `mixed_negatives` from the
#   precomputed hard pools (`RankingData`: the retriever's top-K for every training example, from the
#   history before it) and featurises the groups;
# * the loop: session 04's `build_optimizer` (AdamW, no decay on embeddings), a `LambdaLR` of session
#   05's `warmup_cosine`, and session 05's `fit` (its `train_step`: clipping, autocast on a GPU, the NaN
#   guard; logging to W&B, offline), with *your* `ranking_loss` as `loss_fn`;
# * **model selection on the validation split**: after every epoch, `fit`'s `eval_fn` reranks the
#   retriever's top-K for each user's validation item, and the weights of the epoch with the best
#   validation NDCG@10 are kept (early stopping). The test split is never looked at in this session;
#   session 10 evaluates the chosen rankers on it once.
#
# The dense features, the history bag and the negatives of a training example all stop before its
# target (session 07's feature builder, the position queries above): nothing the ranker trains on has
# seen the answer.

# %% [markdown]
# ## Run it, part 1: the retriever and its hard negatives
#
# The retrievers are the pipeline's own: the two-tower stages of `harness.pipeline.retrieval` train
# them with session 05's `train_two_tower`, or load them in a second from `runs/pipeline/` when
# `python -m harness pipeline` (or an earlier notebook) trained them on the same data, config and code.
# As in the pipeline, the ranker mines from the one with the best **validation** NDCG@10.

# %%
import os

import numpy as np

from harness.pipeline import ranking

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
ctx, cfg = ranking.notebook_context(DATASET, ("two-tower-mean", "two-tower-transformer"))
ds = ctx.dataset
data = ranking.ranking_data(ctx)

# %% [markdown]
# What the sources look like for one training example: the target, and the negatives each source
# would draw for it, with the retriever's score of each (the cosine of the example's query and the
# item). The hard ones score close to the target; uniform ones do not.

# %%
titles = ds.item_titles
generator = torch.Generator().manual_seed(0)
row = int(torch.nonzero(data.has_query & (data.positives.positions >= 20))[0])
user, target = int(data.positives.users[row]), int(data.positives.items[row])
query = data.queries[row:row + 1]
exclude = data.exclude(data.positives.users[row:row + 1])
pool = data.pool[row:row + 1].long()
show = {"hard": mine_hard_negatives(pool, exclude, 5, generator=generator),
        "popularity": upstream(2).sample_negatives(data.probs, exclude, 5, generator=generator),
        "uniform": mixed_negatives(5, {"uniform": 1}, candidates=pool, exclude=exclude, probs=data.probs,
                                   generator=generator)[0]}
score = lambda items: ranking.candidate_scores(data.view, query, items)[0]  # noqa: E731
print(f"user {user}, position {int(data.positives.positions[row])}: target {titles[target]!r} "
      f"(retriever score {float(score(torch.tensor([[target]]))[0]):.3f})")
for name, items in show.items():
    print(f"  {name:>10}: " + "; ".join(f"{titles[int(i)][:28]} ({float(s):.2f})" for i, s in zip(items[0], score(items))))

# %% [markdown]
# And over many examples: the distribution of the retriever's score for the targets and for each
# source's negatives (a sample of 2,000 training examples). Hard negatives sit where the targets
# are; that is what makes them hard. A pool can also hold the user's *own* later choice: the items the
# user rated in the validation and test splits are not training interactions, so they are not
# excluded, and the cell counts how often they hide in the pools.

# %%
rows = torch.nonzero(data.has_query).squeeze(1)
rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(1))[:2000]]
users_s = data.positives.users[rows]
ex = data.exclude(users_s)
draws = {"uniform": mixed_negatives(8, {"uniform": 1}, candidates=data.pool[rows].long(), exclude=ex,
                                    probs=data.probs, generator=generator)[0],
         "popularity": upstream(2).sample_negatives(data.probs, ex, 8, generator=generator),
         "hard": mine_hard_negatives(data.pool[rows].long(), ex, 8, generator=generator)}
fig, ax = plt.subplots(figsize=(8, 3.4))
bins = np.linspace(-0.6, 1.0, 60)
target_scores = ranking.candidate_scores(data.view, data.queries[rows], data.positives.items[rows, None])[:, 0]
ax.hist(target_scores.numpy(), bins=bins, density=True, histtype="step", linewidth=2, color="black", label="targets")
for name, items in draws.items():
    s = ranking.candidate_scores(data.view, data.queries[rows], items)
    ax.hist(s[torch.isfinite(s)].numpy(), bins=bins, density=True, alpha=0.45, label=f"{name} negatives")
ax.set_xlabel("retriever score (cosine of the example's query and the item)")
ax.set_ylabel("density")
ax.legend()
plt.tight_layout()
plt.show()
later = {}
for split in ("valid", "test"):
    u_split, t_split = ds.targets(split)
    item_of = np.zeros(ds.n_users + 1, dtype=np.int64)
    item_of[u_split] = t_split
    later[split] = float((data.pool[rows].long() == torch.from_numpy(item_of[users_s.numpy()])[:, None]).any(1)
                         .float().mean())
print(f"share of hard pools (top {data.pool.shape[1]}) holding the user's validation item: {later['valid']:.1%}, "
      f"test item: {later['test']:.1%}: unlabelled positives the ranker is told to push down")

# %% [markdown]
# ## Run it, part 2: pointwise vs pairwise, uniform vs hard negatives
#
# Four rankers, identical but for the loss and the negatives: {BCE, BPR} × {uniform only, the mix of
# `cfg.negatives` (a quarter uniform, a quarter popularity, half hard)}. All four use the retrieval
# score feature. Each is trained by `train_ranker` with **your** `ranking_loss` and `mixed_negatives`,
# capped at `cfg.fit.max_minutes` of wall clock (`WORKBOOK_PRESET=smoke` makes it seconds).

# %%
variants = {
    "BCE, uniform": ranking.Variant("bce-uniform", loss="bce", shares=ranking.uniform_shares()),
    "BCE, mixed hard": ranking.Variant("bce-mixed", loss="bce"),
    "BPR, uniform": ranking.Variant("bpr-uniform", loss="bpr", shares=ranking.uniform_shares()),
    "BPR, mixed hard": ranking.Variant("bpr-mixed", loss="bpr"),
}
models, results = {}, {}
for label, variant in variants.items():
    models[label], results[label] = ranking.train_ranker(data, variant, cfg, device=ctx.device, loss_fn=ranking_loss,
                                                         sampler=mixed_negatives, log=lambda line: None)
    r = results[label]
    print(f"{label:>16}: {r['steps']} steps in {r['seconds']:.0f} s ({r['pairs_per_second']:,.0f} pairs/s, stopped "
          f"by {r['stopped_by']}); loss {r['history'][0]['loss']:.3f} -> {r['final_loss']:.3f}; selected epoch "
          f"{r['selected_epoch']}: valid NDCG@10 {r['valid']['NDCG@10']:.4f}")

# %% [markdown]
# ## Run it, part 3: side by side, on the validation split
#
# Three views of each ranker, all on the **validation** split (each user's second-to-last item, never
# trained on; the test split stays untouched until session 10):
#
# * **reranking the retriever's top-K** (`cfg.candidates.K`): HR@10 and NDCG@10 of the candidates
#   reordered by the ranker, against the retriever's own order. This is the ranker's job;
# * **AUC against 100 uniform negatives**: how well it tells the held-out item from the catalog at
#   large (session 07's measure; session 09's `auc`);
# * **AUC against the hard candidates**: the held-out item against the retriever's other top-K items.
#   Where the retriever missed the held-out item, every candidate scored above it by the retriever, so
#   this AUC is low for everyone (the retriever's own is the first row); a ranker raises it by lifting
#   the held-out item over the retriever's near-misses.

# %%
valid = data.valid
retriever_only = ranking.rerank_metrics(valid, valid.retrieval, ks=(10,))
comparison = {"retriever alone": {
    "HR@10": retriever_only["HR@10"], "NDCG@10": retriever_only["NDCG@10"],
    "AUC, uniform": float(ranking.ranker_auc(None, data, None, valid, negatives="uniform").mean()),
    "AUC, hard": float(ranking.ranker_auc(None, data, None, valid, negatives="hard").mean())}}
for label, model in models.items():
    variant = variants[label]
    scores = ranking.rank_candidates(model, data.builder_for(variant, "valid"), valid, variant)
    m = ranking.rerank_metrics(valid, scores, ks=(10,))
    comparison[label] = {"HR@10": m["HR@10"], "NDCG@10": m["NDCG@10"],
                         "AUC, uniform": float(ranking.ranker_auc(model, data, variant, valid, negatives="uniform").mean()),
                         "AUC, hard": float(ranking.ranker_auc(model, data, variant, valid, negatives="hard").mean())}
ceiling = retriever_only[f"Recall@{valid.items.shape[1]} (ceiling)"]
print(f"validation split, {len(valid):,} users; the retriever's top {valid.items.shape[1]} holds the held-out item "
      f"for {ceiling:.1%} of them (the ceiling of any reranking)\n")
print(f"{'':>16}{'HR@10':>9}{'NDCG@10':>10}{'AUC, uniform':>14}{'AUC, hard':>11}")
for label, m in comparison.items():
    print(f"{label:>16}{m['HR@10']:>9.4f}{m['NDCG@10']:>10.4f}{m['AUC, uniform']:>14.4f}{m['AUC, hard']:>11.4f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
names = list(comparison)
colors = ["grey", "tab:blue", "tab:cyan", "tab:red", "tab:orange"]
for ax, metric in zip(axes[:2], ("NDCG@10", "AUC, hard")):
    values = [comparison[n][metric] for n in names]
    bars = ax.bar(range(len(names)), values, color=colors)
    ax.bar_label(bars, fmt="%.3f")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_title(f"validation {metric}" + (" (reranked top-K)" if metric == "NDCG@10" else ""))
for label, r in results.items():
    evals = r["evals"]
    axes[2].plot([e["step"] for e in evals], [e["NDCG@10"] for e in evals], marker="o", label=label,
                 color=colors[names.index(label)])
axes[2].axhline(retriever_only["NDCG@10"], color="grey", linestyle="--", label="retriever alone")
axes[2].set_xlabel("step")
axes[2].set_ylabel("valid NDCG@10, reranked")
axes[2].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# What the numbers say (each sentence is decided by the table above, not written in advance):

# %%
best_label = max(models, key=lambda n: comparison[n]["NDCG@10"])
base = comparison["retriever alone"]["NDCG@10"]
print(f"Best on validation NDCG@10: {best_label} ({comparison[best_label]['NDCG@10']:.4f} vs the retriever's own order "
      f"{base:.4f}, {comparison[best_label]['NDCG@10'] - base:+.4f}).")
def moves(before: float, after: float) -> str:
    return "raise" if after > before else "lower" if after < before else "leave"


for loss_name in ("BCE", "BPR"):
    u, h = comparison[f"{loss_name}, uniform"], comparison[f"{loss_name}, mixed hard"]
    print(f"{loss_name}: the mixed hard negatives {moves(u['NDCG@10'], h['NDCG@10'])} the reranked NDCG@10 "
          f"({u['NDCG@10']:.4f} -> {h['NDCG@10']:.4f}), {moves(u['AUC, hard'], h['AUC, hard'])} the AUC against the hard "
          f"candidates ({u['AUC, hard']:.4f} -> {h['AUC, hard']:.4f}) and {moves(u['AUC, uniform'], h['AUC, uniform'])} "
          f"the AUC against uniform negatives ({u['AUC, uniform']:.4f} -> {h['AUC, uniform']:.4f}).")
for neg in ("uniform", "mixed hard"):
    p, q = comparison[f"BCE, {neg}"], comparison[f"BPR, {neg}"]
    print(f"With {neg} negatives, pairwise BPR {'beats' if q['NDCG@10'] > p['NDCG@10'] else 'does not beat'} pointwise "
          f"BCE on reranked NDCG@10 ({p['NDCG@10']:.4f} vs {q['NDCG@10']:.4f}).")
print(f"With {len(valid):,} validation users, differences of a few thousandths are within noise; session 10 puts "
      "bootstrap intervals on them.")

# %% [markdown]
# ## Reflection
#
# 1. Derive the gradient of BPR's $-\log\sigma(s^+ - s^-)$ with respect to $s^-$. When is it largest, and
#    what does that imply for easy negatives late in training? Compare with BCE on the negative alone.
# 2. Your mined negatives come from the retriever's top 100. The cell of part 1 measured how often the
#    user's validation or test item is among them: how many "negatives" are really the positive of a
#    later step? What would you do about it (`skip_top`, a lower weight, removing near-duplicates)?
# 3. A ranker trained with BPR outputs scores with no absolute meaning. Name a product feature that
#    needs calibrated probabilities instead, and how you would get them from a BPR-trained model.
# 4. Why would a ranker trained only on uniform negatives look excellent in a full-catalog evaluation
#    and disappoint behind a retriever? Which column of the table above shows it?
# 5. **Revisit after R1:** PyEmma's [*A Random Walk Down Recsys, Part 1*](https://pyemma.github.io/A-Random-Walk-Down-Recsys/)
#    describes production generative recommenders that mix contrastive (InfoNCE) and ranking objectives.
#    Your retriever was trained with a softmax over in-batch items, your ranker with BCE or BPR on a
#    handful of negatives. What would a listwise softmax over each group (the positive and its $n$
#    negatives) change in `ranking_loss`, and when would you expect it to beat both?
#
# **After:** [readings/session_08.md](../readings/session_08.md): Huang et al. on hard negative
# mining, Klenitskiy and Vasilev on losses for sequential recommenders, Yang et al.'s method section.
# **Next:** session 09 writes the offline metrics (NDCG, MAP, MRR, AUC) that these comparisons rest on,
# and session 10 evaluates retrieve → rank on the test split, with confidence intervals.
