"""Amazon Reviews 2023 readers on small files written in the exact published formats."""
from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.data import load_dataset, prepare
from harness.data.amazon import (item_text, parse_price, read_amazon_5core, read_amazon_meta, read_amazon_raw,
                                 user_sample_mask, write_meta_jsonl_gz, write_ratings_csv_gz,
                                 write_reviews_jsonl_gz)
from harness.data.download import CorruptFileError
from harness.data.preprocess import PrepConfig, preprocess

BASE_MS = 1_588_687_728_000
USERS = [f"AGKHLEW2SOWHNMFQIJGBECAF7IN{i}" for i in range(6)]
ITEMS = [f"B0{i}CUPMQZE" for i in range(6)]  # parent_asin
CORE = PrepConfig(min_user_interactions=5, min_item_interactions=5)


def _ratings() -> pd.DataFrame:
    """6 users x 6 items (a 5-core), plus a user with 2 ratings and an item with 1: both fall out."""
    rows = []
    for u, user in enumerate(USERS):
        for i, item in enumerate(ITEMS):
            rows.append((user, item, float(1 + (u + i) % 5), BASE_MS + 60_000 * i + 1000 * u))
    # user 0: items 4 and 5 in the same second; item 4 is later by milliseconds but comes first in the file
    rows = [r for r in rows if not (r[0] == USERS[0] and r[1] in ITEMS[4:])]
    rows += [(USERS[0], ITEMS[4], 4.0, BASE_MS + 3_600_900), (USERS[0], ITEMS[5], 5.0, BASE_MS + 3_600_100)]
    rows += [("ASPARSEUSER", ITEMS[0], 3.0, BASE_MS), ("ASPARSEUSER", ITEMS[1], 3.0, BASE_MS + 1)]
    rows += [(USERS[1], "B0RAREITEM", 2.0, BASE_MS + 5)]
    return pd.DataFrame(rows, columns=["user_id", "parent_asin", "rating", "timestamp"])


def _meta_records() -> list[dict | str]:
    prices = [19.99, None, "$1,299.00", "from 9.99", "None", 5]
    records = [{"main_category": "All Electronics", "title": f"Earbuds model {i}", "average_rating": 4.5,
                "rating_number": 100 + i, "features": [f"feature {i}a", f"feature {i}b"],
                "description": [f"Description of item {i}."], "price": prices[i],
                "images": [{"thumb": "t.jpg", "large": "l.jpg", "variant": "MAIN", "hi_res": None}],
                "store": f"Brand{i}",
                "categories": ["Electronics", "Headphones, Earbuds & Accessories", "Earbud Headphones"],
                "details": {"Brand": f"Brand{i}", "Date First Available": "May 1, 2016"},
                "parent_asin": item} for i, item in enumerate(ITEMS)]
    records[5]["categories"] = []  # no categories: falls back to main_category
    records.append({"title": "never rated", "parent_asin": "B0UNRATED0"})
    records.append('{"main_category": "All Electronics", "title": "truncated line", "parent_asin": "B0')
    records.append('{"title": "cut off", "parent_asin": "' + ITEMS[2] + '", "price": ')  # wanted, broken
    return records


def _reviews(ratings: pd.DataFrame) -> list[dict | str]:
    """Review records of ``ratings``; item 0 is reviewed through two different variant asins."""
    records = []
    for n, row in enumerate(ratings.itertuples(index=False)):
        asin = row.parent_asin
        if row.parent_asin == ITEMS[0]:
            asin = "B0REDVARNT" if n % 2 else "B0BLUEVARN"
        records.append({"rating": row.rating, "title": "Great", "text": "Works.", "asin": asin,
                        "parent_asin": row.parent_asin, "user_id": row.user_id, "timestamp": int(row.timestamp),
                        "helpful_vote": 0, "verified_purchase": True})
    records += [
        '{"rating": 5.0, "title": "half a line',  # invalid JSON
        {"rating": 5.0, "parent_asin": ITEMS[0], "timestamp": BASE_MS},  # missing user_id
        {"rating": "five", "parent_asin": ITEMS[0], "user_id": USERS[2], "timestamp": BASE_MS},  # non-numeric
        {"rating": 4.0, "parent_asin": ITEMS[0], "user_id": USERS[2], "timestamp": "yesterday"},
    ]
    return records


@pytest.fixture
def files(tmp_path):
    ratings = _ratings()
    ratings_path = write_ratings_csv_gz(ratings, tmp_path / "Electronics.csv.gz")
    with gzip.open(ratings_path, "at") as out:  # malformed rows, appended in the published layout
        out.write("AGKHLEW2SOWHNMFQIJGBECAF7IN2,B01CUPMQZE,five,1588687728923\n")
        out.write("AGKHLEW2SOWHNMFQIJGBECAF7IN2,B01CUPMQZE,5.0\n")
        out.write(",B01CUPMQZE,5.0,1588687728923\n")
    meta_path = write_meta_jsonl_gz(_meta_records(), tmp_path / "meta_Electronics.jsonl.gz")
    reviews_path = write_reviews_jsonl_gz(_reviews(ratings), tmp_path / "Electronics.jsonl.gz")
    return ratings_path, reviews_path, meta_path


