"""Experiment configuration: YAML defaults in ``harness/configs``, presets, and overrides.

    >>> cfg = load_config("two_tower", preset="smoke", overrides={"train.lr": 3e-4})
    >>> cfg.train.lr, cfg.model.dim
    (0.0003, 32)

Values are plain attributes (a ``SimpleNamespace`` tree), so notebooks read
``cfg.train.batch_size``; ``as_dict`` gives the flat dict W&B logs.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _namespace(tree: Any) -> Any:
    if isinstance(tree, dict):
        return SimpleNamespace(**{k: _namespace(v) for k, v in tree.items()})
    return tree


def as_dict(cfg: SimpleNamespace, prefix: str = "") -> dict:
    """Flat ``{"train.lr": ..., "model.dim": ...}`` view, for logging."""
    out = {}
    for key, value in vars(cfg).items():
        name = f"{prefix}{key}"
        if isinstance(value, SimpleNamespace):
            out.update(as_dict(value, name + "."))
        else:
            out[name] = value
    return out


def load_config(name: str, preset: str | None = None, overrides: dict[str, Any] | None = None) -> SimpleNamespace:
    """Defaults of ``configs/<name>.yaml``, then the preset, then ``{"train.lr": 1e-3}``-style overrides."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no config {name!r} in {CONFIG_DIR} (known: {known})")
    raw = yaml.safe_load(path.read_text())
    presets = raw.pop("presets", {}) or {}
    preset = preset or os.environ.get("WORKBOOK_PRESET") or "laptop"
    if preset not in presets:
        raise ValueError(f"config {name!r} has no preset {preset!r}; presets: {', '.join(presets)}")
    tree = _merge(raw, presets[preset] or {})
    for dotted, value in (overrides or {}).items():
        node = tree
        *parents, leaf = dotted.split(".")
        for part in parents:
            if part not in node or not isinstance(node[part], dict):
                raise KeyError(f"override {dotted!r}: no section {part!r}")
            node = node[part]
        if leaf not in node:
            raise KeyError(f"override {dotted!r}: unknown setting {leaf!r} (known: {', '.join(node)})")
        node[leaf] = value
    tree["preset"] = preset
    return _namespace(tree)
