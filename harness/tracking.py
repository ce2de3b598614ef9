"""Weights & Biases runs that work with no account.

The workbook logs offline by default (runs land in ``runs/wandb`` and can be
uploaded later with ``wandb sync``); tests run with ``WANDB_MODE=disabled``.
Set ``WANDB_MODE=online`` after ``wandb login`` to see the dashboards live.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .paths import runs_dir

DEFAULT_PROJECT = "recsys-workbook"


def wandb_mode() -> str:
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode not in ("online", "offline", "disabled", "dryrun"):
        raise ValueError(f"WANDB_MODE={mode!r}: use offline (default), online (after `wandb login`) or disabled")
    return mode


def init_run(name: str | None = None, config: dict[str, Any] | None = None, *,
             project: str = DEFAULT_PROJECT, mode: str | None = None, group: str | None = None, **kwargs):
    """Start a W&B run (offline unless ``WANDB_MODE`` says otherwise) and return it."""
    import wandb

    mode = mode or wandb_mode()
    folder = runs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("settings", wandb.Settings(quiet=True))  # one line of ours instead of W&B's banner
    return wandb.init(project=project, name=name, config=config or {}, mode=mode, group=group,
                      dir=str(folder), reinit="finish_previous", **kwargs)


def finish_run(run) -> None:
    """Finish ``run`` and return only once its files are complete on disk.

    ``run.finish()`` returns when W&B's service process has *received* the run's last records; in
    offline mode the service writes ``run-*.wandb`` from its own writer, which may still be flushing
    (an empty 7-byte file was seen right after ``finish()`` in about one run in four). Tearing the
    service down waits for that writer to close the file; the next ``init_run`` starts a new service.
    Use this when something reads the run's files next (a test, ``wandb sync`` from the same script).
    """
    import wandb

    run.finish()
    if wandb_mode() == "offline":
        wandb.teardown()


def describe_run(run) -> str:
    """Where a run's data went, in one line."""
    if run is None or getattr(run, "disabled", False) or type(run).__name__ == "RunDisabled":
        return "W&B disabled"
    mode = wandb_mode()
    where = Path(run.dir).parent if getattr(run, "dir", None) else runs_dir() / "wandb"
    if mode == "offline":
        return f"W&B offline run in {where} (upload later with `wandb sync {where}`)"
    return f"W&B run {getattr(run, 'url', '')}"
