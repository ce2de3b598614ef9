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
# # Session 10 — Evaluating the whole pipeline: retrieve → rank, K sweeps, ablations, confidence intervals
#
# You have every piece: a retriever (sessions 03–06), a ranker (07–08) and the metrics (09). Today
# they run as one system, and you ask of it the questions a results table should answer:
#
# * **How good is the system**, retriever and ranker together, on users it has never seen the answer of?
# * **Where is its ceiling?** The ranker can only reorder what the retriever hands it: the retriever's
#   recall at K caps everything, and the **K sweep** shows what more candidates buy.
# * **What does each part contribute?** **Ablations**: the same system without the history bag,
#   without the retriever's score as a feature, with uniform instead of hard negatives.
# * **Is a difference real?** 943 users are not many. A **bootstrap over users** gives each number an
#   interval, and a **paired** bootstrap gives each *difference* one, much narrower than the two
#   intervals side by side suggest.
#
# ```
#   user history ─► retriever (two-tower) ─► FAISS top-K, seen items excluded ─► DLRM scores the K ─► top-k
#                                              │ Recall@K: the ceiling                    │ HR@k, NDCG@k per user
#                                              └──────────────── per-user metrics ───────┴─► bootstrap over users
# ```
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `retrieve_then_rank` | the two-stage recommender: top-K from the index (seen excluded), reranked, cut to k |
# | 2 | `per_user_metrics` | HR@k and NDCG@k of every user from ranked lists, with session 09's metrics |
# | 3 | `bootstrap_ci` | the percentile bootstrap interval of a mean over users, seeded and vectorised |
# | 4 | `paired_bootstrap` | every system's interval and its difference to a baseline, from the same resampled users |
#
# The workbook provides the rest: the trained retrievers and rankers (the pipeline's own, cached in
# `runs/pipeline/`), `harness.pipeline.ranking` to score candidates, a comparison table and plot helper,
# and W&B logging (offline). Everything here is measured on the **test split, once**: the rankers were
# selected on the validation split in session 08 and by the pipeline, and nothing below tunes anything.
#
# **Before:** [readings/session_10.md](../readings/session_10.md): Smucker et al. on significance tests
# in IR, the bootstrap's percentile interval, Covington et al. again (about 55 minutes).

# %% tags=["export"]
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from harness.autograder.loader import upstream
from harness.evaluation import MetricsTable

# %%
from harness import Checker

check = Checker(session=10, namespace=globals())

# %% [markdown]
# ## 1. Retrieve, then rank
#
# The serving path of the whole workbook, on a batch of users:
#
# 1. **Retrieve**: session 06's `search_excluding_seen(index, queries, seen, K)`, the K best unseen items
#    per user by the retriever's score, best first, padded with 0 when fewer than K unseen items exist.
# 2. **Rank**: `rank_fn(users, candidates)` scores every candidate, `(B, K)`, in one call (the ranker
#    runs on the whole batch; here it is the DLRM through session 07's `score_candidates`).
# 3. **Cut**: sort each row's candidates by the ranker's score, highest first, and keep the first k.
#
# Three rules make the result a recommendation and not an artefact:
#
# * The ranker reorders the retriever's list, all of it: K candidates go in, not k. A ranker given only
#   the retriever's top k can do nothing to HR@k (the same k items, reordered).
# * Padding is not an item: a padding column scores `-inf` whatever the ranker says, so it can only come
#   last, as 0.
# * Ties keep the retriever's order (a **stable** sort): an item the ranker cannot separate from another
#   stays where the retriever put it, and the result does not depend on the sort algorithm.
#
# Seen items never come back: the retriever excluded them, and the ranker only reorders.
#
# ## Exercise 1 — `retrieve_then_rank`

