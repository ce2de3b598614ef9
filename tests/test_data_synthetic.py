"""The synthetic dataset: seeded, Amazon schema, with structure a model can learn."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from harness.data import load_dataset
from harness.data.synthetic import PRESETS, SyntheticConfig, generate
from harness.evaluation import evaluate_scores


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    return tmp_path


def test_seeded_and_reproducible():
    a, b = generate(PRESETS["smoke"]), generate(PRESETS["smoke"])
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    c = generate(SyntheticConfig(n_users=400, n_items=300, n_categories=12, mean_length=18.0, seed=1))
    assert not a.interactions["raw_item_id"].equals(c.interactions["raw_item_id"])


def test_amazon_schema_and_text_names_the_category():
    raw = generate(PRESETS["smoke"])
    assert raw.timestamp_unit == "ms" and raw.interactions["timestamp"].min() > 1_500_000_000_000
    assert raw.interactions["raw_item_id"].str.match(r"^B0[A-Z0-9]{8}$").all()
    assert raw.interactions["raw_user_id"].str.len().eq(28).all()
    assert all(cat in text for cat, text in zip(raw.items["category"], raw.items["text"]))


def test_row_count_matches_the_mean_length():
    config = SyntheticConfig(n_users=4000, n_items=500, mean_length=12.0, min_length=5)
    rows = len(generate(config).interactions)
    assert abs(rows / 4000 - 12.0) < 0.5


def _first_order_scores(ds):
    seqs = ds.sequences("test")
    n = ds.n_items
    transitions = np.zeros((n + 1, n + 1))
    for s in seqs:
        if len(s) > 1:
            np.add.at(transitions, (s[:-1], s[1:]), 1)
    popularity = ds.item_counts("test").astype(float)

    def score(users):
        last = np.array([seqs[int(u)][-1] for u in users])
        return torch.tensor(transitions[last] + 1e-3 * popularity / popularity.max())

    return score


def test_planted_structure_beats_popularity(data_dir):
    ds = load_dataset("synthetic", "smoke")
    counts = torch.tensor(ds.item_counts("test"), dtype=torch.float64)
    popularity = evaluate_scores(lambda u: counts.expand(len(u), -1), ds, ks=(10,))["HR@10"]
    sequential = evaluate_scores(_first_order_scores(ds), ds, ks=(10,))["HR@10"]
    assert sequential > 2 * popularity and sequential - popularity > 0.1, (popularity, sequential)


def test_scale_benchmark_runs_small(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RUNS_DIR", str(tmp_path / "runs"))
    from harness.data.benchmark import run_benchmark

    result = run_benchmark(rows=20_000, users=2_000, items=800, folder=tmp_path)
    assert result["rows_in_file"] == 20_000 and result["interactions"] > 10_000
    assert 0 < result["peak_rss_gib"] < 4
