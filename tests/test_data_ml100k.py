"""MovieLens-100K from the recbole wheel, in the processed schema, offline."""
from __future__ import annotations

import numpy as np
import pytest

from harness.data import load_dataset, prepare


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    import os

    folder = tmp_path_factory.mktemp("data")
    old = os.environ.get("HARNESS_DATA_DIR")
    os.environ["HARNESS_DATA_DIR"] = str(folder)
    try:
        meta = prepare("ml-100k", log=lambda m: None)
        yield meta, load_dataset("ml-100k"), folder
    finally:
        if old is None:
            os.environ.pop("HARNESS_DATA_DIR", None)
        else:
            os.environ["HARNESS_DATA_DIR"] = old


def test_published_counts(ml100k):
    meta, ds, _ = ml100k
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (943, 1682, 100_000)
    assert meta["malformed"] == {} and meta["duplicates_removed"] == 0


def test_contiguous_ids_with_padding_reserved(ml100k):
    _, ds, _ = ml100k
    assert ds.interactions["user_id"].min() == 1 and ds.interactions["user_id"].max() == 943
    assert sorted(ds.items["item_id"]) == list(range(1, 1683))
    assert (ds.items["title"] != "").all()
    assert ds.items.loc[ds.items.item_id == 1, "title"].item() == "Toy Story"


def test_leave_last_out_split(ml100k):
    _, ds, _ = ml100k
    counts = ds.interactions.groupby(["user_id", "split"], observed=True).size().unstack()
    assert (counts["test"] == 1).all() and (counts["valid"] == 1).all() and (counts["train"] >= 3).all()
    # the test item is the last in time, the valid item the one before it
    for _, rows in list(ds.interactions.groupby("user_id"))[:50]:
        stamps = rows["timestamp"].to_numpy()
        assert (np.diff(stamps) >= 0).all()
        assert list(rows["split"].iloc[-2:]) == ["valid", "test"]


def test_prepare_is_idempotent(ml100k):
    _, _, folder = ml100k
    before = {p.name: p.stat().st_mtime_ns for p in (folder / "processed" / "ml-100k").iterdir()}
    meta = prepare("ml-100k", log=lambda m: None)
    after = {p.name: p.stat().st_mtime_ns for p in (folder / "processed" / "ml-100k").iterdir()}
    assert meta["skipped"] and before == after


def test_sequences_and_targets(ml100k):
    _, ds, _ = ml100k
    seqs = ds.sequences("test")
    users, targets = ds.targets("test")
    assert len(seqs) == ds.n_users + 1 and len(seqs[0]) == 0
    assert all(t not in set(seqs[u]) for u, t in zip(users[:100], targets[:100]))
    assert sum(len(s) for s in seqs) == 100_000 - 943