# %% tags=["export"]
def retrieve_then_rank(index, queries: torch.Tensor, seen: torch.Tensor, users: torch.Tensor,
                       rank_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, K: int,
                       k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-stage recommendation: the retriever's top-K unseen items, reordered by the ranker, cut to k.

    Args:
        index: a FAISS index of session 06 over items 1..n_items (label r is item r + 1).
        queries: float (B, d), the users' retrieval vectors.
        seen: int64 (B, S), each user's seen items, padded with 0.
        users: int64 (B,), the user ids, handed to ``rank_fn``.
        rank_fn: ``rank_fn(users (B,), candidates int64 (B, K)) -> float (B, K)``, higher is better;
            called once, with the whole batch.
        K: candidates to retrieve; k: length of the final lists, ``k <= K``.

    Returns:
        ``(ranked, candidates)``: int64 (B, k) item ids, the candidates sorted by the ranker's score
        (descending; ties in retrieval order; padding candidates last, as 0), and int64 (B, K), the
        retriever's candidates as session 06's ``search_excluding_seen`` returns them.
    """
    if not 1 <= k <= K:
        raise ValueError(f"need 1 <= k <= K, got k={k}, K={K}")
    # YOUR CODE HERE
    raise NotImplementedError("exercise 1 `retrieve_then_rank` (session 10) is not implemented yet: replace this line with your code")


# %%
check("retrieve_then_rank")

# %% [markdown]
# ## 2. Per-user metrics from the lists
#
# A bootstrap resamples **users**, so every metric must be kept per user, not averaged. Session 09's
# functions take a score matrix and labels; a ranked list is one with the scores implied by the
# positions. For lists `ranked` (B, L) and each user's held-out item:
#
# * `labels = ranked == targets[:, None]` (one relevant item per user, the held-out one);
# * scores that *decrease* along the list, e.g. `L - position`, so that sorting by score is the list
#   itself (an increasing `arange` would reverse every list);
# * `mask = ranked != 0`, padding is no candidate;
#
# then session 09's `hit_rate_at_k` and `ndcg_at_k` (through `upstream(9)`: yours, or the reference).
# A user whose held-out item is not in the first k entries gets 0 for both, which is exactly what makes a
# pipeline's number honest: the ranker is charged for the retriever's misses. With one relevant item the
# ideal DCG is 1, and NDCG@k is $1/\log_2(r + 2)$ for the 0-based position $r < k$ of the held-out item.
#
# The same function measures the retrieval stage: `per_user_metrics(candidates, targets, (K,))["HR@K"]`
# is the retriever's Recall@K (with one held-out item, recall and hit rate coincide), the ceiling.
#
# ## Exercise 2 — `per_user_metrics`

# %% tags=["export"]
def per_user_metrics(ranked: torch.Tensor, targets: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """HR@k and NDCG@k of every user from ranked lists, through session 09's metrics.

    Args:
        ranked: int64 (B, L), item ids best first, 0 = padding.
        targets: int64 (B,), each user's held-out item (never 0).
        ks: cut-offs; a k above L counts the whole list.

    Returns:
        ``{"HR@k": float32 (B,), "NDCG@k": float32 (B,)}`` for each k of ``ks``, in that order (HR@k then
        NDCG@k for the first k, then the next k); 0 for a user whose item is not in the first k entries.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 2 `per_user_metrics` (session 10) is not implemented yet: replace this line with your code")


# %%
check("per_user_metrics")

# %% [markdown]
# ## 3. The bootstrap: an interval from the data alone
#
# The test users are a sample of the users the system will serve; their mean NDCG@10 is an estimate, and
# another sample of 943 users would give another number. The **bootstrap** (Efron, 1979) estimates how
# much it would move by treating the sample as the population: draw $U$ users *with replacement* from the
# $U$ test users, compute the mean, repeat $R$ times. The spread of those $R$ means approximates the
# sampling distribution of the mean, and the **percentile interval** at confidence $c$ is read off its
# quantiles:
#
# $$\bigl[\,q_{(1-c)/2},\; q_{(1+c)/2}\,\bigr] \text{ of } \{\bar m^{*}_1, \dots, \bar m^{*}_R\},
#   \qquad c = 0.95:\ [q_{0.025},\, q_{0.975}].$$
#
# It needs no normality assumption (per-user NDCG is mostly zeros with a long tail), and the unit of
# resampling is the **user**, the independent unit here; resampling interactions would pretend a heavy
# user's items are independent draws. $R = 1000$ resamples put the 2.5% quantile between the 25th and
# 26th smallest mean: enough for two decimals of the interval's ends.
#
# **Vectorised and seeded.** One call to `torch.randint(0, U, (R, U), generator=...)` draws every
# resample at once; `values[idx].mean(dim=1)` gives the R means; `torch.quantile` the interval. A seeded
# generator makes the interval reproducible (the same table on every run) and leaves the global RNG to
# everything else. Compute in float64: 1,000 means of 943 float32 numbers lose digits otherwise.
#
# ## Exercise 3 — `bootstrap_ci`

# %% tags=["export"]
def bootstrap_ci(values: torch.Tensor, *, n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """The mean of per-user values and its percentile bootstrap interval.

    Args:
        values: (U,) per-user values (float, int or bool), one per user.
        n_resamples: R, the number of bootstrap samples.
        confidence: c, e.g. 0.95.
        seed: the samples are ``idx = torch.randint(0, U, (R, U), generator=torch.Generator().manual_seed(seed))``,
            row r the users of sample r (with replacement); the global RNG is not used.

    Returns:
        ``(mean, low, high)`` as Python floats: the mean of ``values`` and the ``(1 - c) / 2`` and
        ``(1 + c) / 2`` quantiles (``torch.quantile``, linear interpolation) of the R sample means,
        computed in float64.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 3 `bootstrap_ci` (session 10) is not implemented yet: replace this line with your code")


# %%
check("bootstrap_ci")

# %% [markdown]
# ## 4. Paired differences
#
# Two systems on the same 943 users: the ranker's NDCG@10 interval and the retriever's overlap, so is
# the ranker better? Not a question the two intervals can answer. Most of each interval's width is the
# variation *between users* (some users are easy for every model, some hard for every model), and that
# variation is shared: it cancels in the difference. The **paired** bootstrap resamples users once and
# evaluates *both* systems on the same resample:
#
# $$\Delta^{*}_r = \bar m^{*}_{r}(\text{system}) - \bar m^{*}_{r}(\text{baseline}), \qquad
#   \text{same users } \mathrm{idx}_r \text{ for both}$$
#
# and reads the interval of the difference off the $\Delta^{*}_r$. Resampling each system independently
# (an **unpaired** bootstrap) puts the between-user variation back in: the interval of the difference is
# then about as wide as the two intervals together, and a real improvement looks like noise. When the
# difference's interval excludes 0, the improvement is unlikely to be an accident of which users were
# sampled (at about the 5% level; Smucker et al. in the reading compare this test with the others).
#
# With the same seed, every system's own interval comes out as `bootstrap_ci` computes it, and one
# set of resamples serves the whole table: vectorise over systems too, `values[:, idx]` is `(S, R, U)`.
#
# ## Exercise 4 — `paired_bootstrap`

# %% tags=["export"]
def paired_bootstrap(per_user: Mapping[str, torch.Tensor], baseline: str, *, n_resamples: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> dict[str, dict[str, float]]:
    """Each system's mean with its interval, and its difference to ``baseline`` with a paired interval.

    Args:
        per_user: ``{system: (U,) per-user values}``, the same U users in the same order for every system.
        baseline: the system the differences are taken against (one of ``per_user``).
        n_resamples, confidence, seed: as in ``bootstrap_ci``, whose resamples ``idx`` are used for EVERY
            system (drawn once).

    Returns:
        ``{system: {"mean", "low", "high", "delta", "delta_low", "delta_high"}}`` (Python floats), in the
        order of ``per_user``: ``mean, low, high`` as ``bootstrap_ci`` gives them; ``delta`` = mean - the
        baseline's mean, and ``delta_low, delta_high`` the quantiles of the R paired differences of sample
        means. The baseline's own delta and interval are 0.

    Raises:
        ValueError: ``baseline`` is not a system, or the systems have different numbers of users.
    """
    if baseline not in per_user:
        raise ValueError(f"baseline {baseline!r} is not one of the systems {list(per_user)}")
    # YOUR CODE HERE
    raise NotImplementedError("exercise 4 `paired_bootstrap` (session 10) is not implemented yet: replace this line with your code")


# %%
check("paired_bootstrap")

# %% [markdown]
# ## 5. Provided: the comparison table, its plot, and W&B
#
# * `comparison_table(boot, metrics, baseline, notes)`: a `harness.evaluation.MetricsTable` (the
#   pipeline's table) with each system's interval and its paired difference to the baseline;
# * `plot_comparison(ax, boot, baseline)`: every system's difference to the baseline with its interval,
#   a "forest plot"; an interval that crosses the dashed line at 0 is not a demonstrated difference;
# * `log_comparison(run, table, figures)`: the table as a `wandb.Table` and the figures as images, into a
#   W&B run (offline by default: `runs/wandb/`, `wandb sync` uploads it later).

# %% tags=["export"]
def comparison_table(boot: Mapping[str, Mapping[str, float]], metrics: Mapping[str, Mapping[str, float]],
                     baseline: str, metric: str = "NDCG@10", notes: Mapping[str, str] | None = None,
                     confidence: float = 0.95) -> MetricsTable:
    """A MetricsTable of ``metrics`` with ``boot``'s intervals (of ``metric``) and paired differences (provided)."""
    table = MetricsTable()
    for name, row in metrics.items():
        table.add(name, dict(row), (notes or {}).get(name, ""))
        if name in boot:
            b = boot[name]
            table.add_interval(name, metric, b["low"], b["high"], confidence)
            if name != baseline:
                table.add_difference(name, metric, baseline, b["delta"], b["delta_low"], b["delta_high"], confidence)
    return table


def plot_comparison(ax, boot: Mapping[str, Mapping[str, float]], baseline: str, metric: str = "NDCG@10"):
    """Forest plot: each system's difference to ``baseline`` with its paired interval (provided)."""
    names = [n for n in boot if n != baseline]
    y = np.arange(len(names))[::-1]
    deltas = np.array([boot[n]["delta"] for n in names])
    low = deltas - np.array([boot[n]["delta_low"] for n in names])
    high = np.array([boot[n]["delta_high"] for n in names]) - deltas
    colors = ["tab:green" if boot[n]["delta_low"] > 0 else "tab:red" if boot[n]["delta_high"] < 0 else "tab:grey"
              for n in names]
    for yi, d, lo, hi, color in zip(y, deltas, low, high, colors):
        ax.errorbar([d], [yi], xerr=[[lo], [hi]], fmt="o", color=color, capsize=4, linewidth=2)
    ax.axvline(0, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y, names)
    ax.set_xlabel(f"Δ {metric} vs {baseline} (95% paired bootstrap interval)")
    return ax


def log_comparison(run, table: MetricsTable, figures: Mapping[str, object] | None = None) -> None:
    """Log a comparison table (and matplotlib figures) to a W&B run (provided)."""
    import wandb

    columns = ["model", *table.columns, "CI low", "CI high", "Δ", "Δ low", "Δ high", "notes"]
    rows = []
    for name, metrics in table.rows.items():
        iv = next(iter(table.intervals.get(name, {}).values()), {})
        d = next(iter(table.differences.get(name, {}).values()), {})
        rows.append([name, *(metrics.get(c) for c in table.columns), iv.get("low"), iv.get("high"), d.get("delta"),
                     d.get("low"), d.get("high"), table.notes.get(name, "")])
    run.log({"comparison": wandb.Table(columns=columns, data=rows),
             **{name: wandb.Image(fig) for name, fig in (figures or {}).items()}})


# %% [markdown]
# ## Run it, part 1: the pipeline's retrievers and rankers
#
# The pipeline's own models: the two-tower stages of `harness.pipeline.retrieval`, the ranking data of
# the best retriever by validation NDCG@10 (`harness.pipeline.ranking.ranking_data`: the hard-negative
# pools of session 08), and four DLRM variants trained by session 05's loop on session 08's losses, each
# selected on the validation split. `trained_ranker` loads a variant from `runs/pipeline/` in a second
# when `python -m harness pipeline` (or an earlier run of this notebook) trained it on the same data,
# retriever, config and code; otherwise it trains it (about a minute each on a laptop CPU).
#
# | variant | loss | negatives | retrieval score | history bag |
# | --- | --- | --- | --- | --- |
# | `DLRM` (the pipeline's) | BCE | mixed: uniform, popularity, hard | yes | yes |
# | `DLRM, no retrieval score` (the pipeline's) | BCE | mixed | **no** | yes |
# | `DLRM, no history bag` | BCE | mixed | yes | **blanked** |
# | `DLRM, uniform negatives` | BCE | **uniform only** | yes | yes |

# %%
import os
import time

import matplotlib.pyplot as plt
import wandb

from harness.pipeline import ranking
from harness.tracking import init_run

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
start = time.perf_counter()
ctx, cfg = ranking.notebook_context(DATASET)  # popularity, and both towers (trained, or from the pipeline's cache)
ds = ctx.dataset
data = ranking.ranking_data(ctx)
retriever = data.view.name
variants = {"DLRM": ranking.Variant("dlrm"),
            "DLRM, no retrieval score": ranking.Variant("dlrm-no-score", use_score=False),
            "DLRM, no history bag": ranking.Variant("dlrm-no-history", drop=("history",)),
            "DLRM, uniform negatives": ranking.Variant("dlrm-uniform", shares=ranking.uniform_shares())}
rankers, train_results = {}, {}
for label, variant in variants.items():
    rankers[label], train_results[label], reused = ranking.trained_ranker(ctx, data, variant, cfg, log=lambda line: None)
    r = train_results[label]
    print(f"{label:>25}: {'loaded' if reused else 'trained'}; {r['steps']} steps, {r['seconds']:.0f} s "
          f"(stopped by {r['stopped_by']}); selected epoch {r['selected_epoch']}, valid NDCG@10 {r['valid']['NDCG@10']:.4f}")
print(f"ready in {time.perf_counter() - start:.0f} s")

# %% [markdown]
# ## Run it, part 2: retrieve → rank on the test split
#
# For every test user: the retriever's query from the history before the test item, the top
# `K = cfg.candidates.K` unseen items, each variant's scores, the top 50. `rank_fn` wraps a ranker for
# exercise 1: features of (user, candidate) pairs as they stand before the test split
# (`builder.at(ds, "test")`), plus the candidate's retrieval score for the variants that use it.
#
# Two checks tie this to the rest of the workbook: the candidates your `retrieve_then_rank` returns are
# exactly the provided `retrieve_candidates`' (both call session 06's exact search), and the retriever
# alone, measured by your `per_user_metrics`, reproduces the pipeline's two-tower row (computed by
# `harness.evaluation` from the full score matrix).

# %%
K = int(cfg.candidates.K)
sweep = [k for k in cfg.candidates.sweep if k <= ds.n_items - 1]
test = ranking.retrieve_candidates(data.view, ds, "test", max(sweep + [K]))  # the deepest list, for the sweep


def rank_fn_of(model, variant):
    """rank_fn(users, candidates) -> (B, K) logits of a ranker, for retrieve_then_rank."""
    builder = data.builder_for(variant, "test")
    row_of = {int(u): b for b, u in enumerate(test.users.tolist())}

    def rank_fn(users, candidates):
        rows = torch.tensor([row_of[int(u)] for u in users.tolist()])
        queries = test.queries[rows]
        sub = ranking.Candidates("test", users, test.targets[rows], queries, test.seen[rows], candidates,
                                 ranking.candidate_scores(data.view, queries, candidates))
        return ranking.rank_candidates(model, builder, sub, variant)

    return rank_fn


def evaluate_system(model, variant, K: int, ks=(10, 50)) -> tuple[dict, torch.Tensor]:
    ranked, candidates = retrieve_then_rank(data.view.index, test.queries, test.seen, test.users,
                                            rank_fn_of(model, variant), K=K, k=min(max(ks), K))
    out = per_user_metrics(ranked, test.targets, ks)
    out[f"Recall@{K}"] = per_user_metrics(candidates, test.targets, (K,))[f"HR@{K}"]
    return out, candidates


per_user = {retriever: per_user_metrics(test.items[:, :50], test.targets, (10, 50))}
per_user[retriever][f"Recall@{K}"] = per_user_metrics(test.items[:, :K], test.targets, (K,))[f"HR@{K}"]
start = time.perf_counter()
for label, model in rankers.items():
    per_user[label], candidates = evaluate_system(model, variants[label], K)
agree = float((candidates == test.items[:, :K]).float().mean())  # exact search both times: only a float tie can differ
assert agree > 0.999, f"retrieve_then_rank and retrieve_candidates disagree on {1 - agree:.2%} of the candidates"
print(f"{len(variants)} rankers on {len(test):,} test users x {K} candidates in {time.perf_counter() - start:.1f} s")
pipeline_row = ctx.table.rows[retriever]
gap = max(abs(float(per_user[retriever][m].mean()) - pipeline_row[m]) for m in ("HR@10", "NDCG@10"))
assert gap <= 1.0 / len(test) + 1e-9, f"the retriever alone differs from the pipeline's row by {gap}"
print(f"{retriever} alone: HR@10 {float(per_user[retriever]['HR@10'].mean()):.4f}, NDCG@10 "
      f"{float(per_user[retriever]['NDCG@10'].mean()):.4f} (the pipeline's row: {pipeline_row['HR@10']:.4f}, "
      f"{pipeline_row['NDCG@10']:.4f})")

# %% [markdown]
# ## Run it, part 3: the comparison table, with intervals
#
# Every system's mean NDCG@10 with its 95% percentile interval, and its paired difference to the
# retriever alone. Popularity and the other tower are there for scale (their rows come from the
# pipeline's stages; their per-user values are measured the same way: popularity's top 50 unseen items,
# the other tower through the same FAISS search).

# %%
s01 = upstream(1)
counts = s01.item_popularity(torch.tensor(ds.history("test")["item_id"].to_numpy()), ds.n_items)
seen_mask = torch.zeros(len(test), ds.n_items + 1, dtype=torch.bool)
seen_mask.scatter_(1, test.seen, True)
popular = s01.recommend_popular(counts, seen_mask, k=50)
others = {"popularity": per_user_metrics(popular, test.targets, (10, 50))}
for name, model in ctx.artifacts["retrievers"].items():
    if name != retriever:
        view = ranking.RetrieverView.of(model, data.view.max_len, name)
        others[name] = per_user_metrics(ranking.retrieve_candidates(view, ds, "test", 50).items, test.targets, (10, 50))
systems = {**others, **per_user}
boot = paired_bootstrap({n: v["NDCG@10"] for n, v in systems.items()}, retriever,
                        n_resamples=int(cfg.candidates.bootstrap), seed=0)
summary = {n: {"HR@10": float(v["HR@10"].mean()), "NDCG@10": float(v["NDCG@10"].mean()),
               "Recall@50": float(v["HR@50"].mean())} for n, v in systems.items()}
notes = {label: variants[label].describe(cfg) for label in variants}
notes[retriever] = f"retriever alone; its top {K} holds the held-out item for {float(per_user[retriever][f'Recall@{K}'].mean()):.1%}"
table = comparison_table(boot, summary, retriever, notes=notes)
print(f"{DATASET}, test split, {len(test):,} users; rankers rerank the top {K} of {retriever}\n")
print(table)
unpaired = {n: bootstrap_ci(v["NDCG@10"], seed=s) for s, (n, v) in enumerate(systems.items())}  # one seed each
full = boot["DLRM"]
print(f"\nDLRM vs {retriever}: NDCG@10 {full['delta']:+.4f}, paired 95% interval [{full['delta_low']:+.4f}, "
      f"{full['delta_high']:+.4f}] (width {full['delta_high'] - full['delta_low']:.4f}); the two systems' own intervals "
      f"are {unpaired['DLRM'][2] - unpaired['DLRM'][1]:.4f} and {unpaired[retriever][2] - unpaired[retriever][1]:.4f} wide")

# %%
fig_table, axes = plt.subplots(1, 2, figsize=(14, 3.8), gridspec_kw={"width_ratios": [1, 1.2]})
names = list(boot)
means = np.array([boot[n]["mean"] for n in names])
axes[0].barh(np.arange(len(names))[::-1], means, xerr=[means - [boot[n]["low"] for n in names],
                                                        [boot[n]["high"] for n in names] - means],
             color=["tab:blue" if n.startswith("DLRM") else "grey" for n in names], capsize=3)
axes[0].set_yticks(np.arange(len(names))[::-1], names)
axes[0].set_xlabel("NDCG@10 (95% bootstrap interval)")
plot_comparison(axes[1], boot, retriever)
axes[1].set_title("differences to the retriever alone: green/red = interval excludes 0")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Run it, part 4: the K sweep, and the ceiling
#
# The same full ranker, reranking the top K for K in `cfg.candidates.sweep`. The retriever's Recall@K is
# the share of users whose held-out item is among the candidates at all: no ranker can do better at
# any cut-off. More candidates raise the ceiling, and hand the ranker more items to get wrong: which
# effect wins is the curve's shape.

# %%
sweep_rows = {}
for K_s in sweep:
    per_k, _ = evaluate_system(rankers["DLRM"], variants["DLRM"], K_s, ks=(10,))
    b = paired_bootstrap({"DLRM": per_k["NDCG@10"], retriever: per_user[retriever]["NDCG@10"]}, retriever,
                         n_resamples=int(cfg.candidates.bootstrap), seed=0)["DLRM"]
    sweep_rows[K_s] = {"recall": float(per_k[f"Recall@{K_s}"].mean()), "HR@10": float(per_k["HR@10"].mean()), **b}
def ci(low: float, high: float, signed: bool = False) -> str:
    return f"[{low:+.4f}, {high:+.4f}]" if signed else f"[{low:.4f}, {high:.4f}]"


print(f"{'K':>5}{'Recall@K (ceiling)':>20}{'HR@10':>9}{'NDCG@10':>9}{'95% CI':>20}{'Δ vs retriever [95% CI]':>34}")
for K_s, r in sweep_rows.items():
    delta = f"{r['delta']:+.4f} " + ci(r["delta_low"], r["delta_high"], signed=True)
    print(f"{K_s:>5}{r['recall']:>20.4f}{r['HR@10']:>9.4f}{r['mean']:>9.4f}{ci(r['low'], r['high']):>20}{delta:>34}")

# %%
fig_sweep, axes = plt.subplots(1, 2, figsize=(13, 3.8))
Ks = list(sweep_rows)
axes[0].plot(Ks, [sweep_rows[k]["recall"] for k in Ks], marker="o", color="black", label="Recall@K of the retriever (ceiling)")
axes[0].plot(Ks, [sweep_rows[k]["HR@10"] for k in Ks], marker="o", color="tab:blue", label="HR@10 after reranking the top K")
axes[0].axhline(float(per_user[retriever]["HR@10"].mean()), color="grey", linestyle="--", label="HR@10 of the retriever alone")
axes[0].set_ylabel("share of test users")
axes[0].legend(fontsize=8)
deltas = np.array([sweep_rows[k]["delta"] for k in Ks])
axes[1].errorbar(Ks, deltas, yerr=[deltas - [sweep_rows[k]["delta_low"] for k in Ks],
                                   [sweep_rows[k]["delta_high"] for k in Ks] - deltas],
                 marker="o", capsize=4, color="tab:blue", label="DLRM over the top K")
axes[1].axhline(0, color="grey", linestyle="--", label="the retriever alone")
axes[1].set_ylabel("Δ test NDCG@10 vs the retriever\n(95% paired interval)")
axes[1].legend(fontsize=8)
for ax in axes:
    ax.set_xscale("log")
    ax.set_xticks(Ks, [str(k) for k in Ks])
    ax.minorticks_off()
    ax.set_xlabel("K, candidates reranked")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Run it, part 5: ablations, one change at a time
#
# Each variant differs from the full ranker in one thing; the table gives each difference to the full
# `DLRM` with its paired interval, on the same K candidates of the same users.

# %%
ablation = paired_bootstrap({label: per_user[label]["NDCG@10"] for label in variants}, "DLRM",
                            n_resamples=int(cfg.candidates.bootstrap), seed=0)
print(f"{'variant':>26}{'NDCG@10':>9}{'Δ vs DLRM [95% CI]':>30}   what changed")
for label, b in ablation.items():
    change = "—" if label == "DLRM" else label.split(", ", 1)[1]
    delta = f"{b['delta']:+.4f} " + ci(b["delta_low"], b["delta_high"], signed=True)
    print(f"{label:>26}{b['mean']:>9.4f}{delta:>30}   {change}")
fig_ablation, ax = plt.subplots(figsize=(8, 2.8))
plot_comparison(ax, ablation, "DLRM")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### Why the retriever's score is hard to improve on
#
# The ranker learns how far to trust each feature from its training examples, and on those the
# retrieval score is optimistic: the retriever was trained on the very same interactions (every
# training position is one of its targets), so it ranks a training positive far higher than it will
# rank a held-out item. The cell measures it: the retriever's HR@10 on a sample of its own training
# examples (each from the history before it, the user's other training items excluded) against its
# HR@10 on the test users, and the cosine of the positive in both. A ranker fitted where the score is
# this reliable leans on it, and at test time it mostly keeps the retriever's order: whatever it adds
# must come from the other features (the no-retrieval-score row shows how much they know on their own).

# %%
rows = torch.nonzero(data.has_query).squeeze(1)
rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:3000]]
train_targets = data.positives.items[rows]
others = data.exclude(data.positives.users[rows])
others = torch.where(others == train_targets[:, None], 0, others)  # the user's training items but this target
train_scores = upstream(6).mask_seen(data.queries[rows] @ data.view.item_vectors.T, others)
train_target_scores = train_scores.gather(1, train_targets[:, None])
train_hr = float(((train_scores > train_target_scores).sum(dim=1) < 10).float().mean())
test_target_scores = ranking.candidate_scores(data.view, test.queries, test.targets[:, None])[:, 0]
print(f"{retriever} on {len(rows):,} of its own training examples: HR@10 {train_hr:.4f}, mean cosine of the positive "
      f"{float(train_target_scores.mean()):.3f}; on the {len(test):,} test users: HR@10 "
      f"{float(per_user[retriever]['HR@10'].mean()):.4f}, mean cosine {float(test_target_scores.mean()):.3f}")
