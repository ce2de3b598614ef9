"""The ranking feature builder (harness/pipeline/features.py): schemas, no leakage, serving paths, speed."""
from __future__ import annotations

import math
import pickle
import time

import numpy as np
import pandas as pd
import pytest
import torch

from harness.data.schema import RecDataset, assign_leave_last_out
from harness.pipeline.features import (BagFeature, FeatureBuilder, FeatureSpec, SparseFeature, example_batch)

# user, item, timestamp. Leave-last-out: user 1 trains on 1, 2 (valid 3, test 4); user 2 on 2 (valid 1,
# test 5); user 3 on 2, 3 (valid 1, test 4). Train counts: item 1: 1, item 2: 3, item 3: 1, items 4, 5: 0.
ROWS = [(1, 1, 10), (1, 2, 20), (1, 3, 30), (1, 4, 40),
        (2, 2, 11), (2, 1, 21), (2, 5, 31),
        (3, 2, 12), (3, 3, 22), (3, 1, 32), (3, 4, 42)]


def tiny(kind: str = "movielens", rows=ROWS) -> RecDataset:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    frame["rating"] = 1.0
    interactions = assign_leave_last_out(frame[["user_id", "item_id", "rating", "timestamp"]])
    items = pd.DataFrame({"item_id": [1, 2, 3, 4, 5], "title": list("abcde"), "text": list("abcde")})
    users = pd.DataFrame({"user_id": [1, 2, 3]})
    if kind == "movielens":
        items["genres"] = ["Comedy|Drama", "Drama", "Horror", "Western", ""]
        items["category"] = ["Comedy", "Drama", "Horror", "Western", "unknown"]
        items["year"] = pd.array([1995, 1972, 1996, None, 2001], dtype="Int64")
        users["age"] = [25, 40, 17]
        users["gender"] = ["M", "F", "M"]
        users["occupation"] = ["writer", "artist", "writer"]
    else:  # the Amazon / synthetic schema: no demographics
        items["category"] = ["Cameras", "Lenses", "Cameras", "Drones", "Lenses"]
        items["store"] = ["Aurex", "Bolt", "", "Cirrus", "Bolt"]
        items["price"] = [100.0, np.nan, 20.0, 300.0, 50.0]
    meta = {"n_users": 3, "n_items": 5, "fingerprint": f"tiny-{kind}"}
    return RecDataset("tiny", interactions, items, users, meta)


