"""The retrieval track: windowed training data, two-tower evaluation, and its pipeline stages.

The components themselves (dataset and collate of session 02, towers and scoring of
session 03) come through :func:`harness.upstream`, so the same glue runs on the
reference or, in ``python -m harness pipeline --impl sessions``, on your own code.

Stages: ``popularity`` (session 01), ``two-tower-mean`` and ``two-tower-transformer``
(sessions 02-05). Each trained retriever lands in ``ctx.artifacts["retrievers"]`` with its
validation metrics in ``ctx.artifacts["retriever_valid"]``, for the ranking track to pick from.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Subset

from ..evaluation import ScoreFn, evaluate_scores
from ..autograder.loader import upstream
from .runner import Stage


def window_indices(sequences: Sequence, max_len: int, min_history: int = 1) -> np.ndarray:
    """Indices, into a ``NextItemDataset(sequences, max_len, min_history=...)``, of non-overlapping windows.

    A causal model trained on a window of ``max_len`` items gets a target at every
    position, so one example per window ending at t = len - 1, len - 1 - max_len, ...
    covers every position once, instead of once per example that contains it.
    The dataset orders examples by user, then position t = min_history .. len - 1.
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    per_user = np.maximum(lengths - min_history, 0)
    first = np.cumsum(per_user) - per_user  # index of (user, t = min_history)
    out = []
    for user in np.nonzero(per_user)[0]:
        ends = np.arange(lengths[user] - 1, min_history - 1, -max_len)
        out.append(first[user] + ends - min_history)
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def windowed_examples(sequences: Sequence, max_len: int, item_categories: torch.Tensor | None = None):
    """Session 02's ``NextItemDataset``, restricted to non-overlapping windows (see :func:`window_indices`)."""
    dataset = upstream(2).NextItemDataset(sequences, max_len=max_len, item_categories=item_categories)
    return Subset(dataset, window_indices(sequences, max_len).tolist())


def history_batch(sequences: Sequence, users: Sequence[int], max_len: int) -> dict:
    """The last ``max_len`` items of each user, collated (left padding) by session 02's ``collate_sequences``."""
    examples = [{"user_id": int(u), "history": torch.tensor(np.asarray(sequences[int(u)][-max_len:]), dtype=torch.long),
                 "target": 0} for u in users]
    return upstream(2).collate_sequences(examples, padding_side="left")


def two_tower_score_fn(model: torch.nn.Module, dataset, split: str, max_len: int,
                       device: torch.device | str = "cpu") -> ScoreFn:
    """Scores over the whole catalog for users of ``split``, from the history visible before it."""
    sequences = dataset.sequences(upto=split)
    score_all_items = upstream(3).score_all_items

    @torch.no_grad()
    def score(users: torch.Tensor) -> torch.Tensor:
        batch = history_batch(sequences, users.tolist(), max_len)
        return score_all_items(model, batch["history"].to(device), batch["mask"].to(device)).float()

    return score


def evaluate_two_tower(model: torch.nn.Module, dataset, split: str = "test", max_len: int = 50,
                       ks: Sequence[int] = (10, 50), device: torch.device | str = "cpu") -> dict[str, float]:
    """HR/NDCG/Recall@K of a two-tower model on ``split`` (full catalog, seen items excluded)."""
    was_training = model.training
    model.eval()
    try:
        return evaluate_scores(two_tower_score_fn(model, dataset, split, max_len, device), dataset, split, ks=ks,
                               batch_size=256)
    finally:
        model.train(was_training)


# --- pipeline stages ---------------------------------------------------------------------------

def _stage_popularity(ctx) -> None:
    from ..evaluation import evaluate_topk

    s01 = ctx.session(1)
    ds = ctx.dataset
    # Popularity from what a model may see when predicting the test item: train + valid.
    history = torch.tensor(ds.history("test")["item_id"].to_numpy())
    counts = s01.item_popularity(history, ds.n_items)
    metrics = evaluate_topk(lambda users, seen: s01.recommend_popular(counts, seen, k=50), ds, "test", ks=(10, 50))
    ctx.table.add("popularity", metrics, "session 01")
    ctx.artifacts["item_counts"] = counts


