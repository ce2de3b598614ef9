"""The main job: run every stage of the reference pipeline built so far, on one dataset.

    python -m harness pipeline                      # MovieLens-100K, reference code, laptop preset
    python -m harness pipeline --impl sessions      # the same, on your own notebooks
    python -m harness pipeline --preset smoke       # seconds, for CI

Each stage reads what earlier stages left in the context and may add a row to the
metrics table (HR@10, NDCG@10, Recall@50 on the leave-last-out test split). A stage
whose exercise you have not written yet is skipped with the reason, and the rest runs.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..evaluation import MetricsTable, evaluate_topk
from ..autograder.loader import NotebookError, load_session
from ..paths import display_path, runs_dir


@dataclass
class Context:
    dataset_name: str
    impl: str
    preset: str
    device: torch.device
    table: MetricsTable = field(default_factory=MetricsTable)
    artifacts: dict = field(default_factory=dict)
    dataset: object = None

    def session(self, number: int):
        """Session ``number``'s export cells from the tree this run uses."""
        return load_session(number, self.impl)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Context], None]
    description: str


def _stage_env(ctx: Context) -> None:
    from ..env import environment_report

    print(environment_report())


def _stage_data(ctx: Context) -> None:
    from ..data import DATASETS, load_dataset

    # The run's preset picks the dataset's size where the dataset has one (synthetic: smoke/laptop/gpu).
    presets = DATASETS[ctx.dataset_name].presets if ctx.dataset_name in DATASETS else ()
    ctx.dataset = load_dataset(ctx.dataset_name, ctx.preset if ctx.preset in presets else None, quiet=False)
    print(ctx.dataset.summary())


def _stage_popularity(ctx: Context) -> None:
    s01 = ctx.session(1)
    ds = ctx.dataset
    # Popularity from what a model may see when predicting the test item: train + valid.
    history = torch.tensor(ds.history("test")["item_id"].to_numpy())
    counts = s01.item_popularity(history, ds.n_items)
    metrics = evaluate_topk(lambda users, seen: s01.recommend_popular(counts, seen, k=50), ds, "test", ks=(10, 50))
    ctx.table.add("popularity", metrics, "session 01")
    ctx.artifacts["item_counts"] = counts


def _train_and_evaluate_tower(ctx: Context, tower: str) -> None:
    from ..config import load_config
    from .retrieval import evaluate_two_tower
    from ..tracking import describe_run, init_run

    cfg = load_config("two_tower", preset=ctx.preset)
    s05 = ctx.session(5)
    run = init_run(f"pipeline-{ctx.dataset_name}-{tower}", config={"tower": tower, "dataset": ctx.dataset_name},
                   group="pipeline")
    checkpoint = runs_dir() / "pipeline" / f"{ctx.dataset_name}-{ctx.preset}-{ctx.impl}" / f"two-tower-{tower}.pt"
    print(f"   {describe_run(run)}")
    try:
        model, result = s05.train_two_tower(ctx.dataset, tower, cfg, device=ctx.device, run=run,
                                            checkpoint_path=checkpoint)
    finally:
        run.finish()
    metrics = evaluate_two_tower(model, ctx.dataset, "test", max_len=cfg.train.max_len, ks=(10, 50), device=ctx.device)
    note = (f"sessions 03-05; {result['steps']} steps, {result['seconds']:.0f} s, "
            f"{result['positions_per_second']:,.0f} positions/s")
    ctx.table.add(f"two-tower {tower}", metrics, note)
    ctx.artifacts[f"two-tower {tower}"] = model


STAGES: list[Stage] = [
    Stage("env", _stage_env, "environment report"),
    Stage("data", _stage_data, "load (and prepare) the dataset"),
    Stage("popularity", _stage_popularity, "popularity baseline (session 01)"),
    Stage("two-tower-mean", lambda ctx: _train_and_evaluate_tower(ctx, "mean"),
          "two-tower retrieval, mean-pool user tower (sessions 03-05)"),
    Stage("two-tower-transformer", lambda ctx: _train_and_evaluate_tower(ctx, "transformer"),
          "two-tower retrieval, causal Transformer user tower (sessions 03-05)"),
]


def run_pipeline(dataset: str = "ml-100k", impl: str = "solutions", preset: str = "laptop",
                 stages: list[str] | None = None, output: str | None = None) -> MetricsTable:
    # Every session's components come from the same tree, so `--impl sessions` runs on your code only.
    os.environ["HARNESS_UPSTREAM"] = impl
    os.environ.setdefault("WANDB_MODE", "offline")
    from ..env import pick_device
    from ..seeding import seed_everything

    seed_everything(0)
    ctx = Context(dataset, impl, preset, pick_device())
    known = {s.name for s in STAGES}
    if stages:
        unknown = set(stages) - known
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))}; stages: {', '.join(s.name for s in STAGES)}")
    selected = [s for s in STAGES if not stages or s.name in stages or s.name == "data"]
    print(f"pipeline: dataset={dataset} impl={impl} preset={preset} device={ctx.device.type}")
    timings, skipped = {}, []
    for stage in selected:
        print(f"\n== {stage.name}: {stage.description}")
        start = time.perf_counter()
        try:
            stage.run(ctx)
        except (NotImplementedError, NotebookError) as err:
            print(f"   stage skipped: {err}")
            skipped.append(stage.name)
        timings[stage.name] = time.perf_counter() - start
        print(f"   ({timings[stage.name]:.1f} s)")
    print(f"\n== metrics: {dataset}, leave-last-out test split, full-catalog ranking, seen items excluded\n")
    print(ctx.table)
    out = Path(output) if output else runs_dir() / "pipeline" / f"{dataset}-{preset}-{impl}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.md").write_text(ctx.table.to_markdown() + "\n")
    (out / "metrics.json").write_text(json.dumps(
        {"dataset": dataset, "impl": impl, "preset": preset, "device": ctx.device.type,
         "metrics": ctx.table.rows, "stage_seconds": timings, "skipped_stages": skipped}, indent=2))
    print(f"\n(table written to {display_path(out / 'metrics.md')})")
    return ctx.table