fig_shift, ax = plt.subplots(figsize=(8, 3.2))
bins = np.linspace(-0.5, 1.0, 50)
ax.hist(train_target_scores[:, 0].numpy(), bins=bins, density=True, alpha=0.5, label="training positives (the ranker learns here)")
ax.hist(test_target_scores.numpy(), bins=bins, density=True, alpha=0.5, label="test held-out items (the ranker is judged here)")
ax.set_xlabel("retrieval score (cosine) of the positive")
ax.set_ylabel("density")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Run it, part 6: AUC of the rankers
#
# AUC on the held-out test item against 100 uniformly drawn unseen items (a mean over negatives, so a
# sample estimates the full-catalog value without bias), and against the retriever's top-K candidates,
# the negatives the ranker actually faces (where the retriever missed the held-out item, all K score above
# it by the retriever: the first row shows how low that puts the retriever's own AUC). Session 09's `auc`,
# per user, with bootstrap intervals.

# %%
auc_rows = {}
sub = test.top(K)
for label, model in {f"{retriever} (its cosine)": None, **rankers}.items():
    variant = variants.get(label)
    uniform_auc = ranking.ranker_auc(model, data, variant, sub, negatives="uniform", n=100)
    hard_auc = ranking.ranker_auc(model, data, variant, sub, negatives="hard")
    auc_rows[label] = {"uniform": bootstrap_ci(uniform_auc), "hard": bootstrap_ci(hard_auc)}
