"""Datasets of the workbook, all in one processed schema (see :mod:`harness.data.schema`).

    >>> from harness.data import load_dataset
    >>> ds = load_dataset("ml-100k")          # prepared on first use, offline
    >>> ds.n_users, ds.n_items, len(ds.interactions)
    (943, 1682, 100000)

``python -m harness data prepare NAME`` does the preparation explicitly.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ..paths import data_dir, display_path
from .preprocess import PrepConfig, RawData, preprocess
from .schema import RecDataset, load_processed, read_meta, save_processed

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    read: Callable[[str | None], RawData]  # preset -> raw data
    config: PrepConfig
    sources: Callable[[str | None], list[Path]]  # files whose change means "prepare again"
    presets: tuple[str, ...] = ("full",)


def _ml100k_read(preset: str | None) -> RawData:
    from .movielens import read_ml100k_recbole

    return read_ml100k_recbole()


def _ml100k_sources(preset: str | None) -> list[Path]:
    from .movielens import recbole_ml100k_dir

    folder = recbole_ml100k_dir()
    return [folder / "ml-100k.inter", folder / "ml-100k.item", folder / "ml-100k.user"]


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        "ml-100k", "MovieLens-100K, embedded (from the recbole wheel), no download",
        _ml100k_read,
        # Every user has >= 20 ratings; items are kept whole so the catalog stays the published 1,682.
        PrepConfig(min_user_interactions=5, min_item_interactions=1),
        _ml100k_sources),
}


def processed_dir(name: str, preset: str | None = None) -> Path:
    suffix = f"-{preset}" if preset and preset != "full" else ""
    return data_dir() / "processed" / f"{name}{suffix}"


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[name]


def fingerprint(spec: DatasetSpec, preset: str | None) -> str:
    """Changes when a source file, the k-core settings or the schema change."""
    parts = {"schema": SCHEMA_VERSION, "config": asdict(spec.config), "preset": preset,
             "sources": [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in spec.sources(preset)]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def prepare(name: str, preset: str | None = None, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Prepare a dataset into ``data/processed``; a no-op when it is already prepared from the same sources."""
    spec = _spec(name)
    if preset and preset not in spec.presets:
        raise ValueError(f"{name} has no preset {preset!r}; presets: {', '.join(spec.presets)}")
    folder = processed_dir(name, preset)
    fp = fingerprint(spec, preset)
    meta = read_meta(folder)
    if meta and meta.get("fingerprint") == fp and not force:
        log(f"{name}: already prepared in {display_path(folder)} (nothing to do)")
        meta["skipped"] = True
        return meta
    start = time.perf_counter()
    raw = spec.read(preset)
    interactions, items, users, report = preprocess(raw, spec.config)
    meta = {"name": name, "preset": preset or "full", "fingerprint": fp, "schema_version": SCHEMA_VERSION,
            "source": raw.source, "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(time.perf_counter() - start, 2), **report}
    save_processed(folder, interactions, items, users, meta)
    bad = sum(report["malformed"].values())
    log(f"{name}: {meta['n_users']:,} users, {meta['n_items']:,} items, {meta['n_interactions']:,} interactions "
        f"-> {display_path(folder)} ({meta['seconds']:.1f} s; {bad:,} malformed rows skipped, "
        f"{report['duplicates_removed']:,} duplicates removed)")
    for reason, count in report["malformed"].items():
        log(f"  skipped {count:,} rows: {reason}")
    meta["skipped"] = False
    return meta


def load_dataset(name: str = "ml-100k", preset: str | None = None, *, quiet: bool = True) -> RecDataset:
    """Load a prepared dataset, preparing it first when needed (ml-100k needs no network)."""
    spec = _spec(name)
    folder = processed_dir(name, preset)
    meta = read_meta(folder)
    if meta is None or meta.get("fingerprint") != fingerprint(spec, preset):
        prepare(name, preset, log=(lambda _msg: None) if quiet else print)
    return load_processed(folder, name)


__all__ = ["DATASETS", "RecDataset", "load_dataset", "prepare", "processed_dir"]