def names(features) -> list[str]:
    return [f.name for f in features]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """ml-100k and synthetic (smoke), prepared in a temporary data folder."""
    import os

    from harness.data import load_dataset

    saved = os.environ.get("HARNESS_DATA_DIR")
    os.environ["HARNESS_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    try:
        return {"ml-100k": load_dataset("ml-100k"), "synthetic": load_dataset("synthetic", "smoke")}
    finally:
        if saved is None:
            os.environ.pop("HARNESS_DATA_DIR", None)
        else:
            os.environ["HARNESS_DATA_DIR"] = saved


# --------------------------------------------------------------------------- schemas

def test_movielens_spec(prepared):
    ds = prepared["ml-100k"]
    spec = FeatureBuilder.fit(ds, "valid").spec
    assert names(spec.sparse) == ["user_id", "age", "gender", "occupation", "item_id", "year"]
    assert names(spec.bags) == ["history", "genres"]
    assert spec.dense == ("log_item_count", "log_user_count")
    card = {f.name: f.cardinality for f in spec.tables}
    assert card["user_id"] == ds.n_users + 1 and card["item_id"] == ds.n_items + 1 and card["history"] == ds.n_items + 1
    assert card["gender"] == 3 and card["age"] == 8 and card["occupation"] == 22 and card["genres"] == 19
    assert {f.name: f.side for f in spec.tables}["age"] == "user"
    assert all(s > 0 for s in spec.dense_std)


def test_amazon_schema_spec(prepared):
    ds = prepared["synthetic"]
    spec = FeatureBuilder.fit(ds, "valid").spec
    assert names(spec.sparse) == ["user_id", "item_id", "category", "store"]
    assert names(spec.bags) == ["history"]
    assert spec.dense == ("log_item_count", "log_user_count", "log_price", "price_missing")
    batch = FeatureBuilder.fit(ds, "valid").batch([1, 2], [3, 4])
    assert set(batch) == {"user", "item", "dense", "user_id", "item_id", "category", "store", "history"}


def test_tiny_amazon_schema_price_and_store():
    ds = tiny("amazon")
    b = FeatureBuilder.fit(ds, "valid")
    batch = b.batch([1, 1, 1], [1, 2, 3])
    col = list(b.spec.dense).index("log_price")
    # item 2 has no price: imputed with the training mean of log1p(price) (items 1 and 3, weighted by interactions)
    known = np.log1p([100.0, 20.0])
    fill = np.average(known, weights=[1, 1])
    assert batch["dense"][:, col].tolist() == pytest.approx([math.log1p(100.0), fill, math.log1p(20.0)], rel=1e-6)
    assert batch["dense"][:, col + 1].tolist() == [0.0, 1.0, 0.0]
    assert batch["store"][2] == 0  # an empty store is missing
    assert batch["store"][0] > 0 and batch["store"][1] > 0


def test_batch_layout_and_dtypes():
    b = FeatureBuilder.fit(tiny(), "valid")
    batch = b.batch(torch.tensor([1, 2]), torch.tensor([2, 3]))
    for f in b.spec.sparse:
        assert batch[f.name].dtype == torch.int64 and batch[f.name].shape == (2,)
    for f in b.spec.bags:
        assert batch[f.name].dtype == torch.int64 and batch[f.name].shape == (2, f.max_len)
    assert batch["dense"].dtype == torch.float32 and batch["dense"].shape == (2, len(b.spec.dense))
    assert batch["user"].tolist() == [1, 2] and batch["item"].tolist() == [2, 3]


# --------------------------------------------------------------------------- no leakage

def test_counts_and_vocabularies_come_from_the_history_only():
    ds = tiny()
    b = FeatureBuilder.fit(ds, "valid")
    batch = b.batch([1] * 5, [1, 2, 3, 4, 5])
    count = torch.expm1(batch["dense"][:, 0]).round().tolist()
    assert count == [1, 3, 1, 0, 0]  # train counts: valid and test interactions are not popularity yet
    assert batch["item_id"].tolist() == [1, 2, 3, 0, 0]  # items 4 and 5 occur only in valid / test
    western = b.batch([1], [4])["genres"]
    assert western.tolist() == [[0, 0]]  # "Western" belongs to a test-only item: no code
    # changing every valid and test interaction changes nothing the builder fit before valid
    changed = ds.interactions.copy()
    later = changed["split"] != "train"
    changed.loc[later, "item_id"] = 5
    other = RecDataset("tiny", changed, ds.items, ds.users, ds.meta)
    b2 = FeatureBuilder.fit(other, "valid")
    assert b2.spec == b.spec
    pos = b.positives()
    one = b.batch(pos.users, pos.items, positions=pos.positions)
    two = b2.batch(pos.users, pos.items, positions=pos.positions)
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_history_bag_stops_before_the_target():
    ds = tiny()
    b = FeatureBuilder.fit(ds, "test", history_len=3)
    pos = b.positives()
    assert pos.users.tolist() == [1, 1, 1, 2, 2, 3, 3, 3]
    assert pos.positions.tolist() == [0, 1, 2, 0, 1, 0, 1, 2]
    batch = b.batch(pos.users, pos.items, positions=pos.positions)
    for row, (u, i, t) in enumerate(zip(*(x.tolist() for x in pos))):
        sequence = b.sequence(u).tolist()
        assert sequence[t] == i
        bag = [x for x in batch["history"][row].tolist() if x]
        assert bag == sequence[:t][-3:], f"row {row}: the bag holds exactly the items before the target"
        assert i not in bag
    assert batch["history"][0].tolist() == [0, 0, 0]  # the first interaction has no history
    assert torch.expm1(batch["dense"][:, 1]).round().tolist() == pos.positions.float().tolist()


def test_own_interaction_is_not_popularity():
    ds = tiny()
    b = FeatureBuilder.fit(ds, "valid")
    # user 1's second training example: item 2 at position 1 (item 2 has 3 training interactions)
    batch = b.batch([1, 1, 1], [2, 1, 3], positions=[1, 1, 1])
    count = torch.expm1(batch["dense"][:, 0]).round().tolist()
    # item 2 is the example itself: 3 - 1; item 1 is user 1's earlier interaction (counted): 1;
    # item 3 (user 3's) was never user 1's in train: 1
    assert count == [2.0, 1.0, 1.0]
    # ranking for the next split: nothing is the example's own, every count is the full one
    assert torch.expm1(b.batch([1], [2])["dense"][:, 0]).round().tolist() == [3.0]


def test_dense_statistics_are_those_of_the_training_examples():
    b = FeatureBuilder.fit(tiny(), "valid")
    pos = b.positives()
    dense = b.batch(pos.users, pos.items, positions=pos.positions)["dense"].double()
    assert list(b.spec.dense_mean) == pytest.approx(dense.mean(0).tolist(), rel=1e-6)
    std = dense.std(0, unbiased=False).tolist()
    assert list(b.spec.dense_std) == pytest.approx([s if s > 1e-8 else 1.0 for s in std], rel=1e-5)


def test_at_moves_the_state_and_keeps_the_spec():
    ds = tiny()
    b = FeatureBuilder.fit(ds, "valid")
    t = b.at(ds, "test")
    assert t.spec == b.spec and t.upto == "test" and b.upto == "valid"
    before, after = b.batch([1], [1]), t.batch([1], [1])
    assert [x for x in before["history"][0].tolist() if x] == [1, 2]
    assert [x for x in after["history"][0].tolist() if x] == [1, 2, 3]  # the valid item, most recent last
    assert torch.expm1(after["dense"][:, 0]).round().tolist() == [3.0]  # item 1: train + two valid interactions
    assert after["item_id"].tolist() == before["item_id"].tolist()  # vocabularies are frozen with the spec
    assert t.batch([1], [5])["item_id"].tolist() == [0]
    with pytest.raises(ValueError, match="another dataset"):
        b.at(tiny("amazon"), "test")


# --------------------------------------------------------------------------- serving paths

def test_unknown_user_with_an_explicit_history():
    ds = tiny()
    b = FeatureBuilder.fit(ds, "valid")
    anonymous = b.batch(0, [3, 2], histories=[[1, 2]])
    known = b.batch([1, 1], [3, 2])  # user 1's stored history is exactly [1, 2]
    assert anonymous["user"].tolist() == [0, 0] and anonymous["user_id"].tolist() == [0, 0]
    for name in ("age", "gender", "occupation"):
        assert anonymous[name].tolist() == [0, 0]
        assert all(v > 0 for v in known[name].tolist())
    for key in ("history", "item_id", "year", "genres", "dense"):
        assert torch.equal(anonymous[key], known[key]), key
    nobody = b.batch(0, [3])  # no id, no history: a cold visitor
    assert nobody["history"].abs().sum() == 0 and torch.expm1(nobody["dense"][:, 1]).item() == 0


def test_explicit_histories_as_padded_array():
    b = FeatureBuilder.fit(tiny(), "valid", history_len=2)
    padded = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 0], [4, 0, 2, 0]])
    batch = b.batch([0, 0, 2], [1, 1, 1], histories=padded)
    # items unknown to the vocabulary (4) are dropped; zeros anywhere are padding; the last 2 kept
    assert batch["history"].tolist() == [[2, 3], [0, 0], [0, 2]]
    assert torch.expm1(batch["dense"][:, 1]).round().tolist() == [3.0, 0.0, 2.0]
    assert batch["user_id"].tolist() == [0, 0, 2]
    with pytest.raises(ValueError, match="out of range"):
        b.batch(0, [1], histories=[[1, 99]])