width = max(len(label) for label in auc_rows) + 2
print(f"{'ranker':>{width}}{'AUC vs 100 uniform [95% CI]':>32}{'AUC vs the top-' + str(K) + ' [95% CI]':>32}")
for label, r in auc_rows.items():
    u, h = r["uniform"], r["hard"]
    print(f"{label:>{width}}{f'{u[0]:.4f} ' + ci(u[1], u[2]):>32}{f'{h[0]:.4f} ' + ci(h[1], h[2]):>32}")

# %% [markdown]
# ## Run it, part 7: what the numbers say, and W&B
#
# The verdict below is computed from the intervals above. Then the table and the figures go to a W&B run
# (offline: `runs/wandb/`; `wandb sync` uploads it, where runs of different days can be compared).

# %%
d = boot["DLRM"]
if d["delta_low"] > 0:
    verdict = "beats the retriever alone: the paired interval of the difference excludes 0"
elif d["delta"] > 0:
    verdict = "is ahead of the retriever alone, but the paired interval includes 0: not a demonstrated improvement"
else:
    verdict = "does not beat the retriever alone"
print(f"Reranking the top {K} of {retriever}, the DLRM {verdict} (NDCG@10 {d['mean']:.4f} vs {boot[retriever]['mean']:.4f}, "
      f"Δ {d['delta']:+.4f} [{d['delta_low']:+.4f}, {d['delta_high']:+.4f}]).")