def test_written_files_have_the_published_layout(files):
    ratings_path, reviews_path, meta_path = files
    with gzip.open(ratings_path, "rt") as handle:
        assert handle.readline() == "user_id,parent_asin,rating,timestamp\n"
        assert handle.readline() == f"{USERS[0]},{ITEMS[0]},1.0,{BASE_MS}\n"
    with gzip.open(reviews_path, "rt") as handle:
        assert list(json.loads(handle.readline())) == [
            "rating", "title", "text", "images", "asin", "parent_asin", "user_id", "timestamp", "helpful_vote",
            "verified_purchase"]
    with gzip.open(meta_path, "rt") as handle:
        lines = handle.readlines()
    first = json.loads(lines[0])
    assert list(first) == ["main_category", "title", "average_rating", "rating_number", "features", "description",
                           "price", "images", "videos", "store", "categories", "details", "parent_asin",
                           "bought_together"]
    assert json.loads(lines[1])["price"] == "None"  # a missing price is the string "None", as published


@pytest.mark.parametrize("path", ["5core", "raw"])
def test_both_paths_give_the_same_dataset(files, path):
    ratings_path, reviews_path, meta_path = files
    raw = (read_amazon_5core(ratings_path, meta_path) if path == "5core"
           else read_amazon_raw(reviews_path, meta_path))
    assert raw.timestamp_unit == "ms"
    interactions, items, users, report = preprocess(raw, CORE)
    assert (report["n_users"], report["n_items"], report["n_interactions"]) == (6, 6, 36)
    assert sorted(users["raw_user_id"]) == USERS
    # keyed by parent_asin: the two variant asins of item 0 are one item, and metadata joins on it
    assert list(items["raw_item_id"]) == ITEMS
    assert list(items["title"]) == [f"Earbuds model {i}" for i in range(6)]
    assert report["items_without_metadata"] == 0
    # broken metadata lines: one of a wanted item, one whose item cannot be told
    assert report["malformed"]["meta: invalid JSON"] == 2