def test_extra_dense_columns():
    ds = tiny()
    b = FeatureBuilder.fit(ds, "valid")
    train_scores = np.array([0.5, 1.5, 2.5, 3.5])
    b2 = b.with_extra_dense({"retriever_score": train_scores})
    assert b2.spec.dense == b.spec.dense + ("retriever_score",)
    assert b2.spec.dense_mean[-1] == pytest.approx(2.0) and b2.spec.dense_std[-1] == pytest.approx(train_scores.std())
    assert b.spec.dense == ("log_item_count", "log_user_count")  # the original builder is unchanged
    batch = b2.batch([1, 2], [2, 3], extra_dense={"retriever_score": torch.tensor([0.25, -1.0])})
    assert batch["dense"].shape == (2, 3) and batch["dense"][:, -1].tolist() == [0.25, -1.0]
    assert torch.equal(batch["dense"][:, :2], b.batch([1, 2], [2, 3])["dense"])
    with pytest.raises(KeyError, match="retriever_score"):
        b2.batch([1], [2])
    with pytest.raises(KeyError, match="unknown"):
        b.batch([1], [2], extra_dense={"retriever_score": [1.0]})


def test_item_feature_from_codes():
    b = FeatureBuilder.fit(tiny(), "valid")
    sid = np.array([0, 3, 1, 3, 2, 1])
    levels = np.array([[0, 0], [1, 4], [2, 4], [0, 5], [1, 0], [3, 3]])
    b2 = b.with_item_feature("semantic_id", sid).with_item_feature("semantic_levels", levels, cardinality=8)
    assert b2.spec.sparse[-1] == SparseFeature("semantic_id", 4, "item")
    assert b2.spec.bags[-1] == BagFeature("semantic_levels", 8, 2, "item")
    batch = b2.batch([1, 1, 1], [1, 3, 4])
    assert batch["semantic_id"].tolist() == [3, 3, 2]
    assert batch["semantic_levels"].tolist() == [[1, 4], [0, 5], [0, 1]]  # left-packed
    with pytest.raises(ValueError):
        b.with_item_feature("bad", np.zeros(3, dtype=np.int64))


