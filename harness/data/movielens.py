"""MovieLens parsers.

* ``ml-100k`` is embedded: the ``recbole==1.2.1`` wheel ships it as RecBole atomic
  files (``ml-100k.inter``, ``ml-100k.item``, ``ml-100k.user``: tab-separated with
  typed headers such as ``user_id:token``). Same 943 users, 1,682 items and 100,000
  ratings as GroupLens' ``u.data``, in the same row order.
"""
from __future__ import annotations

import csv
import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .preprocess import RawData


def recbole_ml100k_dir() -> Path:
    """Folder of the MovieLens-100K atomic files inside the installed recbole package."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "MovieLens-100K ships inside the recbole wheel, which is not installed: "
            "run ./setup.sh, or `pip install --no-deps recbole==1.2.1`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise FileNotFoundError(f"{folder}/ml-100k.inter is missing: reinstall with `pip install --no-deps --force-reinstall recbole==1.2.1`")
    return folder


def read_atomic(path: Path) -> tuple[pd.DataFrame, Counter]:
    """Read a RecBole atomic file; header fields are ``name:type``. Rows with the wrong field count are skipped."""
    malformed: Counter = Counter()
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = [field.split(":")[0] for field in next(reader)]
        rows = []
        for row in reader:
            if len(row) != len(header):
                if row:
                    malformed[f"{path.name}: wrong number of fields"] += 1
                continue
            rows.append(row)
    return pd.DataFrame(rows, columns=header), malformed


def _to_int(series: pd.Series, reason: str, malformed: Counter) -> pd.Series:
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        malformed[reason] += int(bad.sum())
    return values


def read_ml100k_recbole(folder: Path | None = None) -> RawData:
    folder = folder or recbole_ml100k_dir()
    inter, malformed = read_atomic(folder / "ml-100k.inter")
    users = _to_int(inter["user_id"], "non-numeric user id", malformed)
    items = _to_int(inter["item_id"], "non-numeric item id", malformed)
    ratings = _to_int(inter["rating"], "non-numeric rating", malformed)
    stamps = _to_int(inter["timestamp"], "non-numeric timestamp", malformed)
    ok = users.notna() & items.notna() & ratings.notna() & stamps.notna()
    interactions = pd.DataFrame({
        "raw_user_id": users[ok].astype(np.int64), "raw_item_id": items[ok].astype(np.int64),
        "rating": ratings[ok].astype(np.float32), "timestamp": stamps[ok].astype(np.int64)})

    meta, bad = read_atomic(folder / "ml-100k.item")
    malformed.update(bad)
    genres = meta["class"].fillna("").str.split()
    year = meta["release_year"].fillna("")
    items_meta = pd.DataFrame({
        "raw_item_id": pd.to_numeric(meta["item_id"], errors="coerce").astype("Int64"),
        "title": meta["movie_title"].fillna(""),
        "year": pd.to_numeric(year, errors="coerce").astype("Int64"),
        "genres": genres.map(lambda g: "|".join(g)),
        "category": genres.map(lambda g: g[0] if g else "unknown"),
    })
    items_meta["text"] = [
        f"{title} ({y})" if pd.notna(y) else title for title, y in zip(items_meta["title"], items_meta["year"])]
    items_meta["text"] = items_meta["text"] + ". Genres: " + genres.map(lambda g: ", ".join(g) or "unknown") + "."
    items_meta = items_meta.dropna(subset=["raw_item_id"]).astype({"raw_item_id": np.int64})

    user_meta, bad = read_atomic(folder / "ml-100k.user")
    malformed.update(bad)
    user_meta = user_meta.rename(columns={"user_id": "raw_user_id"})
    user_meta["raw_user_id"] = pd.to_numeric(user_meta["raw_user_id"], errors="coerce")
    user_meta = user_meta.dropna(subset=["raw_user_id"]).astype({"raw_user_id": np.int64})
    user_meta["age"] = pd.to_numeric(user_meta["age"], errors="coerce")
    return RawData(interactions, items_meta, user_meta, malformed,
                   {"format": "recbole atomic files", "path": str(folder)})
