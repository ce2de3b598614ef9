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
# # Session 09 — Offline metrics: NDCG, MAP, MRR, hit rate and AUC
#
# Until now every number came from `harness.evaluation`, which knows one situation: one held-out
# item per user, ranked against the catalog. A ranker is judged on more than that: several relevant
# items per user, **graded** relevance (a 5-star rating is worth more than a 2-star one), lists of
# candidates of different lengths, and pairwise quality (AUC) on positives against negatives.
# Today you write the standard metrics yourself, batched over users, with definitions that hold
# at the edges (ties, padding, users with nothing relevant), and check them against
# scikit-learn, against hand-worked examples and against the harness. Session 10 imports them to
# evaluate the whole retrieve → rank pipeline with bootstrap confidence intervals.
#
# ```
#   scores (B, N)  ──► sort each row, best first ──► labels in ranked order ──► DCG / NDCG@K, AP@K, RR, HR@K
#   labels (B, N)       (ties: column order,          (padding last, as 0)
#   mask   (B, N)        padding after everything)
#                  ──► every (relevant, non-relevant) pair ──► AUC per user, and over all users' pairs pooled
# ```
#
# You write eight functions:
#
# | # | exercise | what it computes, per user |
# | --- | --- | --- |
# | 1 | `ranked_labels` | the labels in ranked order: a stable descending sort of the scores, padding last |
# | 2 | `dcg_at_k` | discounted cumulative gain of the top K, gain $2^{rel} - 1$ (or linear), discount $1/\log_2(i + 1)$ |
# | 3 | `ndcg_at_k` | DCG@K over the ideal DCG@K of *all* the user's relevant candidates |
# | 4 | `average_precision_at_k` | AP@K: precision at each relevant position, over $\min(K, \lvert R\rvert)$ |
# | 5 | `reciprocal_rank` | 1 / the position of the first relevant candidate (its mean is MRR) |
# | 6 | `hit_rate_at_k` | 1 if any relevant candidate is in the top K |
# | 7 | `auc` | share of (relevant, non-relevant) pairs scored in the right order, ties one half |
# | 8 | `global_auc` | the same over the pooled pairs of all users (the number a CTR model reports) |
#
# Then you compute every metric for the popularity baseline and a trained two-tower model, show that
# they agree with `harness.evaluation` on the same lists, plot NDCG@K against K, evaluate graded
# relevance with MovieLens ratings, and see when MAP, MRR and NDCG disagree.
#
# **Before:** [readings/session_09.md](../readings/session_09.md): the Wikipedia page on DCG, and
# Järvelin and Kekäläinen's original NDCG paper, Sections 1–3 (about 45 minutes).

# %% tags=["export"]
import math

import torch

# %%
from harness import Checker

check = Checker(session=9, namespace=globals())

# %% [markdown]
# ## 1. One input format, one set of rules
#
# Every metric of this session takes the same tensors, so session 10 can hand any of them the
# output of a ranker:
#
# | argument | shape, dtype | meaning |
# | --- | --- | --- |
# | `scores` | float (B, N) | one row per user, one column per candidate; higher = ranked earlier. Finite for real candidates. |
# | `labels` | bool, int or float (B, N) | relevance of each candidate, ≥ 0. **0 = not relevant**, anything > 0 is relevant; grades (1..5 stars) are used by DCG/NDCG, every other metric only asks "> 0?" |
# | `mask` | bool (B, N), optional | **False = padding**: not a candidate at all. `None`: every column is real. |
# | `k` | int ≥ 1 | only the top k positions count; k larger than the list is fine (the list is shorter) |
#
# And the rules every function follows:
#
# * **The ranked list** of a user is their real candidates sorted by score, best first. **Ties keep
#   the column order**: equal scores rank the lower column first (a *stable* sort). When columns are
#   item ids, that is `harness.evaluation`'s rule (ties to the lower item id), so a score matrix and
#   the top-k list built from it give the same numbers. AUC is the exception: it compares pairs,
#   not positions, and counts a tie as one half.
# * **Padding** is never ranked (it goes after every real candidate) and its label is ignored,
#   whatever the tensor holds there: it is neither relevant nor a negative.
# * **A user with no relevant candidate scores 0** on every top-K metric, never NaN; a user with no
#   (relevant, non-relevant) pair has AUC 0. The provided `has_relevant` and `has_pairs` say which
#   users those are, so that a report can count them or leave them out.
# * Results are **float32 (B,)** per user, on the scores' device. Inputs are never modified.
#
# Why 0 and not NaN? Session 06's `recall_at_k` returned NaN for a user with no relevant item, and
# `nanmean` left them out: there, an empty relevant set could only mean "nothing to measure". In
# session 10 the ranker re-orders the retriever's ~100 candidates, and a user whose held-out item the
# retriever **missed** has an all-zero label row. That user's true NDCG is 0 (the item is not shown),
# and leaving them out would reward a retriever for losing items. So the metric says 0, and the
# choice of *which users to average over* is made explicitly, by the caller, with `has_relevant`:
# all users for leave-last-out (every user has a held-out item, found or not), only `has_relevant`
# users when relevance comes from a threshold (say, ratings ≥ 4) that some users never reach.