no_score = ablation["DLRM, no retrieval score"]
print(f"Without the retrieval score the ranker is on its own: NDCG@10 {no_score['mean']:.4f} "
      f"(Δ vs the full DLRM {no_score['delta']:+.4f} [{no_score['delta_low']:+.4f}, {no_score['delta_high']:+.4f}]), "
      f"{'above' if no_score['mean'] > boot[retriever]['mean'] else 'below'} the retriever alone.")
for label in ("DLRM, no history bag", "DLRM, uniform negatives"):
    a = ablation[label]
    effect = "hurts" if a["delta_high"] < 0 else "helps" if a["delta_low"] > 0 else "makes no demonstrated difference"
    print(f"{label.split(', ', 1)[1].capitalize()}: {effect} (Δ {a['delta']:+.4f} [{a['delta_low']:+.4f}, {a['delta_high']:+.4f}]).")
best_K = max(sweep_rows, key=lambda k: sweep_rows[k]["mean"])
print(f"K sweep: NDCG@10 is highest at K = {best_K} ({sweep_rows[best_K]['mean']:.4f}); the ceiling rises from "
      f"{sweep_rows[sweep[0]]['recall']:.3f} at K = {sweep[0]} to {sweep_rows[sweep[-1]]['recall']:.3f} at K = {sweep[-1]}.")

