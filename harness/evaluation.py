"""Full-catalog evaluation, the way every number of the workbook is measured.

For each user, the held-out item is ranked against every item of the catalog,
with the items the user has already seen removed (they cannot be recommended
again) and padding item 0 never ranked. Ties are broken the way a top-k list
with deterministic tie-breaking would: the lower item id first. So a score
function and the top-k list built from it give the same HR and NDCG.

    HR@K    = share of users whose held-out item is in the top K
    NDCG@K  = mean of 1 / log2(rank + 2) over users with rank < K (one relevant item, so IDCG = 1)
    Recall@K equals HR@K with one held-out item per user.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .data.schema import RecDataset

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # user ids (B,) -> scores (B, n_items + 1)


def seen_mask(sequences: Sequence[np.ndarray], users: Iterable[int], n_items: int,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool mask (B, n_items + 1): True where user ``users[b]`` has interacted with the item."""
    users = list(users)
    rows = [np.asarray(sequences[u], dtype=np.int64) for u in users]
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    mask = torch.zeros(len(users), n_items + 1, dtype=torch.bool, device=device)
    if lengths.sum() > 0:
        cols = torch.from_numpy(np.concatenate(rows)).to(device)
        row_idx = torch.repeat_interleave(torch.arange(len(users)), lengths).to(device)
        mask[row_idx, cols] = True
    return mask


