"""Datasets of the workbook, all in one processed schema (see :mod:`harness.data.schema`).

    >>> from harness.data import load_dataset
    >>> ds = load_dataset("ml-100k")          # prepared on first use, offline
    >>> ds.n_users, ds.n_items, len(ds.interactions)
    (943, 1682, 100000)

``python -m harness data prepare NAME`` does the preparation explicitly.
"""
from __future__ import annotations

import contextlib
import fcntl
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
    """How one dataset arrives and is preprocessed.

    ``fetch`` (downloadable datasets) makes sure the raw files are on disk, downloading
    what is missing, and returns them; ``sources`` lists the same files without
    downloading (their size and mtime go into the fingerprint); ``read`` parses them.
    """

    name: str
    description: str
    read: Callable[[str | None], RawData]  # preset -> raw data
    config: PrepConfig
    sources: Callable[[str | None], list[Path]]  # files whose change means "prepare again"
    presets: tuple[str, ...] = ("full",)
    fetch: Callable[[str | None], list[Path]] | None = None
    version: str = "1"  # bump when the parser or generator changes what it produces


def _ml100k_read(preset: str | None) -> RawData:
    from .movielens import read_ml100k_recbole

    return read_ml100k_recbole()


def _ml100k_sources(preset: str | None) -> list[Path]:
    from .movielens import recbole_ml100k_dir

    folder = recbole_ml100k_dir()
    return [folder / "ml-100k.inter", folder / "ml-100k.item", folder / "ml-100k.user"]


def _synthetic_read(preset: str | None) -> RawData:
    from .synthetic import PRESETS, generate

    return generate(PRESETS[preset or "laptop"])


# Downloadable datasets: raw files in data/raw/<name>/<published file name>; one placed there
# by hand is used without downloading.

def _amazon_spec(name: str, kind: str, description: str, shared_with: tuple[str, ...] = ()) -> DatasetSpec:
    """kind "5core": official 5-core ratings CSV + metadata; "raw": every review (JSONL) + metadata."""
    from . import amazon
    from .download import RawFiles

    first, reader = ((amazon.ratings_5core_url(), amazon.read_amazon_5core) if kind == "5core"
                     else (amazon.reviews_url(), amazon.read_amazon_raw))
    files = RawFiles(name, (first, amazon.meta_url()), shared_with)  # the metadata file is shared

    def read(preset: str | None) -> RawData:
        return reader(*files.paths(), sample_fraction=amazon.LAPTOP_FRACTION if preset == "laptop" else None)

    # 5-core again after sampling users (or on the raw reviews), as in the published benchmark.
    return DatasetSpec(name, description, read, PrepConfig(min_user_interactions=5, min_item_interactions=5),
                       files.paths, presets=("full", "laptop"), fetch=files.fetch)


def _movielens_spec(name: str, description: str) -> DatasetSpec:
    from . import movielens
    from .download import RawFiles

    url, reader = {"ml-1m": (movielens.ML1M_URL, movielens.read_ml1m_zip),
                   "ml-20m": (movielens.ML20M_URL, movielens.read_ml20m_zip)}[name]
    files = RawFiles(name, (url,))
    # Every user has >= 20 ratings; items are kept whole so the published catalogs stay as they are.
    return DatasetSpec(name, description, lambda preset: reader(files.paths()[0]),
                       PrepConfig(min_user_interactions=5, min_item_interactions=1), files.paths, fetch=files.fetch)


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        "ml-100k", "MovieLens-100K, embedded (from the recbole wheel), no download",
        _ml100k_read,
        # Every user has >= 20 ratings; items are kept whole so the catalog stays the published 1,682.
        PrepConfig(min_user_interactions=5, min_item_interactions=1),
        _ml100k_sources),
    "synthetic": DatasetSpec(
        "synthetic", "generated in seconds, Amazon schema, planted category and sequence structure",
        _synthetic_read,
        PrepConfig(min_user_interactions=5, min_item_interactions=2),
        lambda preset: [],
        presets=("smoke", "laptop", "gpu"),
        version="2"),
    "amazon-electronics": _amazon_spec(
        "amazon-electronics", "5core",
        "Amazon Reviews 2023 Electronics: official 5-core ratings + item metadata (GB-sized download; "
        "laptop = 5% of users)", shared_with=("amazon-electronics-raw",)),
    "amazon-electronics-raw": _amazon_spec(
        "amazon-electronics-raw", "raw",
        "Amazon Reviews 2023 Electronics: every review + item metadata, 5-core applied here (several GB; "
        "laptop = 5% of users)", shared_with=("amazon-electronics",)),
    "ml-1m": _movielens_spec("ml-1m", "MovieLens-1M from GroupLens (downloads 6 MB)"),
    "ml-20m": _movielens_spec("ml-20m", "MovieLens-20M from GroupLens (downloads 190 MB)"),
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
    parts = {"schema": SCHEMA_VERSION, "version": spec.version, "config": asdict(spec.config), "preset": preset,
             "sources": [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in spec.sources(preset)]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def resolve_preset(name: str, preset: str | None) -> str:
    """The dataset's own preset for ``preset`` (its first one when None)."""
    spec = _spec(name)
    if preset is None:
        return spec.presets[0]
    if preset not in spec.presets:
        raise ValueError(f"{name} has no preset {preset!r}; presets: {', '.join(spec.presets)}")
    return preset


@contextlib.contextmanager
def _exclusive(folder: Path):
    """One process at a time prepares ``folder`` (test workers, notebook kernels and the pipeline may race)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepare(name: str, preset: str | None = None, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Prepare a dataset into ``data/processed``; a no-op when it is already prepared from the same sources."""
    spec = _spec(name)
    preset = resolve_preset(name, preset)
    folder = processed_dir(name, preset)
    with _exclusive(folder):
        return _prepare_locked(spec, name, preset, folder, force, log)


def _prepare_locked(spec: DatasetSpec, name: str, preset: str, folder: Path, force: bool,
                    log: Callable[[str], None]) -> dict:
    if spec.fetch is not None:
        spec.fetch(preset)
    fp = fingerprint(spec, preset)
    meta = read_meta(folder)
    if meta and meta.get("fingerprint") == fp and not force:
        log(f"{name}: already prepared in {display_path(folder)} (nothing to do)")
        meta["skipped"] = True
        return meta
    start = time.perf_counter()
    raw = spec.read(preset)
    interactions, items, users, report = preprocess(raw, spec.config)
    meta = {"name": name, "preset": preset, "fingerprint": fp, "schema_version": SCHEMA_VERSION,
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
    preset = resolve_preset(name, preset)
    folder = processed_dir(name, preset)
    meta = read_meta(folder)
    stale = meta is None
    if meta is not None and all(p.exists() for p in spec.sources(preset)):
        stale = meta.get("fingerprint") != fingerprint(spec, preset)  # sources changed since
    if stale:
        prepare(name, preset, log=(lambda _msg: None) if quiet else print)
    return load_processed(folder, name)


__all__ = ["DATASETS", "RecDataset", "load_dataset", "prepare", "processed_dir"]