run = init_run(f"session10-{DATASET}", {"dataset": DATASET, "preset": cfg.preset, "K": K, "retriever": retriever},
               group="session10", settings=wandb.Settings(quiet=True))
log_comparison(run, table, {"comparison": fig_table, "k_sweep": fig_sweep, "ablations": fig_ablation})
run.summary.update({"DLRM/NDCG@10": d["mean"], "DLRM/delta": d["delta"], "DLRM/delta_low": d["delta_low"],
                    "DLRM/delta_high": d["delta_high"]})
run.finish()
print("logged to W&B:", "disabled" if os.environ.get("WANDB_MODE") == "disabled" else "runs/wandb/ (offline)")

# %% [markdown]
# ## Reflection
#
# 1. Your comparison table has a popularity row, two retrievers and the rankers. For each adjacent pair,
#    does the 95% interval of the *difference* exclude 0? Which conclusion of the README would you soften
#    after seeing the intervals?
# 2. Did doubling the ranker's candidate count raise Recall@K but lower the final NDCG@10? Explain how
#    that can happen, and what it says about the ranker's training negatives (session 08 mined them from
#    the top `cfg.negatives.mine_k`).
# 3. Bootstrap intervals assume users are independent draws from the population you care about. Name two
#    ways that fails for MovieLens-100K, and what you would do on Amazon with 1.6M users instead (where
#    `values[:, idx]` of `paired_bootstrap` would hold S × 1,000 × 1.6M numbers).
# 4. Pick one ablation whose effect is within noise. How many users would you need to detect it, roughly
#    (the interval's width shrinks as $1/\sqrt{U}$)?
#
# **After:** [readings/session_10.md](../readings/session_10.md): Ferrari Dacrema et al. on baselines,
# Rendle et al. on dot products vs MLPs, and the checklist: walk through your own pipeline end to end.
# **Next:** reading session R2, then session 11 gives the ranker text features for items nobody has
# rated yet.
