"""Raw interactions -> the processed schema: dedupe, k-core, contiguous ids, split.

Every parser produces a :class:`RawData` (raw ids, ratings, timestamps in seconds,
item metadata, and a count of the malformed rows it skipped); :func:`preprocess`
does the rest the same way for every dataset. It works on integer codes and NumPy
arrays rather than Python objects, so the full Amazon Electronics 5-core
(15.5M ratings) fits comfortably in memory.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .schema import assign_leave_last_out


@dataclass
class RawData:
    """What a parser read: one row per interaction, plus item and user metadata."""

    interactions: pd.DataFrame  # raw_user_id, raw_item_id, rating, timestamp (int, in `timestamp_unit`)
    items: pd.DataFrame  # raw_item_id, title, text, category, ... (may miss some items)
    users: pd.DataFrame | None = None  # raw_user_id, ...
    malformed: Counter = field(default_factory=Counter)  # reason -> rows skipped
    source: dict = field(default_factory=dict)
    timestamp_unit: str = "s"  # "s" or "ms" (Amazon); ordering uses full precision, the schema stores seconds


@dataclass(frozen=True)
class PrepConfig:
    """Iterative k-core thresholds. Leave-last-out needs at least 3 interactions per user."""

    min_user_interactions: int = 5
    min_item_interactions: int = 5

    def __post_init__(self):
        if self.min_user_interactions < 3:
            raise ValueError("min_user_interactions must be >= 3: leave-last-out needs train, valid and test")
        if self.min_item_interactions < 1:
            raise ValueError("min_item_interactions must be >= 1")


def k_core(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Boolean mask of the rows that survive iterative k-core filtering.

    Removing a sparse item can push a user below the threshold and vice versa, so
    filter users and items in turn until nothing changes.
    """
    keep = np.ones(len(users), dtype=bool)
    while True:
        user_counts = np.bincount(users[keep], minlength=users.max(initial=0) + 1)
        item_counts = np.bincount(items[keep], minlength=items.max(initial=0) + 1)
        ok = keep & (user_counts[users] >= min_user) & (item_counts[items] >= min_item)
        if ok.sum() == keep.sum():
            return ok
        keep = ok


def _contiguous(codes: np.ndarray, uniques: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the surviving codes 1..N in the order of their sorted raw ids."""
    present = np.unique(codes)
    raw = uniques[present]
    try:
        order = np.argsort(pd.to_numeric(raw).to_numpy(), kind="stable")
    except (ValueError, TypeError):
        order = np.argsort(raw.astype(str).to_numpy(), kind="stable")
    present = present[order]
    lookup = np.zeros(len(uniques), dtype=np.int64)
    lookup[present] = np.arange(1, len(present) + 1)
    return lookup[codes], np.asarray(uniques[present])


def preprocess(raw: RawData, config: PrepConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Returns (interactions, items, users, report) in the processed schema."""
    frame = raw.interactions
    report: dict = {"rows_read": int(len(frame) + sum(raw.malformed.values())),
                    "malformed": dict(raw.malformed)}

    missing = frame[["raw_user_id", "raw_item_id", "timestamp"]].isna().any(axis=1).to_numpy()
    if missing.any():
        report["malformed"]["missing user, item or timestamp"] = (
            report["malformed"].get("missing user, item or timestamp", 0) + int(missing.sum()))
        frame = frame[~missing]

    user_codes, user_uniques = pd.factorize(frame["raw_user_id"], sort=False)
    item_codes, item_uniques = pd.factorize(frame["raw_item_id"], sort=False)
    timestamps = frame["timestamp"].to_numpy(dtype=np.int64)
    ratings = frame["rating"].to_numpy(dtype=np.float32) if "rating" in frame else np.ones(len(frame), np.float32)

    # Deduplicate repeated (user, item) pairs, keeping the earliest; ties keep source order.
    order = np.argsort(timestamps, kind="stable")
    pair = user_codes.astype(np.int64) * (len(item_uniques) + 1) + item_codes
    _, first = np.unique(pair[order], return_index=True)
    keep_rows = np.sort(order[first])
    report["duplicates_removed"] = int(len(pair) - len(keep_rows))
    user_codes, item_codes = user_codes[keep_rows], item_codes[keep_rows]
    timestamps, ratings = timestamps[keep_rows], ratings[keep_rows]

    core = k_core(user_codes, item_codes, config.min_user_interactions, config.min_item_interactions)
    report["k_core_removed_interactions"] = int((~core).sum())
    user_codes, item_codes = user_codes[core], item_codes[core]
    timestamps, ratings = timestamps[core], ratings[core]
    if len(user_codes) == 0:
        raise ValueError(f"no interaction survives {config.min_user_interactions}/{config.min_item_interactions}"
                         "-core filtering: lower the thresholds or use more data")

    user_ids, raw_users = _contiguous(user_codes, user_uniques)
    item_ids, raw_items = _contiguous(item_codes, item_uniques)
    # Order by full-precision time first (ties keep source order), then store seconds.
    interactions = assign_leave_last_out(pd.DataFrame({
        "user_id": user_ids.astype(np.int64), "item_id": item_ids.astype(np.int64),
        "rating": ratings, "timestamp": timestamps}))
    if raw.timestamp_unit == "ms":
        interactions["timestamp"] = interactions["timestamp"] // 1000
    elif raw.timestamp_unit != "s":
        raise ValueError(f"timestamp_unit must be 's' or 'ms', got {raw.timestamp_unit!r}")

    items = _join_items(raw.items, raw_items, report)
    users = pd.DataFrame({"user_id": np.arange(1, len(raw_users) + 1), "raw_user_id": raw_users})
    if raw.users is not None and len(raw.users):
        users = users.merge(raw.users.drop_duplicates("raw_user_id"), on="raw_user_id", how="left")

    report.update(n_users=int(len(raw_users)), n_items=int(len(raw_items)), n_interactions=int(len(interactions)),
                  min_user_interactions=config.min_user_interactions,
                  min_item_interactions=config.min_item_interactions)
    return interactions, items, users, report


def _join_items(meta: pd.DataFrame, raw_items: np.ndarray, report: dict) -> pd.DataFrame:
    """Item table in item_id order; items with no metadata get empty text (and are counted)."""
    base = pd.DataFrame({"item_id": np.arange(1, len(raw_items) + 1), "raw_item_id": raw_items})
    if meta is None or len(meta) == 0:
        meta = pd.DataFrame({"raw_item_id": pd.Series([], dtype=base["raw_item_id"].dtype)})
    meta = meta.drop_duplicates("raw_item_id", keep="first")
    key_dtype = base["raw_item_id"].dtype
    try:
        meta = meta.assign(raw_item_id=meta["raw_item_id"].astype(key_dtype))
    except (ValueError, TypeError):
        base = base.assign(raw_item_id=base["raw_item_id"].astype(str))
        meta = meta.assign(raw_item_id=meta["raw_item_id"].astype(str))
    items = base.merge(meta, on="raw_item_id", how="left")
    for column in ("title", "text", "category"):
        if column not in items:
            items[column] = ""
    have_meta = items["raw_item_id"].isin(meta["raw_item_id"])
    report["items_without_metadata"] = int((~have_meta).sum())
    for column in ("title", "text", "category"):
        items[column] = items[column].fillna("").astype(str)
    return items
