"""The main job: run every stage of every track built so far, on one dataset.

    python -m harness pipeline                      # MovieLens-100K, reference code, laptop preset
    python -m harness pipeline --impl sessions      # the same, on your own notebooks
    python -m harness pipeline --preset smoke       # seconds, for CI
    python -m harness pipeline --retrain            # train again even when a cached model is still valid

Each stage reads what earlier stages left in the context and may add a row to the metrics
table (HR@10, NDCG@10, Recall@50 on the leave-last-out test split). A stage whose exercises
are not written yet is skipped with the reason, before it opens a W&B run or trains anything,
and the rest runs.
"""
from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..autograder.loader import NotebookError, load_session
from ..evaluation import MetricsTable
from ..paths import display_path, runs_dir

# Track modules of harness.pipeline, in pipeline order; each defines STAGES. A track that is
# not written yet is simply absent.
TRACKS = ("retrieval", "ranking", "coldstart", "semantic_ids", "generative", "serving")


@dataclass
class Context:
    dataset_name: str
    impl: str
    preset: str
    device: torch.device
    retrain: bool = False
    table: MetricsTable = field(default_factory=MetricsTable)
    artifacts: dict = field(default_factory=dict)
    dataset: object = None

    def session(self, number: int):
        """Session ``number``'s export cells from the tree this run uses."""
        return load_session(number, self.impl)

    @property
    def cache_dir(self) -> Path:
        """Checkpoints and cache records of this (dataset, preset, tree)."""
        return runs_dir() / "pipeline" / f"{self.dataset_name}-{self.preset}-{self.impl}"


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline; ``needs`` maps a session number to the exercises the stage runs."""

    name: str
    run: Callable[[Context], None]
    description: str
    needs: dict[int, tuple[str, ...]] = field(default_factory=dict)


class StageSkipped(Exception):
    """A stage cannot run (exercises not written, an earlier stage skipped); the message says why."""


def missing_exercises(stage: Stage, tree: str) -> list[str]:
    """``["exercise 5 `fit` of session 05 (sessions/...py:412)", ...]`` for exercises still stubs in ``tree``."""
    from ..autograder.exercises import get_session
    from ..autograder.loader import notebook_path
    from ..autograder.stubs import unwritten_exercises

    out = []
    for number, names in stage.needs.items():
        unwritten = dict(unwritten_exercises(number, tree))
        session = get_session(number)
        for name in names or [e.name for e in session.exercises]:
            if name in unwritten:
                where = f"{display_path(notebook_path(number, tree))}:{unwritten[name]}"
                out.append(f"exercise {session.number_of(name)} `{name}` of session {number:02d} ({where})")
    return out


def all_stages() -> list[Stage]:
    stages = []
    for track in TRACKS:
        try:
            module = importlib.import_module(f"{__package__}.{track}")
        except ModuleNotFoundError as err:
            if err.name == f"{__package__}.{track}":
                continue
            raise
        stages.extend(module.STAGES)
    return stages


def _stage_env(ctx: Context) -> None:
    from ..env import environment_report

    print(environment_report())


def _stage_data(ctx: Context) -> None:
    from ..data import DATASETS, load_dataset

    # The run's preset picks the dataset's size where the dataset has one (synthetic: smoke/laptop/gpu).
    presets = DATASETS[ctx.dataset_name].presets if ctx.dataset_name in DATASETS else ()
    ctx.dataset = load_dataset(ctx.dataset_name, ctx.preset if ctx.preset in presets else None, quiet=False)
    print(ctx.dataset.summary())


BASE_STAGES = [
    Stage("env", _stage_env, "environment report"),
    Stage("data", _stage_data, "load (and prepare) the dataset"),
]


def run_pipeline(dataset: str = "ml-100k", impl: str = "solutions", preset: str = "laptop",
                 stages: list[str] | None = None, output: str | None = None, retrain: bool = False) -> MetricsTable:
    # Every session's components come from the same tree, so `--impl sessions` runs on your code only.
    os.environ["HARNESS_UPSTREAM"] = impl
    os.environ.setdefault("WANDB_MODE", "offline")
    from ..env import pick_device
    from ..seeding import seed_everything

    seed_everything(0)
    ctx = Context(dataset, impl, preset, pick_device(), retrain=retrain)
    everything = BASE_STAGES + all_stages()
    if stages:
        unknown = set(stages) - {s.name for s in everything}
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))}; stages: "
                             f"{', '.join(s.name for s in everything)}")
    selected = [s for s in everything if not stages or s.name in stages or s.name == "data"]
    print(f"pipeline: dataset={dataset} impl={impl} preset={preset} device={ctx.device.type}"
          + (" (retraining every model)" if retrain else ""))
    timings, skipped = {}, []
    for stage in selected:
        print(f"\n== {stage.name}: {stage.description}")
        start = time.perf_counter()
        try:
            missing = missing_exercises(stage, impl)
            if missing:
                raise StageSkipped("not written yet: " + "; ".join(missing))
            stage.run(ctx)
        except (StageSkipped, NotImplementedError, NotebookError) as err:
            print(f"   stage skipped: {err}")
            skipped.append(stage.name)
        timings[stage.name] = time.perf_counter() - start
        print(f"   ({timings[stage.name]:.1f} s)")
    print(f"\n== metrics: {dataset}, leave-last-out test split, full-catalog ranking, seen items excluded\n")
    print(ctx.table)
    out = Path(output) if output else ctx.cache_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.md").write_text(ctx.table.to_markdown() + "\n")
    (out / "metrics.json").write_text(json.dumps(
        {"dataset": dataset, "impl": impl, "preset": preset, "device": ctx.device.type,
         "metrics": ctx.table.rows, "notes": ctx.table.notes, "intervals": ctx.table.intervals,
         "differences": ctx.table.differences, "stage_seconds": timings, "skipped_stages": skipped,
         "total_seconds": sum(timings.values())}, indent=2))
    print(f"\n(table written to {display_path(out / 'metrics.md')}; {sum(timings.values()):.0f} s in all)")
    return ctx.table
