"""Trained models reused while what they were trained from is unchanged.

A second ``python -m harness pipeline`` on an unchanged tree should take seconds. A stage that
trains asks :func:`load_or_train`; the model is trained again only when something it depends on
changed: the dataset (its fingerprint), the config, the export cells of the sessions whose code
trains it (from the tree the run uses), the harness modules it names, or the torch version.
``--retrain`` forces training.

    model, result, reused = load_or_train(ctx, "two-tower-mean", config=as_dict(cfg), sessions=(2, 3, 4, 5),
                                          train=lambda path: ..., load=lambda path: ...)
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..autograder.loader import notebook_path
from ..autograder.notebook import export_source
from ..paths import atomic_write


def content_digest(*parts: Any, length: int = 16) -> str:
    """SHA-256 prefix of what a cached result was built from: modules (their weights, by name), tensors
    (shape and values) and JSON-able values, in order."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.nn.Module):
            for name, value in sorted(part.state_dict().items()):
                digest.update(name.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(part, torch.Tensor):
            digest.update(str(tuple(part.shape)).encode())
            digest.update(part.detach().cpu().contiguous().numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:length]


def code_fingerprint(tree: str, sessions: Iterable[int], modules: Iterable[str] = ()) -> str:
    """SHA-256 of the export cells of ``sessions`` in ``tree`` and of the source of ``modules``."""
    digest = hashlib.sha256()
    for number in sorted(set(sessions)):
        path = notebook_path(number, tree)
        digest.update(f"session {number}\n".encode())
        digest.update(export_source(path).encode())
    for name in sorted(set(modules)):
        module = __import__(name, fromlist=["_"])
        digest.update(f"module {name}\n".encode())
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def cache_key(ctx, name: str, config: dict, sessions: Iterable[int], modules: Iterable[str] = ()) -> str:
    parts = {"name": name, "dataset": ctx.dataset_name, "fingerprint": ctx.dataset.meta.get("fingerprint"),
             "preset": ctx.preset, "impl": ctx.impl, "config": config, "torch": torch.__version__,
             "device": ctx.device.type, "code": code_fingerprint(ctx.impl, sessions, modules)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, default=str)))


def load_or_train(ctx, name: str, *, config: dict, sessions: Iterable[int], train: Callable[[Path], tuple[Any, dict]],
                  load: Callable[[Path], Any], modules: Iterable[str] = ()) -> tuple[Any, dict, bool]:
    """``(model, result, reused)``: the model trained earlier under the same key, or a new one.

    ``train(checkpoint_path) -> (model, result)`` must leave its weights at ``checkpoint_path``;
    ``load(checkpoint_path) -> model`` rebuilds the model from it. ``result`` (JSON-able) is
    stored beside the checkpoint, so a reused model reports how it was trained.
    """
    folder = ctx.cache_dir
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, record = folder / f"{name}.pt", folder / f"{name}.json"
    key = cache_key(ctx, name, config, sessions, modules)
    if not ctx.retrain and checkpoint.is_file() and record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("key") == key:
            try:
                return load(checkpoint), saved["result"], True
            except Exception as err:  # an unreadable checkpoint is retrained, never fatal
                print(f"   cached {name} could not be loaded ({type(err).__name__}: {err}); training again")
    record.unlink(missing_ok=True)  # the old record no longer describes the checkpoint about to be written
    model, result = train(checkpoint)
    _write_json(record, {"key": key, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "result": result})
    return model, result, False