# %% tags=["export"]
def real_candidates(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """bool (B, N): True for real candidates: ``mask`` on the scores' device, or all True when None (provided)."""
    if mask is None:
        return torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    return mask.to(device=scores.device, dtype=torch.bool)


def has_relevant(labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """bool (B,): the user has at least one relevant (label > 0) real candidate (provided)."""
    return ((labels > 0) & real_candidates(labels, mask)).any(dim=1)


def has_pairs(labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """bool (B,): the user has a relevant and a non-relevant real candidate, so AUC is defined (provided)."""
    real = real_candidates(labels, mask)
    relevant = (labels > 0) & real
    return relevant.any(dim=1) & (real & ~relevant).any(dim=1)


# %% [markdown]
# ## Exercise 1 — `ranked_labels`
#
# Every top-K metric starts the same way: put each user's labels in the order of their scores.
# `torch.argsort(scores, dim=1, descending=True, stable=True)` gives the column order; `gather` reads
# the labels in that order. Two details make it correct:
#
# * **Padding last**: give padding the score $-\infty$ *before* sorting (on a copy:
#   `masked_fill`, not `masked_fill_`), so that it sorts after every real candidate, and return its
#   label as 0, so that nothing downstream can count it.
# * **Stable**: without `stable=True`, torch may return tied scores in any order, and on CPU it
#   does; the popularity baseline has hundreds of ties.
#
# Return float32 whatever the labels' dtype (bool and int labels are common), so that the gains
# downstream are computed in floating point.

# %% tags=["export"]
def ranked_labels(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Each user's labels in ranked order.

    Args:
        scores: float (B, N), finite for real candidates; higher ranks earlier.
        labels: bool / int / float (B, N), relevance >= 0.
        mask: bool (B, N) or None; False = padding.

    Returns:
        float32 (B, N) on the scores' device: row b holds the labels of user b's real candidates sorted by
        descending score (ties: lower column first), then 0 for every padding column. Inputs unchanged.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 1 `ranked_labels` (session 09) is not implemented yet: replace this line with your code")


# %%
check("ranked_labels")
print(ranked_labels(torch.tensor([[0.2, 0.9, 0.2, 0.5]]), torch.tensor([[1, 0, 2, 3]])).tolist(),
      "<- the 0.2 tie keeps column order: label 1 before label 2")

# %% [markdown]
# ## 2. Discounted cumulative gain
#
# Järvelin and Kekäläinen (2002) put two ideas into one number: a relevant item is worth more when it
# is **more relevant** (the gain), and less when it is **further down** the list (the discount),
# because users look at the top and stop. With the labels in ranked order $rel_1, rel_2, \dots$:
#
# $$\mathrm{DCG@K} = \sum_{i=1}^{K} \frac{g(rel_i)}{\log_2(i + 1)}, \qquad
#   g(r) = 2^{r} - 1 \;\;(\text{exponential, our default}) \quad\text{or}\quad g(r) = r \;\;(\text{linear}).$$
#
# Positions count from **1**, and the first position has discount $1/\log_2 2 = 1$; then 0.631,
# 0.5, 0.431, ..., 0.289 at position 10. The base 2 is a convention with a consequence: in
# NDCG (next section) the base cancels out, but DCG itself scales with $1/\ln b$, so a DCG computed
# with `torch.log` is 1.44 times one computed with `torch.log2`. Two off-by-ones are classic:
# $\log_2(i)$ with 1-based $i$ divides the first item by $\log_2 1 = 0$, and $\log_2(i + 2)$
# with 1-based $i$ shifts every discount one place down.
#
# **Which gain?** We use $2^{rel} - 1$ by default, the convention of Burges et al.'s RankNet/
# LambdaRank, the Yahoo! and Microsoft learning-to-rank benchmarks, and most recommender papers that
# use grades. Three reasons: for binary labels it *equals* the linear gain ($2^1 - 1 = 1$,
# $2^0 - 1 = 0$), so every leave-last-out number of the workbook is the same either way; with grades,
# each extra star doubles the value, so the metric insists that the *best* item comes first, which
# is what the top slot is for; and it is what the ranking losses of the literature (LambdaRank's
# $\Delta$NDCG) optimise. The linear gain is what scikit-learn's `ndcg_score` and TREC's `trec_eval`
# use: grades add up, a 5-star item is worth five 1-star items instead of 31. Neither is wrong; say
# which one a number uses, because they can order two models differently (the graded example below
# shows by how much). For unbounded labels (watch time in seconds), use linear: $2^{r}$ overflows.
#
# ### By hand
#
# The example of the Wikipedia article: six items in ranked order with grades 3, 2, 3, 0, 1, 2.
#
# | $i$ | $rel_i$ | $\log_2(i+1)$ | linear $rel_i / \log_2(i+1)$ | exponential $(2^{rel_i} - 1) / \log_2(i+1)$ |
# | ---: | ---: | ---: | ---: | ---: |
# | 1 | 3 | 1.000 | 3.000 | 7.000 |
# | 2 | 2 | 1.585 | 1.262 | 1.893 |
# | 3 | 3 | 2.000 | 1.500 | 3.500 |
# | 4 | 0 | 2.322 | 0.000 | 0.000 |
# | 5 | 1 | 2.585 | 0.387 | 0.387 |
# | 6 | 2 | 2.807 | 0.712 | 1.069 |
# | | | **DCG@6** | **6.861** | **13.848** |
#
# At K = 3 only the first three rows count: 5.762 (linear), 12.393 (exponential).

# %% [markdown]
# ## Exercise 2 — `dcg_at_k`
#
# Rank with `ranked_labels`, keep the first `k` columns (`[:, :k]` also works when k > N), apply the
# gain, divide by the discounts of positions 1, 2, ..., and sum over positions. Padding arrives as
# label 0, and $g(0) = 0$ for both gains, so it adds nothing. The check of `gain` is provided.

# %% tags=["export"]
GAINS = ("exponential", "linear")


def dcg_at_k(scores: torch.Tensor, labels: torch.Tensor, k: int, mask: torch.Tensor | None = None,
             gain: str = "exponential") -> torch.Tensor:
    """DCG@K of each user's ranked list.

    Args:
        scores, labels, mask: as in ``ranked_labels``; labels are graded relevance >= 0.
        k: cut-off >= 1: positions 1..k count.
        gain: "exponential" (2**rel - 1, the default) or "linear" (rel).

    Returns:
        float32 (B,): sum over positions i = 1..k of gain(rel_i) / log2(i + 1); 0 for a user with no relevant
        candidate in the top k.
    """
    if gain not in GAINS:
        raise ValueError(f"gain={gain!r}: use one of {', '.join(GAINS)}")
    # YOUR CODE HERE
    raise NotImplementedError("exercise 2 `dcg_at_k` (session 09) is not implemented yet: replace this line with your code")


# %%
check("dcg_at_k")
wiki_scores = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])  # the list is already in ranked order
wiki_labels = torch.tensor([[3, 2, 3, 0, 1, 2]])
for g in GAINS:
    print(f"{g:>11} gain: DCG@6 = {dcg_at_k(wiki_scores, wiki_labels, 6, gain=g).item():.3f}, "
          f"DCG@3 = {dcg_at_k(wiki_scores, wiki_labels, 3, gain=g).item():.3f}")

# %% [markdown]
# ## 3. Normalised DCG: the ideal list
#
# DCG grows with the number and grades of a user's relevant items, so it cannot be averaged over
# users as it is. NDCG divides by the **ideal** DCG, the DCG of the best possible ordering:
#
# $$\mathrm{NDCG@K} = \frac{\mathrm{DCG@K}}{\mathrm{IDCG@K}}, \qquad
#   \mathrm{IDCG@K} = \mathrm{DCG@K}\ \text{of all the user's relevant candidates sorted by label, descending}.$$
#
# In the example, the ideal order of the six grades is 3, 3, 2, 2, 1, 0: IDCG@6 = 7.141 (linear),
# 14.595 (exponential), so NDCG@6 = 6.861 / 7.141 = **0.961** (linear) or 13.848 / 14.595 =
# **0.949** (exponential). Two mistakes make NDCG look better than it is, and both are common:
#
# * **IDCG from the retrieved list**: sorting the labels of the top K *you returned* gives the best
#   reordering of your own list, not the best list. A model whose top 10 holds a single 1-star
#   item, at position 1, gets NDCG 1 that way, while the user's 5-star item sits at position 500.
#   The ideal list is built from **all** the user's relevant candidates.
# * **IDCG not cut at K**: a user with 30 relevant items can never fill more than K positions, so
#   the ideal is also cut at K; without the cut, NDCG@10 of a perfect list is below 1.
#
# And NDCG is 0 when IDCG is 0 (no relevant candidate): `torch.where(ideal > 0, dcg / ideal, 0)`
# would still compute 0/0 in the branch it discards, which is harmless here (no gradient flows
# through a metric), but dividing by `ideal.clamp_min(...)` is the habit that keeps NaN out of
# backward passes too.
#
# The ideal list is built from the candidates you pass. With one relevant item (leave-last-out)
# nothing more is needed: a user whose item is not among the candidates has IDCG 0 and NDCG 0, which
# is their true NDCG. With several relevant items per user, a candidate list that lost some of them
# must still carry them (with a score below every retrieved candidate), or IDCG is too small.
#
# ## Exercise 3 — `ndcg_at_k`
#
# The ideal DCG is a DCG: that of the same labels ranked *by the labels themselves*. So
# `dcg_at_k(labels, labels, k, mask, gain)` is IDCG@K, with padding, the cut at K and the gain
# handled by code you have already checked.

# %% tags=["export"]
def ndcg_at_k(scores: torch.Tensor, labels: torch.Tensor, k: int, mask: torch.Tensor | None = None,
              gain: str = "exponential") -> torch.Tensor:
    """NDCG@K of each user: DCG@K / IDCG@K, IDCG@K from all the user's real candidates.

    Args:
        scores, labels, mask, k, gain: as in ``dcg_at_k``.

    Returns:
        float32 (B,) in [0, 1]; 1 for a list in ideal order, 0 (never NaN) for a user with no relevant candidate.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 3 `ndcg_at_k` (session 09) is not implemented yet: replace this line with your code")


# %%
check("ndcg_at_k")
for g in GAINS:
    print(f"{g:>11} gain: NDCG@6 = {ndcg_at_k(wiki_scores, wiki_labels, 6, gain=g).item():.3f}")

# %% [markdown]
# ## 4. Average precision
#
# Precision at position $i$ is the share of relevant items among the first $i$:
# $P@i = \frac{1}{i}\sum_{j \le i} \mathbb{1}[rel_j > 0]$. **Average precision** averages it over the
# positions that hold a relevant item:
#
# $$\mathrm{AP@K} = \frac{1}{\min(K, \lvert R\rvert)} \sum_{i=1}^{K} P@i \cdot \mathbb{1}[rel_i > 0],$$
#
# where $\lvert R\rvert$ is the number of relevant candidates of the user; MAP@K is its mean over
# users. AP is binary: a 5-star item is as relevant as a 1-star one. The normalisation is where
# definitions differ, and it matters:
#
# | divide by | a perfect top K, with $\lvert R\rvert$ = 30 and K = 10 | one hit at position 1, $\lvert R\rvert$ = 30 |
# | --- | --- | --- |
# | $\min(K, \lvert R\rvert)$ (ours) | 1 | 0.1 |
# | $\lvert R\rvert$ (TREC's AP, cut at K) | 0.33: can never reach 1 | 0.033 |
# | the number of hits in the top K | 1 | **1**: finding one of 30 is "perfect" |
#
# With K = N (the whole list), $\min(K, \lvert R\rvert) = \lvert R\rvert$ and AP@N is exactly
# scikit-learn's `average_precision_score` (for distinct scores: scikit-learn treats a group of tied
# scores as one threshold). The same example by hand, binary labels 1, 0, 1, 0, 0, 1, K = 6:
# $P@1 = 1$, $P@3 = 2/3$, $P@6 = 3/6$, so AP@6 = (1 + 0.667 + 0.5) / 3 = **0.722**.
#
# ## Exercise 4 — `average_precision_at_k`
#
# Batched: `hits = relevant.cumsum(dim=1)` counts relevant items up to each position, `hits / i` is
# P@i (positions from 1), keep it only where the position is relevant, sum, divide. Count
# $\lvert R\rvert$ on the whole ranked row (padding arrives as 0, so it is not counted), not only in
# the top K.

# %% tags=["export"]
def average_precision_at_k(scores: torch.Tensor, labels: torch.Tensor, k: int,
                           mask: torch.Tensor | None = None) -> torch.Tensor:
    """AP@K of each user (binary relevance: label > 0).

    Args:
        scores, labels, mask, k: as in ``dcg_at_k``; grades only matter as label > 0.

    Returns:
        float32 (B,): sum over relevant positions i <= k of precision@i, divided by min(k, number of relevant
        real candidates); 0 for a user with no relevant candidate.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 4 `average_precision_at_k` (session 09) is not implemented yet: replace this line with your code")


# %%
check("average_precision_at_k")
print("AP@6 of 1, 0, 1, 0, 0, 1:", round(average_precision_at_k(wiki_scores, torch.tensor([[1, 0, 1, 0, 0, 1]]), 6).item(), 4))

# %% [markdown]
# ## 5. Reciprocal rank and hit rate
#
# The two simplest questions about a list. **Reciprocal rank**: how far down is the *first* relevant
# item? $\mathrm{RR} = 1 / i_{\text{first}}$, 0 when there is none (within k, if a cut-off is given);
# its mean over users is MRR. **Hit rate**: is *any* relevant item in the top K?
# $\mathrm{HR@K} = \mathbb{1}[\exists\, i \le K: rel_i > 0]$: 1, not the number of hits.
#
# With one relevant item at (0-based) rank $r$, which is what `harness.evaluation` computes, all the
# top-K metrics are functions of $r$ alone: $\mathrm{HR@K} = \mathbb{1}[r < K]$,
# $\mathrm{NDCG@K} = \mathbb{1}[r < K] / \log_2(r + 2)$ (IDCG = 1), and
# $\mathrm{AP@K} = \mathrm{RR@K} = \mathbb{1}[r < K] / (r + 1)$. They differ only in how fast they decay.
#
# ## Exercise 5 — `reciprocal_rank`
#
# The classic trap: `argmax` over a row of relevance flags returns the first True position, but
# for a row with **no** True it returns 0, i.e. "first relevant item at position 1", RR = 1. Check
# `any` first. And the *first relevant* item is not the *most relevant* one: take `argmax` of
# `labels > 0`, not of the grades.

# %% tags=["export"]
def reciprocal_rank(scores: torch.Tensor, labels: torch.Tensor, k: int | None = None,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 / (1-based position of the first relevant candidate) of each user; the mean over users is MRR.

    Args:
        scores, labels, mask: as in ``ranked_labels``.
        k: only the top k positions count; None = the whole list.

    Returns:
        float32 (B,) in [0, 1]; 0 for a user with no relevant candidate (in the top k).
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 5 `reciprocal_rank` (session 09) is not implemented yet: replace this line with your code")


# %%
check("reciprocal_rank")

# %% [markdown]
# ## Exercise 6 — `hit_rate_at_k`

# %% tags=["export"]
def hit_rate_at_k(scores: torch.Tensor, labels: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """HR@K of each user: 1.0 if a relevant candidate is in the top k, else 0.0.

    Args:
        scores, labels, mask, k: as in ``dcg_at_k``.

    Returns:
        float32 (B,) of 0.0 / 1.0.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 6 `hit_rate_at_k` (session 09) is not implemented yet: replace this line with your code")


# %%
check("hit_rate_at_k")

# %% [markdown]
# ## 6. AUC: pairs, not positions
#
# The area under the ROC curve is the probability that a random relevant candidate scores above a
# random non-relevant one. For user $u$ with relevant set $P$ and non-relevant set $N$ (real
# candidates only):
#
# $$\mathrm{AUC}_u = \frac{1}{\lvert P\rvert\,\lvert N\rvert} \sum_{p \in P} \sum_{n \in N}
#   \Big(\mathbb{1}[s_p > s_n] + \tfrac12\,\mathbb{1}[s_p = s_n]\Big).$$
#
# **Ties count one half**: the chance that a random tie-break orders the pair correctly. Counting them
# as wins (`>=`) flatters a model that gives everything the same score (AUC 1 for a constant!), as
# losses (`>`) punishes it (AUC 0); one half gives it 0.5, chance, which is what it is. This is the
# Mann–Whitney U statistic divided by $\lvert P\rvert\lvert N\rvert$, and what scikit-learn's
# `roc_auc_score` computes.
#
# AUC has no K and no discount: moving the held-out item from position 900 to 800 improves it as much
# as moving it from 101 to 1. With one relevant item at rank $r$ among $n$ candidates (no ties),
# $\mathrm{AUC} = 1 - r/(n - 1)$, linear in the rank. That is why retrieval papers report
# NDCG@K and HR@K, and why rankers, which score a short list of candidates or (user, item) pairs
# with a click probability, report AUC.
#
# **Batched and cheap.** The direct translation compares every column with every column,
# `scores[:, :, None] > scores[:, None, :]`, a (B, N, N) tensor: fine for 100 sampled negatives,
# 2.7 GB of booleans for 943 users over the 1,682 movies of MovieLens. Sorting is cheaper: sort each user's
# non-relevant scores (relevant and padding replaced by $+\infty$, which sorts last and is above every
# finite score), then `torch.searchsorted(sorted_neg, scores)` is, for every candidate, the number of
# negatives strictly below it, and with `right=True` the number below *or equal*: the difference is
# the ties. $O(N \log N)$ per user.
#
# **Per user or pooled?** The mean of $\mathrm{AUC}_u$ over users (sometimes called GAUC) asks "does
# the model order each user's candidates well?". The **global** AUC pools every (relevant,
# non-relevant) pair of every user, including a positive of user $a$ against a negative of user $b$:
# it also asks whether scores are comparable *across* users, which a click-probability model must
# get right and a ranking-only model need not. Session 10 reports the ranker's AUC on held-out
# positives against sampled negatives; both numbers are cheap, and when they differ the gap says
# something about calibration.
#
# ## Exercise 7 — `auc`

# %% tags=["export"]
def auc(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-user AUC: share of (relevant, non-relevant) pairs of real candidates ordered right, ties one half.

    Args:
        scores: float (B, N), finite for real candidates.
        labels: bool / int / float (B, N); relevant = label > 0, every other real candidate is a negative.
        mask: bool (B, N) or None; False = padding, in no pair.

    Returns:
        float32 (B,) in [0, 1]; 0 for a user with no pair (no relevant or no non-relevant candidate; see
        ``has_pairs``). O(N log N) per user: no (B, N, N) tensor.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 7 `auc` (session 09) is not implemented yet: replace this line with your code")


# %%
check("auc")

# %% [markdown]
# ## Exercise 8 — `global_auc`
#
# The pooled version is the per-user one on a single "user" that holds every real candidate of the
# batch: select them with the mask (`scores[real]` flattens them in row order), give the result a
# batch dimension of 1, and call `auc`. Return a Python float.

# %% tags=["export"]
def global_auc(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """AUC over the pooled (relevant, non-relevant) pairs of all users' real candidates.

    Args:
        scores, labels, mask: as in ``auc``.

    Returns:
        a float in [0, 1]: scikit-learn's ``roc_auc_score`` of the flattened real candidates (labels > 0 vs not);
        0.0 when the batch holds no pair.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 8 `global_auc` (session 09) is not implemented yet: replace this line with your code")


# %%
check("global_auc")
demo_scores = torch.tensor([[10.0, 9.0], [2.0, 1.0]])  # user 0 scores everything high, user 1 low
demo_labels = torch.tensor([[1, 0], [1, 0]])
print("per-user AUC:", auc(demo_scores, demo_labels).tolist(), "| pooled:", global_auc(demo_scores, demo_labels),
      "(user 1's positive scores below user 0's negative)")

# %% [markdown]
# ## Run it, part 1: every metric, for popularity and a trained two-tower
#
# The setting of every earlier session: MovieLens-100K (or `WORKBOOK_DATASET`), each user's last
# interaction held out, ranked against the full catalog with the user's seen items excluded. In this
# session's terms: `scores` is a (users, n_items + 1) matrix, `labels` is True at the held-out item,
# and `mask` is False at padding column 0 and at the items the user has seen.
#
# The two-tower model is the pipeline's own: the `two-tower-transformer` stage of
# `harness.pipeline.retrieval` trains it with session 05's `train_two_tower` at the config's preset,
# or loads it in a second from `runs/pipeline/` when `python -m harness pipeline` (or an earlier run
# of this notebook) has trained it on the same data, config and code.

# %%
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ndcg_score, roc_auc_score

from harness.autograder.loader import upstream_tree
from harness.config import load_config
from harness.data import load_dataset
from harness.env import pick_device
from harness.evaluation import metrics_from_ranks, ranks_from_scores, seen_mask
from harness.pipeline import Context
from harness.pipeline.retrieval import STAGES, two_tower_score_fn

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
cfg = load_config("two_tower")
ds = load_dataset(DATASET)
print(ds.summary(), f"| preset: {cfg.preset}")

ctx = Context(DATASET, upstream_tree(), cfg.preset, pick_device())
ctx.dataset = ds
start = time.perf_counter()
next(stage for stage in STAGES if stage.name == "two-tower-transformer").run(ctx)
model = ctx.artifacts["two-tower transformer"].eval()  # eval: dropout off, so every call scores the same
print(f"two-tower transformer ready in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# A "model" here is a score function: user ids → a (B, n_items + 1) score matrix. Popularity scores
# every item by its number of interactions before the test split (the same for every user, with many
# ties: that is where the tie rule earns its keep); the two-tower scores by cosine similarity from
# the history before the test item. `evaluate` walks the test users in batches, builds
# `scores, labels, mask` and keeps every metric **per user**, which is what session 10 needs for
# bootstrap intervals.

# %%
KS = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)
KS = tuple(k for k in KS if k < ds.n_items) + (ds.n_items,)
device = ctx.device
popularity_counts = torch.from_numpy(ds.item_counts("test")).float()
score_fns = {
    "popularity": lambda users: popularity_counts.to(device)[None, :].expand(len(users), -1),
    "two-tower transformer": two_tower_score_fn(model, ds, "test", cfg.train.max_len, device),
}


def full_catalog_batches(score_fn, split: str = "test", batch_size: int = 256):
    """(scores, labels, mask, users, targets) per batch: one relevant column (the held-out item), seen items masked."""
    users, targets = ds.targets(split)
    sequences = ds.sequences(upto=split)
    for start in range(0, len(users), batch_size):
        u = torch.as_tensor(users[start:start + batch_size])
        t = torch.as_tensor(targets[start:start + batch_size])
        scores = score_fn(u.to(device)).float()
        mask = ~seen_mask(sequences, u.tolist(), ds.n_items, device=scores.device)
        mask[:, 0] = False
        labels = torch.zeros_like(mask)
        labels[torch.arange(len(u)), t.to(scores.device)] = True
        yield scores, labels, mask, u, t


def evaluate(batches, ks=KS) -> dict:
    """Per-user metrics (CPU float32 tensors) over all batches, plus the pooled AUC."""
    out, pooled_scores, pooled_labels = {}, [], []
    for scores, labels, mask, *_ in batches:
        values = {"RR": reciprocal_rank(scores, labels, mask=mask), "AUC": auc(scores, labels, mask),
                  "AP@10": average_precision_at_k(scores, labels, 10, mask)}
        for k in ks:
            values[f"HR@{k}"] = hit_rate_at_k(scores, labels, k, mask)
            values[f"NDCG@{k}"] = ndcg_at_k(scores, labels, k, mask)
        for name, v in values.items():
            out.setdefault(name, []).append(v.cpu())
        pooled_scores.append(scores[mask].cpu())
        pooled_labels.append(labels[mask].cpu())
    out = {name: torch.cat(v) for name, v in out.items()}
    out["global AUC"] = global_auc(torch.cat(pooled_scores)[None], torch.cat(pooled_labels)[None])
    return out


per_user = {}
for name, fn in score_fns.items():
    start = time.perf_counter()
    per_user[name] = evaluate(full_catalog_batches(fn))
    print(f"{name}: {len(per_user[name]['RR'])} users in {time.perf_counter() - start:.1f} s")

columns = ("HR@10", "NDCG@10", "AP@10", "RR", "AUC")
print(f"\n{'model':<24}" + "".join(f"{c if c != 'RR' else 'MRR':>10}" for c in columns) + f"{'global AUC':>12}")
for name, m in per_user.items():
    print(f"{name:<24}" + "".join(f"{m[c].mean().item():>10.4f}" for c in columns) + f"{m['global AUC']:>12.4f}")

# %% [markdown]
# ## Run it, part 2: the same numbers as `harness.evaluation`
#
# `harness.evaluation` never sorts: it counts, for each user, the unseen items that score above the
# held-out one (ties to the lower item id), and turns that rank into HR, NDCG and MRR. Your functions
# sort whole rows. Two independent routes; on the same score matrices they must agree to float
# rounding, and for the two-tower also with the pipeline stage's own row (it scored the catalog with
# `evaluate_two_tower`). (In the table above AP@10 is below MRR although section 5 says AP@K = RR@K
# with one relevant item: AP@10 is cut at 10, MRR is not, so MRR also collects $1/(r+1)$ from
# users whose item sits below position 10.)

# %%
for name, fn in score_fns.items():
    ranks = torch.cat([ranks_from_scores(s, t, exclude=~m) for s, _, m, _, t in full_catalog_batches(fn)])
    harness_metrics = metrics_from_ranks(ranks, ks=(10, 50))
    mine = {"HR@10": per_user[name]["HR@10"].mean().item(), "NDCG@10": per_user[name]["NDCG@10"].mean().item(),
            "HR@50": per_user[name]["HR@50"].mean().item(), "NDCG@50": per_user[name]["NDCG@50"].mean().item(),
            "MRR": per_user[name]["RR"].mean().item()}
    gap = max(abs(mine[key] - harness_metrics[key]) for key in mine)
    assert gap < 1e-5, f"{name}: session 09 metrics and harness.evaluation disagree by {gap}"
    print(f"{name:<24} " + ", ".join(f"{key} {mine[key]:.4f}" for key in mine) + f"  | largest gap to harness: {gap:.1e}")
pipeline_row = ctx.table.rows["two-tower transformer"]
stage_gap = max(abs(per_user["two-tower transformer"][key].mean().item() - pipeline_row[key]) for key in ("HR@10", "NDCG@10"))
assert stage_gap < 1e-5, stage_gap
print(f"pipeline stage's row: HR@10 {pipeline_row['HR@10']:.4f}, NDCG@10 {pipeline_row['NDCG@10']:.4f} "
      f"(gap {stage_gap:.1e})")

# %% [markdown]
# And the independent oracle, scikit-learn, on the first 200 users. `roc_auc_score` counts ties as
# one half, like yours, so it agrees on both models. `ndcg_score` agrees on the two-tower, whose
# cosine scores (almost) never tie; on popularity it differs for the users whose held-out item ties
# with other items near the top, and the reason is a third tie rule: by default
# (`ignore_ties=False`) scikit-learn averages the gain over every order of a group of tied scores,
# as if ties were broken at random, where we, like the harness, break them by item id. Neither is
# wrong; a number is only comparable with numbers computed under the same rule.

# %%
def sklearn_check(name: str, n_users: int = 200) -> dict:
    scores, labels, mask, *_ = next(full_catalog_batches(score_fns[name], batch_size=n_users))
    scores, labels, mask = scores.cpu(), labels.cpu(), mask.cpu()
    ours_ndcg = ndcg_at_k(scores, labels, 10, mask)
    ours_auc = auc(scores, labels, mask)
    sk_ndcg = torch.tensor([ndcg_score(labels[b, mask[b]][None].numpy(), scores[b, mask[b]][None].numpy(), k=10)
                            for b in range(len(scores))])
    sk_auc = torch.tensor([roc_auc_score(labels[b, mask[b]].numpy(), scores[b, mask[b]].numpy())
                           for b in range(len(scores))])
    return {"NDCG@10 gap": (ours_ndcg - sk_ndcg).abs().max().item(), "AUC gap": (ours_auc - sk_auc).abs().max().item(),
            "users whose NDCG@10 differs": int(((ours_ndcg - sk_ndcg).abs() > 1e-5).sum()),
            "mean NDCG@10 (ours, sklearn)": (ours_ndcg.mean().item(), sk_ndcg.mean().item())}


for name in score_fns:
    result = sklearn_check(name)
    print(f"{name:<24} " + "; ".join(f"{key}: " + (f"({v[0]:.4f}, {v[1]:.4f})" if isinstance(v, tuple)
                                                  else f"{v:.1e}" if isinstance(v, float) else str(v))
                                     for key, v in result.items()))
    assert result["AUC gap"] < 1e-5

# %% [markdown]
# ## Run it, part 3: NDCG@K against K
#
# As K grows every metric rises, because more of the list counts: HR@K reaches 1 at K = n_items,
# NDCG@K saturates at the mean of $1/\log_2(r + 2)$ over users. Where the curves of two models cross
# (if they do) is where "which model is better" depends on the K you report; K should be the number
# of items the product shows, or, for a retriever, the number of candidates the ranker reads.

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for name, m in per_user.items():
    axes[0].plot(KS, [m[f"NDCG@{k}"].mean().item() for k in KS], marker="o", label=name)
    axes[1].plot(KS, [m[f"HR@{k}"].mean().item() for k in KS], marker="o", label=name)
for ax, metric in zip(axes, ("NDCG@K", "HR@K")):
    ax.set_xscale("log")
    ax.set_xlabel("K (log scale)")
    ax.set_ylabel(metric)
    ax.axvline(10, color="grey", linestyle=":", linewidth=1)
    ax.legend()
axes[0].set_title(f"{DATASET}: NDCG@K, one held-out item per user")
axes[1].set_title("HR@K: reaches 1 at K = n_items")
plt.tight_layout()
plt.show()
pop, tt = per_user["popularity"], per_user["two-tower transformer"]
ahead = [k for k in KS if tt[f"NDCG@{k}"].mean() > pop[f"NDCG@{k}"].mean()]
print(f"The two-tower is ahead of popularity on NDCG@K at {len(ahead)} of {len(KS)} cut-offs"
      + (f" (K = {', '.join(map(str, ahead))})" if 0 < len(ahead) < len(KS) else "")
      + f"; mean AUC {tt['AUC'].mean():.3f} vs {pop['AUC'].mean():.3f} for popularity.")

# %% [markdown]
# AUC against NDCG, on the same users: AUC is linear in the rank over the whole catalog, NDCG@10
# only sees the top 10. The computed comparison below says whether the two metrics agree on which
# model is better here, and how much of popularity's AUC is decided by ties.
#
# Ties in popularity are integer counts, so shifting the held-out item's score by ±0.5 turns its
# ties into losses or wins without passing any other item: the spread between the two is what the
# "one half" rule decides.

# %%
better_auc = max(per_user, key=lambda n: per_user[n]["AUC"].mean().item())
better_ndcg = max(per_user, key=lambda n: per_user[n]["NDCG@10"].mean().item())
print(f"Best by mean AUC: {better_auc}; best by NDCG@10: {better_ndcg}"
      + (" (they agree)." if better_auc == better_ndcg else
         " (they disagree: one model orders the whole catalog better, the other the top of it)."))
shifted = {"losses": [], "wins": []}
for scores, labels, mask, *_ in full_catalog_batches(score_fns["popularity"]):
    shifted["losses"].append(auc(scores - 0.5 * labels.float(), labels, mask))
    shifted["wins"].append(auc(scores + 0.5 * labels.float(), labels, mask))
pessimistic, optimistic = (torch.cat(shifted[key]).mean().item() for key in ("losses", "wins"))
print(f"popularity AUC: ties as losses {pessimistic:.4f}, as one half {per_user['popularity']['AUC'].mean():.4f}, "
      f"as wins {optimistic:.4f}")

# %% [markdown]
# ## Run it, part 4: graded relevance with MovieLens ratings
#
# Leave-last-out has one relevant item per user, and with one relevant item the gain cancels out of
# NDCG. To see grades at work, hold out **two** items per user, the validation and the test item,
# and use their **ratings** (1–5 stars) as the labels. The query is the history before the validation
# item, which is exactly what the two-tower was trained on (`train_two_tower` trains on the train
# split only), so neither held-out item was ever a training target; seen items are the train items.
#
# Three versions of NDCG@10 for each model: exponential gain (ours), linear gain (scikit-learn's),
# and binary (every rated item relevant). And a thresholded version, "relevant = rated 4 or 5", which
# leaves some users with no relevant item at all: the rule of section 1 in action.

# %%
users_v, valid_items = ds.targets("valid")
users_t, test_items = ds.targets("test")
assert (users_v == users_t).all(), "every user has one valid and one test item, in the same order"
rating_v = torch.tensor(ds.split("valid")["rating"].to_numpy(), dtype=torch.float32)
rating_t = torch.tensor(ds.split("test")["rating"].to_numpy(), dtype=torch.float32)
train_sequences = ds.sequences(upto="valid")
graded_fns = {
    "popularity": lambda users: torch.from_numpy(ds.item_counts("valid")).float().to(device)[None, :].expand(len(users), -1),
    "two-tower transformer": two_tower_score_fn(model, ds, "valid", cfg.train.max_len, device),
}


def graded_batches(score_fn, batch_size: int = 256):
    """(scores, graded labels, mask): the valid and test items carry their ratings; train items are masked."""
    for start in range(0, len(users_v), batch_size):
        u = torch.as_tensor(users_v[start:start + batch_size])
        rows = torch.arange(len(u))
        scores = score_fn(u.to(device)).float().cpu()
        mask = ~seen_mask(train_sequences, u.tolist(), ds.n_items)
        mask[:, 0] = False
        labels = torch.zeros(scores.shape)
        labels[rows, torch.as_tensor(valid_items[start:start + batch_size])] = rating_v[start:start + batch_size]
        labels[rows, torch.as_tensor(test_items[start:start + batch_size])] = rating_t[start:start + batch_size]
        yield scores, labels, mask


graded = {}
for name, fn in graded_fns.items():
    parts = {"NDCG@10 exp": [], "NDCG@10 linear": [], "NDCG@10 binary": [], "liked NDCG@10": [], "liked AP@10": [],
             "liked": []}
    for scores, labels, mask in graded_batches(fn):
        liked = torch.where(labels >= 4, labels, torch.zeros_like(labels))
        parts["NDCG@10 exp"].append(ndcg_at_k(scores, labels, 10, mask))
        parts["NDCG@10 linear"].append(ndcg_at_k(scores, labels, 10, mask, gain="linear"))
        parts["NDCG@10 binary"].append(ndcg_at_k(scores, labels > 0, 10, mask))
        parts["liked NDCG@10"].append(ndcg_at_k(scores, liked, 10, mask))
        parts["liked AP@10"].append(average_precision_at_k(scores, liked, 10, mask))
        parts["liked"].append(has_relevant(liked, mask))
    graded[name] = {key: torch.cat(v) for key, v in parts.items()}

n_liked = int(graded["popularity"]["liked"].sum())
print(f"{len(users_v)} users; {len(users_v) - n_liked} of them rated neither held-out item 4 or 5 stars\n")
print(f"{'model':<24}{'exp':>9}{'linear':>9}{'binary':>9}   {'liked NDCG@10 (users / all)':>28}"
      f"{'liked AP@10 (users / all)':>28}")
for name, g in graded.items():
    has = g["liked"]
    print(f"{name:<24}{g['NDCG@10 exp'].mean():>9.4f}{g['NDCG@10 linear'].mean():>9.4f}{g['NDCG@10 binary'].mean():>9.4f}"
          f"   {g['liked NDCG@10'][has].mean():>13.4f} / {g['liked NDCG@10'].mean():.4f}"
          f"{g['liked AP@10'][has].mean():>15.4f} / {g['liked AP@10'].mean():.4f}")

# %% [markdown]
# Reading the table: the binary column asks "are the held-out items near the top?", the graded
# columns "are the *better-rated* ones nearer?". A model that finds the items but not in the order
# of the ratings loses more under the exponential gain than under the linear one. The "liked"
# columns are averaged two ways: over the users who have a liked held-out item (the honest number
# for this population), and over all users, where the users with nothing to find drag the mean
# toward 0; the second is not a worse model, just a different denominator, which is why the
# session's functions return 0 with `has_relevant` beside them instead of deciding for you.

# %%
for name, g in graded.items():
    change = g["NDCG@10 exp"].mean().item() / max(g["NDCG@10 binary"].mean().item(), 1e-12) - 1
    print(f"{name}: exponential-gain NDCG@10 is {change:+.1%} relative to binary "
          f"({'the held-out items it ranks high tend to be the lower-rated one' if change < 0 else 'the held-out items it ranks high lean to the better-rated one'})")
order = {gain: max(graded, key=lambda n: graded[n][f"NDCG@10 {gain}"].mean().item()) for gain in ("exp", "linear", "binary")}
print("best model by gain:", order)

# %% [markdown]
# ## Run it, part 5: when MAP, MRR and NDCG disagree
#
# All three reward relevant items near the top, but they disagree about *what* near the top is worth.
# Three lists of ten for one user with one 3-star item and two 1-star items (scores 10, 9, ..., 1, so
# the list order is the column order):
#
# * **A** puts a 1-star item first and the 3-star item at position 5;
# * **B** finds all three at positions 2–4, the 3-star one last of them;
# * **C** puts the 3-star item at position 2 and the other two at the bottom.

# %%
toy = {"A": [1, 0, 0, 0, 3, 0, 0, 0, 0, 1], "B": [0, 1, 1, 3, 0, 0, 0, 0, 0, 0], "C": [0, 3, 0, 0, 0, 0, 0, 0, 1, 1]}
toy_labels = torch.tensor(list(toy.values()))
toy_scores = torch.arange(10, 0, -1).float().expand(3, -1)
toy_metrics = {"MRR": reciprocal_rank(toy_scores, toy_labels), "MAP@10": average_precision_at_k(toy_scores, toy_labels, 10),
               "NDCG@10": ndcg_at_k(toy_scores, toy_labels, 10), "NDCG@10 linear": ndcg_at_k(toy_scores, toy_labels, 10, gain="linear")}
print(f"{'list':<6}" + "".join(f"{m:>16}" for m in toy_metrics))
for i, name in enumerate(toy):
    print(f"{name:<6}" + "".join(f"{v[i].item():>16.3f}" for v in toy_metrics.values()))
print("winner: " + ", ".join(f"{m} -> {'ABC'[int(v.argmax())]}" for m, v in toy_metrics.items()))

# %% [markdown]
# * **MRR** only sees the first relevant item: A's 1-star item at position 1 beats everything. It
#   fits tasks with one right answer (a search for a known item, the next item of leave-last-out).
# * **MAP** rewards finding *many* relevant items early and ignores grades: B, with all three in the
#   top four, wins. It fits "show me everything relevant", and it punishes a good first hit followed
#   by misses.
# * **NDCG** with graded gains weighs the 3-star item 7 times a 1-star one (exponential) and discounts
#   slowly ($1/\log_2$ rather than $1/i$): C, with the best item at position 2, wins.
#
# With one relevant item per user, all three become functions of its rank (section 5) and always
# order two *users* the same way; they can still order two *models* differently, because they average
# different functions of the rank: MRR's $1/(r+1)$ falls fast, NDCG's $1/\log_2(r+2)$ slowly, so a
# model that puts many items at rank 0 can win MRR while one that puts them all at ranks 1–5 wins
# NDCG@10. Report the metric that matches what the product does with the list, fix it before the
# experiment, and report it with its interval (session 10).
#
# ## Reflection
#
# 1. In part 1, did the two models order the same way under MRR, NDCG@10 and AUC? Explain the AUC
#    of popularity from the shape of its score vector (one score per item, the same for every user)
#    and the identity $\mathrm{AUC} = 1 - r/(n-1)$.
# 2. The graded table: which model lost more when the gain went from binary to exponential, and what
#    does that say about the items it finds? Would you choose the model by exponential, linear or
#    binary NDCG for a movie site's home page, and why?
# 3. Your `ndcg_at_k` returns 0 for a user with no relevant candidate. Write down two evaluation
#    set-ups in which averaging over all users is right, and two in which it is wrong. What does a
#    report need to print so that a reader can tell which one you did?
# 4. scikit-learn's `ndcg_score` averages over tied orders; the harness breaks ties by item id. Construct
#    a score function that gains NDCG@10 under one rule and loses it under the other. Which rule is
#    harder to game?
# 5. Session 10 computes bootstrap confidence intervals by resampling users. Why resample users and
#    not (user, item) pairs, and why does it need the per-user values your functions return rather
#    than their means? How would you bootstrap the global AUC?
#
# **After:** [readings/session_09.md](../readings/session_09.md): Wang et al. on the consistency of
# NDCG-type measures, and Krichene and Rendle on why sampled versions of these metrics mislead.
# **Next:** session 10 puts retriever and ranker together and evaluates the pipeline with these metrics.
