"""The ranking track: what the ranker trains on, what it ranks, and the pipeline's DLRM stages.

The components come through :func:`harness.upstream` (session 02's samplers, session 05's training
loop, session 06's FAISS search and seen-item masking, session 07's DLRM, session 08's losses and negative samplers,
session 10's two-stage evaluation), so this glue runs on the reference or, in
``python -m harness pipeline --impl sessions``, on your own code. Sessions 08 and 10 and the
pipeline all use it:

    view = RetrieverView.of(retriever, max_len=50)            # item vectors, an exact FAISS index, user queries
    data = RankingData.build(ds, view, cfg)                   # training positives, hard-negative pools, popularity
    model, result = train_ranker(data, Variant("dlrm"), cfg)  # session 05's fit on session 08's loss and sampler
    cands = retrieve_candidates(view, ds, "test", K=100)      # the retriever's top-K, seen items excluded
    scores = rank_candidates(model, data.builder_for(variant, "test"), cands, variant)

**No leakage.** The ranker's training examples are the interactions before the validation split
(``FeatureBuilder.fit(ds, "valid")``). The retriever's query of a training example at position
``t`` of a user's sequence is computed from items ``< t`` only (:meth:`RetrieverView.position_queries`),
so hard negatives and the retrieval-score feature of a training example never see its target or
anything after it. Negatives exclude every training interaction of the user (the target, the
history, and later positives too: a negative that the user picks later is a false one). Ranking a
split uses the history before that split only: the ranker's features through ``builder.at(ds, split)``
and the retriever's query through ``dataset.sequences(upto=split)``.

Stages: ``dlrm`` trains the DLRM on mixed (uniform, popularity and hard) negatives from the best
retriever by validation NDCG@10, with the retriever's score as a feature and without it, reranks
that retriever's top-K test candidates, and adds rows with bootstrap intervals (session 10) and
the paired difference to the retriever alone.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..autograder.loader import upstream
from .cache import content_digest
from .features import FeatureBuilder, Positives
from .runner import Stage, StageSkipped

SCORE_FEATURE = "retrieval_score"  # the retriever's cosine of (query, candidate), a dense feature of the ranker
SOURCES = ("uniform", "popularity", "hard")  # session 08's mixed_negatives codes its columns 0, 1, 2 in this order


# --- the retriever, as the ranking track sees it --------------------------------------------------

@dataclass
class RetrieverView:
    """A trained two-tower retriever: its item vectors, an exact FAISS index over them, its user queries.

    ``item_vectors`` is float32 (n_items + 1, d) on the CPU (row 0: padding); ``index`` is session
    06's ``build_flat_index`` over items 1..n (label r = item r + 1).
    """

    model: nn.Module
    item_vectors: torch.Tensor
    index: Any
    max_len: int
    name: str = "retriever"

    @classmethod
    @torch.no_grad()
    def of(cls, model: nn.Module, max_len: int, name: str = "retriever") -> "RetrieverView":
        model.eval()
        device = next(model.parameters()).device
        vectors = model.item_tower(torch.arange(model.n_items + 1, device=device)).float().cpu()
        vectors[0] = 0.0
        return cls(model, vectors, upstream(6).build_flat_index(vectors, use_gpu=False), max_len, name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def queries(self, sequences: Sequence, users: Sequence[int], batch_size: int = 512) -> torch.Tensor:
        """float32 (B, d): each user's vector from the last ``max_len`` items of ``sequences[u]``."""
        from .retrieval import history_batch

        self.model.eval()
        out = []
        users = [int(u) for u in users]
        for start in range(0, len(users), batch_size):
            batch = history_batch(sequences, users[start:start + batch_size], self.max_len)
            out.append(self.model.user_tower(batch["history"].to(self.device), batch["mask"].to(self.device)).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.item_vectors.shape[1])

    @torch.no_grad()
    def position_queries(self, sequences: Sequence, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """The user vector *before* every interaction: what the retriever knew at that point.

        Row ``r`` of the result belongs to the ``r``-th interaction of ``sequences`` in user-then-time
        order (the order of ``FeatureBuilder.positives()``): user u's position t gets the causal
        tower's output after items ``t - c .. t - 1``, a context of ``c`` between ``max_len // 2`` and
        ``max_len - 1`` items (all of them while fewer exist). Windows of ``max_len`` items start every
        ``max_len // 2`` positions and each position is read from the window where its context is
        longest, so the whole file costs two forward passes, not one per position. Position 0 has no
        history: its row is zero and ``has_query`` is False there.

        Returns:
            (queries float32 (N, d), has_query bool (N,)), N = total interactions.
        """
        collate = upstream(2).collate_sequences
        self.model.eval()
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        queries = torch.zeros(int(offsets[-1]), self.item_vectors.shape[1])
        has = torch.zeros(int(offsets[-1]), dtype=torch.bool)
        S = max(1, self.max_len // 2)
        # Window k starts at item a = k S and answers the histories ending at item j (target j + 1) for
        # j in [a + S - 1, a + 2S - 2] (k >= 1: a context of S .. 2S - 1 <= max_len items) or
        # j in [0, 2S - 2] (k = 0: the whole history); it reads items a .. (its last j).
        windows = []
        for user, n in enumerate(lengths):
            k = 0
            while True:
                a = k * S
                first, last = (0 if k == 0 else a + S - 1), min(a + 2 * S - 2, int(n) - 2)
                if first > last:
                    break
                windows.append((user, a, first, last))
                k += 1
        for start in range(0, len(windows), batch_size):
            chunk = windows[start:start + batch_size]
            examples = [{"user_id": u, "history": torch.from_numpy(np.array(sequences[u][a:last + 1], dtype=np.int64)),
                         "target": 0} for u, a, _, last in chunk]
            batch = collate(examples, padding_side="left")
            out = self.model.user_tower.encode(batch["history"].to(self.device),
                                               batch["mask"].to(self.device)).float().cpu()
            width = out.shape[1]
            rows, cols, bs = [], [], []
            for b, (user, a, first, last) in enumerate(chunk):
                j = np.arange(first, last + 1)
                rows.append(offsets[user] + j + 1)  # the history ending at item j belongs to target j + 1
                cols.append(width - (last + 1 - a) + (j - a))  # left padding: the window's items end the row
                bs.append(np.full(len(j), b))
            rows, cols, bs = (torch.from_numpy(np.concatenate(x)) for x in (rows, cols, bs))
            queries[rows] = out[bs, cols]
            has[rows] = True
        return queries, has


# --- candidates ------------------------------------------------------------------------------------

@dataclass
class Candidates:
    """The retriever's top-K for each user of a split (seen items excluded), with what ranking them needs.

    ``items`` int64 (B, K), best retrieval score first, 0 = padding; ``retrieval`` float32 (B, K), the
    retriever's cosine (-inf at padding); ``queries`` float32 (B, d); ``seen`` int64 (B, S) padded.
    """

    split: str
    users: torch.Tensor
    targets: torch.Tensor
    queries: torch.Tensor
    seen: torch.Tensor
    items: torch.Tensor
    retrieval: torch.Tensor

    def __len__(self) -> int:
        return len(self.users)

    def top(self, K: int) -> "Candidates":
        """The first K candidates of each user (what a smaller K retrieves: the search is exact)."""
        return dataclasses.replace(self, items=self.items[:, :K], retrieval=self.retrieval[:, :K])


def candidate_scores(view: RetrieverView, queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """float32 (B, K): the retriever's score of each candidate, -inf at padding 0."""
    scores = (queries[:, None, :] * view.item_vectors[items]).sum(-1)
    return scores.masked_fill(items == 0, -math.inf)


def retrieve_candidates(view: RetrieverView, dataset, split: str, K: int) -> Candidates:
    """The retriever's top-K unseen items for every user of ``split`` (session 06's ``search_excluding_seen``).

    Everything comes from the history before ``split``: the query (the last ``max_len`` items of
    ``dataset.sequences(upto=split)``) and the seen items excluded. The held-out item is never an input.
    """
    s06 = upstream(6)
    users, targets = dataset.targets(split)
    sequences = dataset.sequences(upto=split)
    queries = view.queries(sequences, users)
    seen = s06.padded_seen(sequences, users)
    items = s06.search_excluding_seen(view.index, queries, seen, K)
    return Candidates(split, torch.as_tensor(np.array(users), dtype=torch.long),
                      torch.as_tensor(np.array(targets), dtype=torch.long), queries, seen, items,
                      candidate_scores(view, queries, items))


# --- training data ---------------------------------------------------------------------------------

def _padded_rows(flat: np.ndarray, offsets: np.ndarray, users: np.ndarray) -> torch.Tensor:
    """int64 (B, S): the items flat[offsets[u]:offsets[u + 1]] of each user, right-padded with 0."""
    starts, ends = offsets[users], offsets[users + 1]
    width = max(int((ends - starts).max()) if len(users) else 0, 1)
    idx = starts[:, None] + np.arange(width)[None, :]
    valid = idx < ends[:, None]
    out = np.where(valid, flat[np.minimum(idx, max(len(flat) - 1, 0))] if len(flat) else 0, 0)
    return torch.from_numpy(out.astype(np.int64))


@dataclass
class RankingData:
    """Everything the ranker trains on, for one dataset and one retriever.

    * ``builder``: ``FeatureBuilder.fit(ds, "valid")`` (train interactions only); ``positives`` its examples.
    * ``pool``: int32 (N, K) per positive, the retriever's top-K from the history before it, the user's
      training items excluded (exact scores over the catalog, session 06's ``mask_seen``); zero rows
      where the example has no history.
    * ``queries``: float32 (N, d), the retriever's query of each positive (its score feature).
    * ``probs``: float64 (n_items + 1,), training popularity ``count ** alpha`` (session 02).
    * ``valid``: the retriever's top-K validation candidates, for model selection.
    """

    dataset: Any
    view: RetrieverView
    builder: FeatureBuilder
    positives: Positives
    pool: torch.Tensor
    queries: torch.Tensor
    has_query: torch.Tensor
    probs: torch.Tensor
    train_flat: np.ndarray
    train_offsets: np.ndarray
    valid: Candidates
    seconds: float = 0.0
    _scored: dict = field(default_factory=dict)  # memo: the score sample, the builders

    @classmethod
    def build(cls, dataset, view: RetrieverView, cfg, log: Callable[[str], None] = print,
              mined: Mapping[str, torch.Tensor] | None = None) -> "RankingData":
        """Fit the features, mine the hard-negative pools and retrieve the validation candidates.

        ``mined``: the ``queries``, ``has_query`` and ``pool`` of :func:`mine` computed earlier (a cache);
        mined here when None.
        """
        start = time.perf_counter()
        builder = fit_builder(dataset, cfg)
        positives = builder.positives()
        sequences = dataset.sequences(upto="valid")
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
        if not np.array_equal(flat, positives.items.numpy()):
            raise RuntimeError("the feature builder's positives and dataset.sequences('valid') disagree in order")
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int64)
        fresh = mined is None
        if fresh:
            mined = mine(dataset, view, cfg)
        counts = torch.from_numpy(dataset.item_counts(upto="valid"))
        probs = upstream(2).popularity_distribution(counts, float(cfg.negatives.alpha))
        valid = retrieve_candidates(view, dataset, "valid", cfg.candidates.K)
        data = cls(dataset, view, builder, positives, mined["pool"], mined["queries"], mined["has_query"], probs, flat,
                   offsets, valid, seconds=time.perf_counter() - start)
        if fresh:
            log(f"   ranking data: {len(data):,} training positives, hard-negative pools of {data.pool.shape[1]} from "
                f"`{view.name}` mined with each example's own history ({data.seconds:.1f} s)")
        return data

    def __len__(self) -> int:
        return len(self.positives.users)

    def training_rows(self, per_user: int | None) -> torch.Tensor:
        """Row numbers of the positives to train on: each user's last ``per_user`` interactions (None: all).

        Metrics average over users, and the latest interactions are the most like the held-out ones;
        a cap keeps the heavy users (700 ratings) from outweighing everyone else a hundredfold.
        """
        positions, users = self.positives.positions, self.positives.users
        if not per_user:
            return torch.arange(len(users))
        lengths = torch.from_numpy(np.diff(self.train_offsets))[users]
        return torch.nonzero(positions >= lengths - int(per_user)).squeeze(1)

    def exclude(self, users: torch.Tensor) -> torch.Tensor:
        """int64 (B, S): every training item of each user (never a negative), right-padded with 0."""
        return _padded_rows(self.train_flat, self.train_offsets, users.numpy())

    def builder_for(self, variant: "Variant", split: str = "valid") -> FeatureBuilder:
        """The feature builder of a variant (with the score column when it uses it), state before ``split``."""
        key = ("builder", bool(variant.use_score), split)
        if key not in self._scored:
            builder = self.builder
            if variant.use_score:
                builder = builder.with_extra_dense({SCORE_FEATURE: self.score_statistics_sample()})
            self._scored[key] = builder if split == "valid" else builder.at(self.dataset, split)
        return self._scored[key]

    def score_statistics_sample(self) -> torch.Tensor:
        """The retrieval score on the training pairs (positives and hard candidates) for its mean and std."""
        if "sample" not in self._scored:
            rows = torch.nonzero(self.has_query).squeeze(1)
            g = torch.Generator().manual_seed(0)
            rows = rows[torch.randperm(len(rows), generator=g)[:20_000]]
            items = torch.cat([self.positives.items[rows, None], self.pool[rows].long()], dim=1)
            scores = candidate_scores(self.view, self.queries[rows], items)
            self._scored["sample"] = scores[torch.isfinite(scores)]
        return self._scored["sample"]


def fit_builder(dataset, cfg) -> FeatureBuilder:
    """Session 07's features, fit on the training interactions (``cfg.features`` of ``load_config("dlrm")``)."""
    f = cfg.features
    return FeatureBuilder.fit(dataset, upto="valid", history_len=f.history_len, min_count=f.min_count,
                              max_vocab=f.max_vocab)


def mine(dataset, view: RetrieverView, cfg) -> dict[str, torch.Tensor]:
    """The retriever's query before every training interaction, and its top ``cfg.negatives.mine_k`` pool."""
    sequences = dataset.sequences(upto="valid")
    queries, has_query = view.position_queries(sequences)
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    users = np.repeat(np.arange(len(sequences)), lengths)
    pool = mine_pools(view, queries, has_query, users, flat, offsets, int(cfg.negatives.mine_k))
    return {"queries": queries, "has_query": has_query, "pool": pool}


def mine_pools(view: RetrieverView, queries: torch.Tensor, has_query: torch.Tensor, users: np.ndarray,
               flat: np.ndarray, offsets: np.ndarray, K: int, chunk: int = 4096) -> torch.Tensor:
    """int32 (N, K): for each example, the retriever's top-K items that the user never trained on.

    Exact retrieval as a matrix product over the catalog with session 06's ``mask_seen`` (faster here
    than an index search, which has to over-fetch K + the user's whole history). Rows without a
    query are zero.
    """
    mask_seen = upstream(6).mask_seen
    pool = torch.zeros(len(queries), K, dtype=torch.int32)
    rows = torch.nonzero(has_query).squeeze(1)
    items = view.item_vectors.T.contiguous()  # (d, n_items + 1)
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        scores = mask_seen(queries[part] @ items, _padded_rows(flat, offsets, users[part.numpy()]))
        top, ids = scores.topk(min(K, scores.shape[1]), dim=1)
        pool[part, :ids.shape[1]] = torch.where(torch.isfinite(top), ids, 0).to(torch.int32)
    return pool


# --- the ranker's variants, training and scoring ----------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """One ranker configuration: its loss, its negatives, its features.

    ``shares``: None takes ``cfg.negatives`` (the mixed recipe); ``use_score``: the retriever's score
    as a dense feature; ``drop``: features blanked to "unknown" (an ablation: ``("history",)``).
    """

    name: str
    loss: str = "bce"
    shares: tuple[tuple[str, float], ...] | None = None
    use_score: bool = True
    drop: tuple[str, ...] = ()

    def negative_shares(self, cfg) -> dict[str, float]:
        if self.shares is not None:
            return dict(self.shares)
        return {s: float(getattr(cfg.negatives, s)) for s in SOURCES}

    def describe(self, cfg) -> str:
        shares = self.negative_shares(cfg)
        total = sum(shares.values())
        mix = ", ".join(f"{shares[s] / total:.0%} {s}" for s in SOURCES if shares.get(s))
        parts = [self.loss.upper(), f"{cfg.negatives.count} negatives ({mix})"]
        parts.append("retrieval score as a feature" if self.use_score else "no retrieval score")
        if self.drop:
            parts.append("without " + ", ".join(self.drop))
        return "; ".join(parts)


def uniform_shares() -> tuple[tuple[str, float], ...]:
    return (("uniform", 1.0), ("popularity", 0.0), ("hard", 0.0))


class BlankFeatures(nn.Module):
    """A ranker with some features blanked to code 0 (unknown: a zero vector), for ablations."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.model({**batch, **{n: torch.zeros_like(batch[n]) for n in self.names}})


class RankingExamples(torch.utils.data.Dataset):
    """Map-style dataset of training positives' row numbers (the collate function builds the batch)."""

    def __init__(self, rows: torch.Tensor):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> int:
        return int(self.rows[i])


class RankingCollate:
    """``collate_fn`` for session 05's ``fit``: positives' row numbers -> a featurised batch of groups.

    Each positive gets ``n`` negatives from session 08's ``mixed_negatives``, all featurised at the
    positive's position (same user, same history). Rows of the batch come in groups of ``1 + n``,
    the positive first; ``batch["group_size"] = 1 + n``, and ``batch["source"]`` int64 (B, n) says
    where each negative came from (0 uniform, 1 popularity, 2 hard).

    Negatives are drawn from this object's own generator (seeded): the global RNG is left to the model.
    The sampler is called on groups of rows with similar history lengths (``chunks``), so that a light
    user's exclusion list is not padded to the heaviest user's.
    """

    chunks = 4

    def __init__(self, data: RankingData, variant: Variant, cfg, *, sampler: Callable | None = None, seed: int = 0):
        self.data, self.variant, self.cfg = data, variant, cfg
        self.builder = data.builder_for(variant, "valid")
        self.n = int(cfg.negatives.count)
        self.shares = variant.negative_shares(cfg)
        self.sampler = sampler or upstream(8).mixed_negatives
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, indices: list[int]) -> dict:
        data = self.data
        idx = torch.as_tensor(indices, dtype=torch.long)
        users, pos_items, positions = data.positives.users[idx], data.positives.items[idx], data.positives.positions[idx]
        negatives = torch.zeros(len(idx), self.n, dtype=torch.long)
        source = torch.zeros(len(idx), self.n, dtype=torch.long)
        lengths = torch.from_numpy(np.diff(data.train_offsets))[users]
        for part in torch.argsort(lengths, stable=True).tensor_split(min(self.chunks, len(idx))):
            if len(part):
                negatives[part], source[part] = self.sampler(
                    self.n, self.shares, candidates=data.pool[idx[part]].long(), exclude=data.exclude(users[part]),
                    probs=data.probs, generator=self.generator, skip_top=int(self.cfg.negatives.skip_top))
        items = torch.cat([pos_items[:, None], negatives], dim=1)  # (B, 1 + n), the positive first
        group = items.shape[1]
        extra = None
        if self.variant.use_score:
            extra = {SCORE_FEATURE: candidate_scores(data.view, data.queries[idx], items).reshape(-1)}
            extra[SCORE_FEATURE] = torch.where(torch.isfinite(extra[SCORE_FEATURE]), extra[SCORE_FEATURE], 0.0)
        batch = self.builder.batch(users.repeat_interleave(group), items.reshape(-1),
                                   positions=positions.repeat_interleave(group), extra_dense=extra)
        batch["group_size"] = group
        batch["source"] = source
        return batch


def build_ranker(data: RankingData, variant: Variant, cfg) -> nn.Module:
    """Session 07's DLRM at ``cfg.model`` sizes for a variant's features (blank ones wrapped)."""
    model = upstream(7).build_dlrm(data.builder_for(variant).spec, cfg)
    return BlankFeatures(model, variant.drop) if variant.drop else model


def rank_candidates(model: nn.Module, builder: FeatureBuilder, cands: Candidates, variant: Variant,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """float32 (B, K): the ranker's logits of each user's candidates (session 07's ``score_candidates``)."""
    extra = None
    if variant.use_score:
        extra = {SCORE_FEATURE: torch.where(torch.isfinite(cands.retrieval), cands.retrieval, 0.0)}
    return upstream(7).score_candidates(model, builder, cands.users, cands.items, extra_dense=extra, device=device)


def rerank_ranks(cands: Candidates, scores: torch.Tensor) -> torch.Tensor:
    """0-based rank of each user's held-out item after reordering the candidates by ``scores``
    (ties in retrieval order); ``K`` where the retriever missed it. Padding candidates rank last."""
    items = cands.items
    scores = scores.float().masked_fill(items == 0, -math.inf)
    hit = items == cands.targets[:, None]
    found = hit.any(dim=1)
    col = hit.float().argmax(dim=1)
    target_score = scores.gather(1, col[:, None])
    cols = torch.arange(items.shape[1])[None, :]
    ahead = (scores > target_score) | ((scores == target_score) & (cols < col[:, None]))
    return torch.where(found, ahead.sum(dim=1), torch.full_like(col, items.shape[1]))


def rerank_metrics(cands: Candidates, scores: torch.Tensor, ks: Sequence[int] = (10,)) -> dict[str, float]:
    """HR/NDCG@k of the reranked candidates (``harness.evaluation``'s rank formulas), plus the ceiling."""
    from ..evaluation import metrics_from_ranks

    ranks = rerank_ranks(cands, scores)
    out = metrics_from_ranks(ranks, ks, list_length=cands.items.shape[1])
    out[f"Recall@{cands.items.shape[1]} (ceiling)"] = float((ranks < cands.items.shape[1]).double().mean())
    return {k: v for k, v in out.items() if not k.startswith("Recall@") or k.endswith("(ceiling)")}


def train_ranker(data: RankingData, variant: Variant, cfg, *, device: torch.device | str = "cpu", run: Any = None,
                 checkpoint_path=None, log: Callable[[str], None] = print, loss_fn: Callable | None = None,
                 sampler: Callable | None = None) -> tuple[nn.Module, dict]:
    """Train a DLRM with session 05's ``fit`` on session 08's loss and negatives; select it on validation.

    ``fit`` runs its loop (warm-up + cosine schedule from ``warmup_cosine``, clipping, AMP, logging,
    checkpoints); after every ``cfg.fit.eval_every_epochs``-th epoch the retriever's top-K validation
    candidates are reranked, and the weights of the epoch with the best validation NDCG@10 are kept
    (model selection on the validation split only; the test split is never looked at here).

    Args:
        loss_fn: default session 08's ``ranking_loss`` (through ``upstream``); a notebook passes its own.
        sampler: default session 08's ``mixed_negatives``.

    Returns:
        (model in eval mode, result): ``fit``'s dict plus ``valid`` (the selected epoch's validation
        HR@10 / NDCG@10), ``selected_epoch`` and ``variant``.
    """
    s04, s05 = upstream(4), upstream(5)
    device = torch.device(device)
    t = cfg.fit
    from ..seeding import seed_everything

    seed_everything(t.seed)
    model = build_ranker(data, variant, cfg).to(device)
    loss_fn = loss_fn or upstream(8).ranking_loss
    collate = RankingCollate(data, variant, cfg, sampler=sampler, seed=t.seed)
    examples = RankingExamples(data.training_rows(t.positives_per_user))
    optimizer = s04.build_optimizer(model, t.lr, t.weight_decay, tuple(t.betas))
    total_steps = t.epochs * math.ceil(len(examples) / t.batch_size)
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(s05.warmup_cosine, warmup_steps=t.warmup_steps, total_steps=total_steps,
                           min_ratio=t.min_lr_ratio))
    valid_builder = data.builder_for(variant, "valid")
    steps_per_epoch = math.ceil(len(examples) / t.batch_size)
    best = {"NDCG@10": -1.0}

    def eval_fn(m: nn.Module) -> dict:
        metrics = rerank_metrics(data.valid, rank_candidates(m, valid_builder, data.valid, variant, device), ks=(10,))
        metrics = {"HR@10": metrics["HR@10"], "NDCG@10": metrics["NDCG@10"]}
        step = scheduler.last_epoch  # LambdaLR counts the optimizer steps taken
        if metrics["NDCG@10"] > best["NDCG@10"]:
            best.update(metrics, state=copy.deepcopy(m.state_dict()), step=step, epoch=step / steps_per_epoch)
        return metrics

    result = s05.fit(model, examples, loss_fn=partial(loss_fn, loss=variant.loss), optimizer=optimizer, cfg=t,
                     scheduler=scheduler, amp_dtype=s05.resolve_amp(t.amp, device), device=device,
                     collate_fn=collate, run=run, checkpoint_path=checkpoint_path, eval_fn=eval_fn, log=log)
    if not result["evals"] or result["evals"][-1]["step"] != result["steps"]:  # the last weights are a candidate too
        result["evals"].append({"epoch": result["epochs"], "step": result["steps"], **eval_fn(model)})
    model.load_state_dict(best["state"])
    if checkpoint_path is not None:  # the checkpoint holds the selected weights, not the last ones
        s05.save_checkpoint(checkpoint_path, model=model, step=result["steps"], epoch=int(result["epochs"]),
                            extra={"selected": "best validation NDCG@10", "valid": {k: best[k] for k in ("HR@10", "NDCG@10")}})
    result["valid"] = {k: best[k] for k in ("HR@10", "NDCG@10")}
    result["selected_step"], result["selected_epoch"] = best["step"], round(best["epoch"], 2)
    result["variant"] = dataclasses.asdict(variant)
    result["pairs_per_second"] = result["examples_per_second"]  # fit counts batch rows: (1 + n) pairs per positive
    return model.eval(), result


def trained_ranker(ctx, data: RankingData, variant: Variant, cfg,
                   log: Callable[[str], None] = print) -> tuple[nn.Module, dict, bool]:
    """``train_ranker`` through ``load_or_train``: reused while data, retriever, config and code are unchanged.

    The code is that of ``ctx.impl``'s sessions (the pipeline's tree); a notebook that trains with its
    own functions calls :func:`train_ranker` instead.
    """
    from ..config import as_dict
    from ..tracking import describe_run, init_run
    from .cache import load_or_train

    config = {**as_dict(cfg), "variant": dataclasses.asdict(variant), "retriever": data.view.name,
              "retriever_weights": content_digest(data.view.model)}

    def train(checkpoint):
        run = init_run(f"ranker-{ctx.dataset_name}-{variant.name}", config={**config, "dataset": ctx.dataset_name},
                       group="ranking")
        log(f"   {describe_run(run)}")
        try:
            model, result = train_ranker(data, variant, cfg, device=ctx.device, run=run, checkpoint_path=checkpoint,
                                         log=log)
            run.summary.update({f"valid/{k}": v for k, v in result["valid"].items()})
        finally:
            run.finish()
        keep = ("steps", "epochs", "seconds", "pairs_per_second", "final_loss", "stopped_by", "valid",
                "selected_step", "selected_epoch", "evals", "history")
        return model, {k: result[k] for k in keep if k in result}

    def load(checkpoint):
        model = build_ranker(data, variant, cfg)
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
        return model.to(ctx.device).eval()

    return load_or_train(ctx, f"ranker-{variant.name}", config=config, sessions=(2, 4, 5, 6, 7, 8), train=train,
                         load=load, modules=(__name__, "harness.pipeline.features"))


def notebook_context(dataset_name: str, retrieval_stages: Sequence[str] | None = None):
    """``(ctx, dlrm config)`` for a ranking notebook: the dataset loaded and the retrieval stages run (trained,
    or loaded from the pipeline's cache), on the tree the notebook's components come from."""
    from ..autograder.loader import upstream_tree
    from ..config import load_config
    from ..data import load_dataset
    from ..env import pick_device
    from .retrieval import STAGES as RETRIEVAL_STAGES
    from .runner import Context

    cfg = load_config("dlrm")
    ctx = Context(dataset_name, upstream_tree(), cfg.preset, pick_device())
    ctx.dataset = load_dataset(dataset_name)
    print(ctx.dataset.summary(), f"| preset: {cfg.preset}")
    start = time.perf_counter()
    for stage in RETRIEVAL_STAGES:
        if retrieval_stages is None or stage.name in retrieval_stages:
            stage.run(ctx)
    print(f"retrievers ready in {time.perf_counter() - start:.0f} s")
    return ctx, cfg


def ranking_data(ctx, log: Callable[[str], None] = print) -> RankingData:
    """The ranking data of the best retriever in ``ctx`` (by validation NDCG@10), built once per run.

    The mined part (queries and pools, the slow part) goes through ``load_or_train``: reused while the
    dataset, the retriever's weights, the settings and the code are unchanged.
    """
    from ..config import as_dict, load_config
    from .cache import load_or_train

    if "ranking_data" in ctx.artifacts:
        return ctx.artifacts["ranking_data"]
    retrievers = ctx.artifacts.get("retrievers") or {}
    if not retrievers:
        raise StageSkipped("no trained retriever in this run: the ranker mines its negatives from one "
                           "(run the two-tower stages too)")
    valid = ctx.artifacts.get("retriever_valid", {})
    best = max(retrievers, key=lambda name: valid.get(name, {}).get("NDCG@10", -1.0))
    log(f"   best retriever on the validation split: {best} (valid NDCG@10 "
        + ", ".join(f"{n} {valid.get(n, {}).get('NDCG@10', float('nan')):.4f}" for n in retrievers) + ")")
    max_len = load_config("two_tower", preset=ctx.preset).train.max_len
    view = RetrieverView.of(retrievers[best], max_len=max_len, name=best)
    cfg = load_config("dlrm", preset=ctx.preset)
    settings = {"features": as_dict(cfg.features), "mine_k": cfg.negatives.mine_k, "max_len": max_len,
                "retriever": best, "retriever_weights": content_digest(view.model)}

    def compute(path):
        start = time.perf_counter()
        tensors = mine(ctx.dataset, view, cfg)
        torch.save(tensors, path)
        return tensors, {"seconds": time.perf_counter() - start}

    mined, result, reused = load_or_train(ctx, f"ranking-data-{best.replace(' ', '-')}", config=settings,
                                          sessions=(2, 3, 6), train=compute,
                                          load=lambda path: torch.load(path, weights_only=True),
                                          modules=(__name__, "harness.pipeline.features"))
    data = RankingData.build(ctx.dataset, view, cfg, log=log, mined=mined)
    log(f"   ranking data: {len(data):,} training positives; hard-negative pools of {data.pool.shape[1]} from "
        f"`{best}`, mined with each example's own history ({result['seconds']:.0f} s"
        + (", cached" if reused else "") + f"); {len(data.valid):,} validation users ({data.seconds:.1f} s)")
    ctx.artifacts["ranking_data"] = data
    return data


# --- evaluation on a split, per user (session 10's exercises) --------------------------------------

def per_user_pipeline(model: nn.Module, data: RankingData, variant: Variant, cands: Candidates, *,
                      k: int = 50, ks: Sequence[int] = (10, 50), device=None) -> dict[str, torch.Tensor]:
    """Per-user HR/NDCG@k of retrieve -> rank on ``cands.split`` (session 10's ``retrieve_then_rank`` and
    ``per_user_metrics``), plus ``Recall@K``, the share of users whose item the retriever found (the ceiling)."""
    s10 = upstream(10)
    builder = data.builder_for(variant, cands.split)
    lookup = {int(u): b for b, u in enumerate(cands.users.tolist())}

    def rank_fn(users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        rows = torch.tensor([lookup[int(u)] for u in users.tolist()])
        sub = dataclasses.replace(cands, users=users, items=candidates, queries=cands.queries[rows],
                                  retrieval=candidate_scores(data.view, cands.queries[rows], candidates))
        return rank_candidates(model, builder, sub, variant, device)

    K = cands.items.shape[1]
    ranked, candidates = s10.retrieve_then_rank(data.view.index, cands.queries, cands.seen, cands.users, rank_fn,
                                               K=K, k=min(k, K))
    out = s10.per_user_metrics(ranked, cands.targets, ks)
    out[f"Recall@{K}"] = s10.per_user_metrics(candidates, cands.targets, (K,))[f"HR@{K}"]
    return out


def ranker_auc(model: nn.Module | None, data: RankingData, variant: Variant | None, cands: Candidates, *,
               negatives: str = "uniform", n: int = 100, seed: int = 0, device=None) -> torch.Tensor:
    """float32 (B,): per-user AUC of the held-out item against sampled negatives (session 09's ``auc``).

    ``negatives="uniform"``: ``n`` items drawn uniformly from those the user has not interacted with
    before the split (session 02's ``sample_negatives``); AUC is a mean over negatives, so this
    estimates the full-catalog AUC without bias. ``"hard"``: the retriever's top-K candidates
    (the held-out item itself masked out where the retriever found it): what the ranker faces.
    ``model=None`` scores with the retriever's own cosine (the retriever's AUC, for comparison).
    """
    s02 = upstream(2)
    B = len(cands)
    if negatives == "uniform":
        probs = torch.ones(data.dataset.n_items + 1, dtype=torch.float64)
        probs[0] = 0.0
        positives = torch.cat([cands.seen, cands.targets[:, None]], dim=1)
        negs = s02.sample_negatives(probs / probs.sum(), positives, n, generator=torch.Generator().manual_seed(seed))
        valid = torch.ones(B, n, dtype=torch.bool)
    elif negatives == "hard":
        negs = cands.items
        valid = (negs != 0) & (negs != cands.targets[:, None])
    else:
        raise ValueError(f"negatives must be 'uniform' or 'hard', got {negatives!r}")
    items = torch.cat([cands.targets[:, None], negs], dim=1)
    sub = dataclasses.replace(cands, items=items, retrieval=candidate_scores(data.view, cands.queries, items))
    if model is None:
        scores = sub.retrieval
    else:
        scores = rank_candidates(model, data.builder_for(variant, cands.split), sub, variant, device)
    labels = torch.zeros_like(items, dtype=torch.bool)
    labels[:, 0] = True
    mask = torch.cat([torch.ones(B, 1, dtype=torch.bool), valid], dim=1)
    return upstream(9).auc(scores, labels, mask)


def per_user_retriever(cands: Candidates, ks: Sequence[int] = (10, 50)) -> dict[str, torch.Tensor]:
    """Per-user HR/NDCG@k of the retriever alone: its own candidate order (session 10's ``per_user_metrics``)."""
    return upstream(10).per_user_metrics(cands.items, cands.targets, ks)


# --- the pipeline stage ----------------------------------------------------------------------------

def pipeline_variants() -> list[Variant]:
    """The rows of the pipeline: the full ranker, and the same without the retriever's score."""
    return [Variant("dlrm"), Variant("dlrm-no-score", use_score=False)]


def _stage_dlrm(ctx) -> None:
    from ..config import load_config

    cfg = load_config("dlrm", preset=ctx.preset)
    data = ranking_data(ctx)
    K = int(cfg.candidates.K)
    test = retrieve_candidates(data.view, ctx.dataset, "test", K)
    retriever_name = data.view.name
    per_user = {retriever_name: per_user_retriever(test)}
    rows = {}
    for variant in pipeline_variants():
        model, result, reused = trained_ranker(ctx, data, variant, cfg)
        name = f"{retriever_name} top-{K} → DLRM" + ("" if variant.use_score else ", no retrieval score")
        per_user[name] = per_user_pipeline(model, data, variant, test, k=50, ks=(10, 50), device=ctx.device)
        rows[name] = (variant, result, reused)
        ctx.artifacts.setdefault("rankers", {})[name] = model
    ctx.artifacts["ranker"] = ctx.artifacts["rankers"][next(iter(rows))]
    boot = upstream(10).paired_bootstrap({n: v["NDCG@10"] for n, v in per_user.items()}, retriever_name,
                                         n_resamples=int(cfg.candidates.bootstrap), confidence=0.95, seed=0)
    if retriever_name in ctx.table.rows:
        ctx.table.add_interval(retriever_name, "NDCG@10", boot[retriever_name]["low"], boot[retriever_name]["high"])
    for name, (variant, result, reused) in rows.items():
        m = per_user[name]
        metrics = {"HR@10": float(m["HR@10"].mean()), "NDCG@10": float(m["NDCG@10"].mean()),
                   "Recall@50": float(m["HR@50"].mean()), f"Recall@{K}": float(m[f"Recall@{K}"].mean())}
        b = boot[name]
        note = (f"sessions 07-10; {variant.describe(cfg)}; {result['steps']} steps, {result['seconds']:.0f} s"
                + (", stopped by the time cap (max_minutes)" if result.get("stopped_by") == "max_minutes" else "")
                + f"; epoch {result['selected_epoch']} by valid NDCG@10 {result['valid']['NDCG@10']:.4f}"
                + f"; ceiling Recall@{K} {metrics[f'Recall@{K}']:.4f}" + (" (cached)" if reused else ""))
        ctx.table.add(name, metrics, note)
        ctx.table.add_interval(name, "NDCG@10", b["low"], b["high"])
        ctx.table.add_difference(name, "NDCG@10", retriever_name, b["delta"], b["delta_low"], b["delta_high"])
        print(f"   {name}: NDCG@10 {b['mean']:.4f} [{b['low']:.4f}, {b['high']:.4f}], vs the retriever alone "
              f"{b['delta']:+.4f} [{b['delta_low']:+.4f}, {b['delta_high']:+.4f}] (95% paired bootstrap over "
              f"{len(test):,} users)")


_NEEDS = {2: ("popularity_distribution", "sample_negatives", "collate_sequences"),
          4: ("build_optimizer",), 5: ("warmup_cosine", "save_checkpoint", "train_step", "fit"),
          6: ("mask_seen", "build_flat_index", "search_excluding_seen"), 7: (), 8: (),
          9: ("ranked_labels", "dcg_at_k", "ndcg_at_k", "hit_rate_at_k"), 10: ()}

STAGES = [
    Stage("dlrm", _stage_dlrm, "DLRM reranking the best retriever's top-K, hard negatives (sessions 07-10)",
          needs=_NEEDS),
]