def test_milliseconds_order_ties_and_become_seconds(files):
    ratings_path, _, meta_path = files
    interactions, items, users, _ = preprocess(read_amazon_5core(ratings_path, meta_path), CORE)
    uid = users.loc[users.raw_user_id == USERS[0], "user_id"].item()
    rows = interactions[interactions.user_id == uid]
    item_of = dict(zip(items.item_id, items.raw_item_id))
    last_two = rows.iloc[-2:]
    # same second: the later millisecond is the test item even though it comes first in the file
    assert [item_of[i] for i in last_two.item_id] == [ITEMS[5], ITEMS[4]]
    assert list(last_two.split) == ["valid", "test"]
    assert list(last_two.timestamp) == [(BASE_MS + 3_600_000) // 1000] * 2
    assert interactions.timestamp.max() < 2_000_000_000  # seconds, not milliseconds


def test_malformed_rows_are_counted_by_reason_and_skipped(files):
    ratings_path, reviews_path, meta_path = files
    csv_raw = read_amazon_5core(ratings_path, meta_path)
    assert csv_raw.malformed["ratings csv: non-numeric rating"] == 1
    assert csv_raw.malformed["ratings csv: wrong number of fields"] == 1
    assert csv_raw.malformed["ratings csv: missing user_id"] == 1
    assert len(csv_raw.interactions) == len(_ratings())
    jsonl_raw = read_amazon_raw(reviews_path, meta_path)
    assert jsonl_raw.malformed["reviews: invalid JSON"] == 1
    assert jsonl_raw.malformed["reviews: missing user_id"] == 1
    assert jsonl_raw.malformed["reviews: non-numeric rating"] == 1
    assert jsonl_raw.malformed["reviews: non-numeric timestamp"] == 1
    assert len(jsonl_raw.interactions) == len(_ratings())


def test_item_columns_price_and_text(files):
    ratings_path, _, meta_path = files
    _, items, _, _ = preprocess(read_amazon_5core(ratings_path, meta_path), CORE)
    items = items.set_index("raw_item_id")
    price = items["price"]
    assert price[ITEMS[0]] == pytest.approx(19.99) and price[ITEMS[2]] == 1299.0 and price[ITEMS[3]] == 9.99
    assert math.isnan(price[ITEMS[1]]) and math.isnan(price[ITEMS[4]]) and price[ITEMS[5]] == 5.0
    assert items.loc[ITEMS[0], "category"] == "Headphones, Earbuds & Accessories"
    assert items.loc[ITEMS[5], "category"] == "All Electronics"  # no categories list
    text = items.loc[ITEMS[0], "text"]
    for part in ("Earbuds model 0", "Electronics > Headphones, Earbuds & Accessories > Earbud Headphones",
                 "feature 0a", "feature 0b", "Description of item 0"):
        assert part in text
    assert items.loc[ITEMS[0], "store"] == "Brand0" and items.loc[ITEMS[0], "rating_number"] == 100
    assert items.loc[ITEMS[0], "main_category"] == "All Electronics"


def test_parse_price_and_text_bound():
    assert parse_price("None") != parse_price("None")  # NaN
    assert math.isnan(parse_price(None)) and math.isnan(parse_price("")) and math.isnan(parse_price(True))
    assert parse_price(12) == 12.0 and parse_price("$12.99") == 12.99 and parse_price("from 9.99") == 9.99
    long = item_text("Title", ["A", "B"], ["word " * 1000], [])
    assert len(long) <= 1500 and long.startswith("Title. Category: A > B. Features: word")


def test_meta_reader_keeps_only_wanted_items(files):
    _, _, meta_path = files
    items, malformed = read_amazon_meta(meta_path, {ITEMS[1]})
    assert list(items["raw_item_id"]) == [ITEMS[1]]
    everything, malformed_all = read_amazon_meta(meta_path)
    assert len(everything) == 7 and malformed_all["meta: invalid JSON"] == 2


def test_user_sampling_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    users = [f"A{n:027d}" for n in range(400)]
    frame = pd.DataFrame({"user_id": np.repeat(users, 3), "parent_asin": rng.choice(ITEMS, 1200),
                          "rating": 5.0, "timestamp": BASE_MS + np.arange(1200)})
    path = write_ratings_csv_gz(frame, tmp_path / "Electronics.csv.gz")
    meta = write_meta_jsonl_gz([], tmp_path / "meta.jsonl.gz")
    reviews = write_reviews_jsonl_gz(
        [{"rating": 5.0, "parent_asin": r.parent_asin, "user_id": r.user_id, "timestamp": int(r.timestamp)}
         for r in frame.itertuples()], tmp_path / "Electronics.jsonl.gz")
    expected = {u for u, keep in zip(users, user_sample_mask(users, 0.25)) if keep}
    assert 70 < len(expected) < 130
    first = set(read_amazon_5core(path, meta, sample_fraction=0.25).interactions["raw_user_id"])
    again = set(read_amazon_5core(path, meta, sample_fraction=0.25).interactions["raw_user_id"])
    from_raw = set(read_amazon_raw(reviews, meta, sample_fraction=0.25).interactions["raw_user_id"])
    assert first == again == from_raw == expected
    # pinned: a change of hash function would silently change every "laptop" dataset
    assert [u[-3:] for u in sorted(expected)[:5]] == ["000", "005", "006", "007", "011"]
    with pytest.raises(ValueError, match="sample_fraction"):
        user_sample_mask(users, 0)


def test_truncated_files_raise_a_clear_error(files, tmp_path):
    ratings_path, reviews_path, meta_path = files
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(reviews_path.read_bytes()[:300])
    with pytest.raises(CorruptFileError, match="truncated"):
        read_amazon_raw(cut, meta_path)
    cut_csv = tmp_path / "cut.csv.gz"
    cut_csv.write_bytes(ratings_path.read_bytes()[:300])
    with pytest.raises(CorruptFileError, match="truncated"):
        read_amazon_5core(cut_csv, meta_path)


def test_registry_end_to_end_without_download(files, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    ratings_path, reviews_path, meta_path = files
    folder = tmp_path / "data" / "raw" / "amazon-electronics"
    folder.mkdir(parents=True)
    for path in (ratings_path, meta_path):
        path.rename(folder / path.name)
    meta = prepare("amazon-electronics", log=lambda m: None)
    assert (meta["n_users"], meta["n_items"], meta["n_interactions"]) == (6, 6, 36)
    assert meta["malformed"]["ratings csv: non-numeric rating"] == 1
    ds = load_dataset("amazon-electronics")
    assert ds.n_items == 6 and set(ds.items["title"]) == {f"Earbuds model {i}" for i in range(6)}
    assert (tmp_path / "data" / "processed" / "amazon-electronics" / "meta.json").is_file()
    assert prepare("amazon-electronics", log=lambda m: None)["skipped"]

    # the laptop preset samples users (here all of them) into its own folder
    import harness.data.amazon as amazon

    monkeypatch.setattr(amazon, "LAPTOP_FRACTION", 1.0)
    meta = prepare("amazon-electronics", "laptop", log=lambda m: None)
    assert meta["n_interactions"] == 36 and meta["source"]["sample_fraction"] == 1.0
    assert (tmp_path / "data" / "processed" / "amazon-electronics-laptop" / "meta.json").is_file()

    # the raw-review dataset finds the metadata already downloaded for the 5-core one
    raw_folder = tmp_path / "data" / "raw" / "amazon-electronics-raw"
    raw_folder.mkdir()
    reviews_path.rename(raw_folder / reviews_path.name)
    meta = prepare("amazon-electronics-raw", log=lambda m: None)
    assert (meta["n_users"], meta["n_items"], meta["n_interactions"]) == (6, 6, 36)
    assert meta["malformed"]["reviews: invalid JSON"] == 1