def build_tower_from_config(dataset, tower: str, cfg) -> torch.nn.Module:
    """Session 03's two-tower model at the config's sizes (untrained)."""
    codes, names = dataset.category_codes()
    return upstream(3).build_two_tower(dataset.n_items, torch.from_numpy(codes), len(names), tower=tower,
                                       dim=cfg.model.dim, category_dim=cfg.model.category_dim,
                                       dropout=cfg.model.dropout, layers=cfg.model.layers, heads=cfg.model.heads)


def _stage_two_tower(ctx, tower: str) -> None:
    from ..config import as_dict, load_config
    from ..tracking import describe_run, init_run
    from .cache import load_or_train

    cfg = load_config("two_tower", preset=ctx.preset)
    s05 = ctx.session(5)

    def train(checkpoint):
        run = init_run(f"pipeline-{ctx.dataset_name}-{tower}", config={**as_dict(cfg), "tower": tower,
                                                                       "dataset": ctx.dataset_name}, group="pipeline")
        print(f"   {describe_run(run)}")
        try:
            model, result = s05.train_two_tower(ctx.dataset, tower, cfg, device=ctx.device, run=run,
                                                checkpoint_path=checkpoint)
        finally:
            run.finish()
        keep = ("steps", "epochs", "seconds", "positions_per_second", "examples_per_second", "final_loss",
                "stopped_by", "valid", "amp_dtype")
        return model, {k: result[k] for k in keep if k in result}

    def load(checkpoint):
        model = build_tower_from_config(ctx.dataset, tower, cfg)
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["model"])
        return model.to(ctx.device)

    model, result, reused = load_or_train(ctx, f"two-tower-{tower}", config=as_dict(cfg), sessions=(2, 3, 4, 5),
                                          train=train, load=load, modules=(__name__,))
    if reused:
        print(f"   reused the {tower} tower trained earlier ({ctx.cache_dir.name}; data, config and code unchanged; "
              "--retrain trains again)")
    metrics = evaluate_two_tower(model, ctx.dataset, "test", max_len=cfg.train.max_len, ks=(10, 50), device=ctx.device)
    model.eval()  # what later stages get is an inference model: no dropout
    note = (f"sessions 03-05; {result['steps']} steps, {result['seconds']:.0f} s, "
            f"{result['positions_per_second']:,.0f} positions/s"
            + (", stopped by the time cap (max_minutes)" if result.get("stopped_by") == "max_minutes" else "")
            + (" (cached)" if reused else ""))
    name = f"two-tower {tower}"
    ctx.table.add(name, metrics, note)
    ctx.artifacts.setdefault("retrievers", {})[name] = model
    ctx.artifacts.setdefault("retriever_valid", {})[name] = result.get("valid", {})
    ctx.artifacts[name] = model


_TWO_TOWER_NEEDS = {2: ("NextItemDataset", "collate_sequences"), 3: (),
                    4: ("item_log_q", "in_batch_softmax_loss", "contrastive_batch_loss", "build_optimizer"),
                    5: ("warmup_cosine", "save_checkpoint", "train_step", "fit")}

STAGES = [
    Stage("popularity", _stage_popularity, "popularity baseline (session 01)",
          needs={1: ("item_popularity", "recommend_popular")}),
    Stage("two-tower-mean", lambda ctx: _stage_two_tower(ctx, "mean"),
          "two-tower retrieval, mean-pool user tower (sessions 03-05)", needs=_TWO_TOWER_NEEDS),
    Stage("two-tower-transformer", lambda ctx: _stage_two_tower(ctx, "transformer"),
          "two-tower retrieval, causal Transformer user tower (sessions 03-05)", needs=_TWO_TOWER_NEEDS),
]
