"""The one processed schema every dataset becomes, and the dataset object notebooks use.

``data/processed/<name>/``::

    interactions.parquet  user_id, item_id (contiguous, 1-based: 0 is padding), rating,
                          timestamp (seconds), split ("train" | "valid" | "test"),
                          sorted by user, then time, then source order
    items.parquet         item_id, raw_item_id, title, text, category, ...
    users.parquet         user_id, raw_user_id, ...
    meta.json             counts, preprocessing settings, malformed-row report, fingerprint

The split is leave-last-out per user: the last interaction is test, the one before
it valid, the rest train. Evaluation ranks the held-out item against the whole
catalog, excluding what the user has already seen.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import atomic_write

PAD = 0
SPLITS = ("train", "valid", "test")
INTERACTION_COLUMNS = ("user_id", "item_id", "rating", "timestamp", "split")


@dataclass
class RecDataset:
    """A prepared dataset: interactions with their split, item and user tables, metadata."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return int(self.meta["n_users"])

    @property
    def n_items(self) -> int:
        """Catalog size; ids run 1..n_items and tensors indexed by item have n_items + 1 rows."""
        return int(self.meta["n_items"])

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: use one of {SPLITS}")
        return self.interactions[self.interactions["split"] == name]

    def history(self, upto: str = "test") -> pd.DataFrame:
        """Interactions visible when predicting ``upto``: train for valid, train+valid for test."""
        visible = {"train": (), "valid": ("train",), "test": ("train", "valid")}[upto]
        return self.interactions[self.interactions["split"].isin(visible)]

    def sequences(self, upto: str = "test") -> list[np.ndarray]:
        """Per user (index = user_id, index 0 empty), the item ids seen before ``upto``, in time order."""
        frame = self.history(upto)
        users = frame["user_id"].to_numpy()
        items = frame["item_id"].to_numpy()
        bounds = np.searchsorted(users, np.arange(self.n_users + 2))
        return [items[bounds[u]:bounds[u + 1]] for u in range(self.n_users + 1)]

    def targets(self, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
        """(user_ids, held-out item_ids) of a split, one row per user."""
        frame = self.split(split)
        return frame["user_id"].to_numpy(), frame["item_id"].to_numpy()

    def item_counts(self, upto: str = "test") -> np.ndarray:
        """Interactions per item (length n_items + 1, index 0 = padding = 0) before ``upto``."""
        return np.bincount(self.history(upto)["item_id"].to_numpy(), minlength=self.n_items + 1)

    def category_codes(self) -> tuple[np.ndarray, list[str]]:
        """Per item id, a category index (1..C; 0 = padding) and the C category names."""
        names = sorted(self.items["category"].astype(str).unique())
        lookup = {name: i + 1 for i, name in enumerate(names)}
        codes = np.zeros(self.n_items + 1, dtype=np.int64)
        codes[self.items["item_id"].to_numpy()] = [lookup[c] for c in self.items["category"].astype(str)]
        return codes, names

    @cached_property
    def item_titles(self) -> np.ndarray:
        titles = np.full(self.n_items + 1, "", dtype=object)
        titles[self.items["item_id"].to_numpy()] = self.items["title"].to_numpy()
        return titles

    def summary(self) -> str:
        return (f"{self.name}: {self.n_users:,} users, {self.n_items:,} items, "
                f"{len(self.interactions):,} interactions")


def assign_leave_last_out(interactions: pd.DataFrame) -> pd.DataFrame:
    """Sort by user and time (ties keep source order) and mark each user's last two rows.

    Needs at least three interactions per user so that train is never empty.
    """
    frame = interactions.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    users = frame["user_id"].to_numpy()
    # rows from the end of each user's block: sorted by user, so the block ends where the id changes
    last = np.r_[users[1:] != users[:-1], True]
    codes = np.zeros(len(frame), dtype=np.int8)  # 0 train, 1 valid, 2 test
    codes[last] = 2
    codes[np.r_[last[1:], False] & ~last] = 1
    frame["split"] = pd.Categorical.from_codes(codes, categories=list(SPLITS))
    return frame


def save_processed(folder: Path, interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
                   meta: dict) -> None:
    """Write the processed tables; meta.json goes last, so its presence means "complete"."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)
    for name, frame in (("interactions", interactions), ("items", items), ("users", users)):
        atomic_write(folder / f"{name}.parquet", lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
    atomic_write(folder / "meta.json", lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True,
                                                                                   default=str)))


def read_meta(folder: Path) -> dict | None:
    path = folder / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def load_processed(folder: Path, name: str) -> RecDataset:
    meta = read_meta(folder)
    if meta is None:
        raise FileNotFoundError(f"{folder} holds no prepared dataset: run `python -m harness data prepare {name}`")
    interactions = pd.read_parquet(folder / "interactions.parquet")
    items = pd.read_parquet(folder / "items.parquet")
    users = pd.read_parquet(folder / "users.parquet")
    return RecDataset(name, interactions, items, users, meta)