def ranks_from_scores(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """0-based rank of each target among non-excluded items (B,), ties to the lower item id."""
    scores = scores.float().clone()
    scores[:, 0] = -math.inf
    if exclude is not None:
        scores = scores.masked_fill(exclude, -math.inf)
    targets = targets.to(scores.device).long()
    target_scores = scores.gather(1, targets[:, None])
    ids = torch.arange(scores.shape[1], device=scores.device)
    ahead = (scores > target_scores) | ((scores == target_scores) & (ids[None, :] < targets[:, None]))
    return ahead.sum(dim=1).cpu()


def ranks_from_topk(topk: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank of each target within a top-k list (B, K); K when the target is not in it."""
    topk, targets = topk.cpu().long(), targets.cpu().long()
    hits = topk == targets[:, None]
    k = topk.shape[1]
    return torch.where(hits.any(dim=1), hits.float().argmax(dim=1), torch.full_like(targets, k))


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = (10, 50),
                       list_length: int | None = None) -> dict[str, float]:
    """HR/NDCG/Recall@K and MRR from 0-based ranks (B,).

    ``list_length``: the ranks come from top-``list_length`` lists, where a miss is recorded as
    ``list_length``: it then counts 0 in MRR (it was not found), not ``1 / (list_length + 1)``,
    and 0 in HR/NDCG@K even for a K beyond the lists' length.
    """
    ranks = ranks.double()
    out = {}
    for k in ks:
        hit = ranks < (k if list_length is None else min(k, list_length))
        out[f"HR@{k}"] = hit.double().mean().item()
        out[f"NDCG@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 2.0), torch.zeros_like(ranks)).mean().item()
        out[f"Recall@{k}"] = out[f"HR@{k}"]  # one held-out item per user
    reciprocal = 1.0 / (ranks + 1.0)
    if list_length is not None:
        reciprocal = torch.where(ranks < list_length, reciprocal, torch.zeros_like(reciprocal))
    out["MRR"] = reciprocal.mean().item()
    return out


def _batch_size(n_items: int, budget: int = 2**25) -> int:
    return max(16, min(4096, budget // max(n_items + 1, 1)))


def _eval_batches(dataset: RecDataset, split: str, batch_size: int | None):
    """Users of ``split`` in batches: (user ids (B,), held-out items (B,), seen mask (B, n_items + 1))."""
    users, targets = dataset.targets(split)
    sequences = dataset.sequences(upto=split)
    batch_size = batch_size or _batch_size(dataset.n_items)
    for start in range(0, len(users), batch_size):
        u = torch.tensor(users[start:start + batch_size])
        yield u, torch.tensor(targets[start:start + batch_size]), seen_mask(sequences, u.tolist(), dataset.n_items)


@torch.no_grad()
def evaluate_scores(score_fn: ScoreFn, dataset: RecDataset, split: str = "test", ks: Sequence[int] = (10, 50),
                    batch_size: int | None = None, device: torch.device | str = "cpu") -> dict[str, float]:
    """Rank every user's held-out item of ``split`` with ``score_fn``; returns HR/NDCG/Recall@K and MRR."""
    ranks = []
    for users, targets, seen in _eval_batches(dataset, split, batch_size):
        scores = score_fn(users.to(device))
        expected = (len(users), dataset.n_items + 1)
        if tuple(scores.shape) != expected:
            raise ValueError(f"score function returned shape {tuple(scores.shape)}, expected {expected} "
                             "(one column per item id, column 0 = padding)")
        ranks.append(ranks_from_scores(scores, targets, seen.to(scores.device)))
    return metrics_from_ranks(torch.cat(ranks), ks)


def evaluate_topk(topk_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], dataset: RecDataset,
                  split: str = "test", ks: Sequence[int] = (10, 50), batch_size: int | None = None) -> dict[str, float]:
    """Same metrics from a recommender that returns lists: ``topk_fn(user_ids, seen_mask) -> (B, max(ks))``."""
    ranks, length = [], None
    for users, targets, seen in _eval_batches(dataset, split, batch_size):
        topk = topk_fn(users, seen)
        length = topk.shape[1] if length is None else min(length, topk.shape[1])
        ranks.append(ranks_from_topk(topk, targets))
    return metrics_from_ranks(torch.cat(ranks), ks, list_length=length)


@dataclass
class MetricsTable:
    """Rows of model -> metrics, printed as the comparison table of the pipeline and the README.

    A row may also carry confidence intervals (session 10's bootstrap): ``add_interval`` for a
    metric's own interval and ``add_difference`` for the paired difference to another row. They
    appear as extra columns (``NDCG@10 95% CI``, ``Δ NDCG@10 vs <baseline> [95% CI]``) only when
    some row has them, after the metric columns.
    """

    columns: tuple[str, ...] = ("HR@10", "NDCG@10", "Recall@50")
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, dict[str, dict]] = field(default_factory=dict)  # model -> metric -> {low, high, confidence}
    differences: dict[str, dict[str, dict]] = field(default_factory=dict)  # model -> metric -> {baseline, delta, ...}

    def add(self, model: str, metrics: dict[str, float], note: str = "") -> None:
        self.rows[model] = metrics
        if note:
            self.notes[model] = note

    def add_interval(self, model: str, metric: str, low: float, high: float, confidence: float = 0.95) -> None:
        """A confidence interval for ``metric`` of row ``model`` (shown as ``[low, high]``)."""
        self.intervals.setdefault(model, {})[metric] = {"low": float(low), "high": float(high),
                                                        "confidence": float(confidence)}

    def add_difference(self, model: str, metric: str, baseline: str, delta: float, low: float, high: float,
                       confidence: float = 0.95) -> None:
        """The difference ``model - baseline`` of ``metric`` with its (paired) confidence interval."""
        self.differences.setdefault(model, {})[metric] = {"baseline": baseline, "delta": float(delta),
                                                          "low": float(low), "high": float(high),
                                                          "confidence": float(confidence)}

    def _extra_columns(self) -> list[tuple[str, Callable[[str], str]]]:
        """(header, cell(model)) for every interval and difference some row has, in order of appearance."""
        out: list[tuple[str, Callable[[str], str]]] = []
        seen: set = set()
        for model in self.rows:
            for metric, iv in self.intervals.get(model, {}).items():
                key = ("ci", metric, iv["confidence"])
                if key not in seen:
                    seen.add(key)
                    out.append((f"{metric} {iv['confidence']:.0%} CI", partial(self._interval_cell, metric, iv["confidence"])))
        for model in self.rows:
            for metric, d in self.differences.get(model, {}).items():
                key = ("delta", metric, d["confidence"])
                if key not in seen:
                    seen.add(key)
                    bases = {x[metric]["baseline"] for x in self.differences.values() if metric in x}
                    vs = f" vs {next(iter(bases))}" if len(bases) == 1 else ""
                    out.append((f"Δ {metric}{vs} [{d['confidence']:.0%} CI]",
                                partial(self._difference_cell, metric, d["confidence"], not vs)))
        return out

    def _interval_cell(self, metric: str, confidence: float, model: str) -> str:
        iv = self.intervals.get(model, {}).get(metric)
        if iv is None or iv["confidence"] != confidence:
            return ""
        return f"[{iv['low']:.4f}, {iv['high']:.4f}]"

    def _difference_cell(self, metric: str, confidence: float, name_baseline: bool, model: str) -> str:
        d = self.differences.get(model, {}).get(metric)
        if d is None or d["confidence"] != confidence:
            return ""
        cell = f"{d['delta']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
        return cell + (f" vs {d['baseline']}" if name_baseline else "")

    def to_markdown(self) -> str:
        extra = self._extra_columns()
        head = "| model | " + " | ".join([*self.columns, *(h for h, _ in extra)]) + " | notes |"
        rule = "| --- | " + " | ".join(["---:" for _ in self.columns] + ["---:" for _ in extra]) + " | --- |"
        body = [f"| {m} | " + " | ".join([*(_fmt(r.get(c)) for c in self.columns), *(cell(m) for _, cell in extra)])
                + f" | {self.notes.get(m, '')} |" for m, r in self.rows.items()]
        return "\n".join([head, rule, *body])

    def __str__(self) -> str:
        extra = self._extra_columns()
        width = max([len("model"), *(len(m) for m in self.rows)])
        widths = [max(len(h), *(len(cell(m)) for m in self.rows)) for h, cell in extra]
        lines = [f"{'model':<{width}}  " + "  ".join(f"{c:>9}" for c in self.columns)
                 + "".join(f"  {h:>{w}}" for (h, _), w in zip(extra, widths))]
        lines.append("-" * len(lines[0]))
        for m, r in self.rows.items():
            lines.append(f"{m:<{width}}  " + "  ".join(f"{_fmt(r.get(c)):>9}" for c in self.columns)
                         + "".join(f"  {cell(m):>{w}}" for (_, cell), w in zip(extra, widths))
                         + (f"  {self.notes[m]}" if m in self.notes else ""))
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"