def test_invalid_requests_are_refused():
    b = FeatureBuilder.fit(tiny(), "valid")
    with pytest.raises(ValueError, match="out of range"):
        b.batch([1], [6])
    with pytest.raises(ValueError, match="out of range"):
        b.batch([4], [1])
    with pytest.raises(ValueError, match="outside"):
        b.batch([1], [1], positions=[3])  # user 1 has 2 training interactions
    with pytest.raises(ValueError, match="not both"):
        b.batch([1], [1], positions=[0], histories=[[1]])
    with pytest.raises(ValueError, match="rows"):
        b.batch([1, 2], [1])
    with pytest.raises(TypeError):
        b.batch([1], [1.5])


def test_spec_round_trip_and_pickled_builder():
    import json

    b = FeatureBuilder.fit(tiny(), "valid")
    data = json.loads(json.dumps(b.spec.to_dict()))
    assert FeatureSpec.from_dict(data) == b.spec
    again = pickle.loads(pickle.dumps(b))
    one, two = b.batch([1, 3], [2, 1]), again.batch([1, 3], [2, 1])
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_example_batch_is_valid_for_its_spec():
    spec = FeatureBuilder.fit(tiny(), "valid").spec
    batch = example_batch(spec, batch_size=7, seed=1)
    for f in spec.sparse:
        assert batch[f.name].shape == (7,) and 0 <= int(batch[f.name].min()) and int(batch[f.name].max()) < f.cardinality
    for f in spec.bags:
        bag = batch[f.name]
        assert bag.shape == (7, f.max_len) and int(bag.max()) < f.cardinality
        assert bag[0].abs().sum() == 0  # an empty bag
        nonzero = bag != 0
        assert bool((nonzero.int().diff(dim=1) >= 0).all())  # left padding
    assert batch["dense"].shape == (7, len(spec.dense))


def test_spec_validation():
    with pytest.raises(ValueError, match="distinct"):
        FeatureSpec((SparseFeature("a", 3, "user"), SparseFeature("a", 3, "item")), (), (), (), ())
    with pytest.raises(ValueError, match="distinct"):
        FeatureSpec((SparseFeature("dense", 3, "user"),), (), (), (), ())
    with pytest.raises(ValueError, match="positive"):
        FeatureSpec((), (), ("x",), (0.0,), (0.0,))


# --------------------------------------------------------------------------- real data, speed

def test_training_examples_on_movielens_never_leak(prepared):
    ds = prepared["ml-100k"]
    b = FeatureBuilder.fit(ds, "valid")
    pos = b.positives()
    assert len(pos.users) == int((ds.interactions["split"] == "train").sum())
    rows = torch.arange(0, len(pos.users), 97)
    batch = b.batch(pos.users[rows], pos.items[rows], positions=pos.positions[rows])
    target_in_bag = (batch["history"] == pos.items[rows][:, None]).any(dim=1)
    assert not target_in_bag.any()
    for r in range(0, len(rows), 50):
        u, t = int(pos.users[rows[r]]), int(pos.positions[rows[r]])
        later = set(b.sequence(u)[t:].tolist())
        assert not later & set(batch["history"][r].tolist())
    counts = np.bincount(ds.history("valid")["item_id"], minlength=ds.n_items + 1)
    got = torch.expm1(batch["dense"][:, 0].double()).round().numpy()
    assert np.array_equal(got, counts[pos.items[rows].numpy()] - 1)  # the example itself is not counted


def test_fast_enough_for_ranking(prepared):
    ds = prepared["ml-100k"]
    b = FeatureBuilder.fit(ds, "valid").at(ds, "test")
    users = np.repeat(np.arange(1, ds.n_users + 1), 100)
    items = np.random.default_rng(0).integers(1, ds.n_items + 1, len(users))
    b.batch(users[:10], items[:10])
    start = time.process_time()
    batch = b.batch(users, items)
    seconds = time.process_time() - start
    assert batch["dense"].shape[0] == 94_300
    assert seconds < 1.0, f"100 candidates x {ds.n_users} users took {seconds:.2f} s of CPU"
