"""The semantic-ID contract (harness/pipeline/semantic_ids.py) that sessions 12 and 16 share."""
from __future__ import annotations

import pytest
import torch

from harness.pipeline.semantic_ids import (SemanticIDs, build_semantic_ids, load_semantic_ids, save_semantic_ids,
                                           semantic_ids_path)


def vectors(n_items: int = 120, dim: int = 12, seed: int = 0, duplicates: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    v = torch.nn.functional.normalize(torch.randn(n_items + 1, dim, generator=g), dim=1)
    v[1:duplicates + 1] = v[1]  # identical texts: they must collide, and be told apart by the last column
    v[0] = 0.0
    return v


def test_build_follows_the_contract():
    sids = build_semantic_ids(vectors(), levels=3, codebook_size=8, seed=0, source="text:test-model", fingerprint="fp1")
    assert sids.codes.dtype == torch.int64 and sids.codes.shape == (121, 4)
    assert torch.equal(sids.codes[0], torch.zeros(4, dtype=torch.long)), "row 0 is the padding item"
    assert len(sids.codebook_sizes) == 4 and sids.codebook_sizes[:3] == (8, 8, 8)
    assert sids.codebook_sizes[3] == int(sids.codes[:, 3].max()) + 1 >= 6, "the six identical vectors collide"
    assert (sids.codes[1:, :3] < 8).all() and (sids.codes >= 0).all()
    assert sids.levels == 3 and sids.n_items == 120 and sids.source == "text:test-model" and sids.fingerprint == "fp1"
    lookup = sids.lookup()
    assert len(lookup) == 120 and set(lookup.values()) == set(range(1, 121))
    assert all(lookup[tuple(sids.codes[i].tolist())] == i for i in (1, 2, 57, 120))
    groups = sids.collision_map()
    assert any(set(range(1, 7)) <= set(items) for items in groups.values())
    s = sids.stats
    assert s["collision_rate_after"] == 0.0 and s["collision_rate_before"] >= 6 / 120
    assert len(s["relative_error"]) == 3 and s["relative_error"][0] > s["relative_error"][2]
    assert all(0 < u <= 1 for u in s["used"]) and all(1 <= p <= 8 for p in s["perplexity"])


def test_build_is_seeded_and_caps_the_codebook():
    a = build_semantic_ids(vectors(), levels=2, codebook_size=8, seed=3, source="s", fingerprint="f")
    b = build_semantic_ids(vectors(), levels=2, codebook_size=8, seed=3, source="s", fingerprint="f")
    assert torch.equal(a.codes, b.codes)
    small = build_semantic_ids(vectors(n_items=5, duplicates=1), levels=2, codebook_size=64, seed=0, source="s",
                               fingerprint="f")
    assert small.codebook_sizes[:2] == (5, 5), "K is capped at the number of items"


def test_save_and_load_round_trip(tmp_path):
    sids = build_semantic_ids(vectors(), levels=3, codebook_size=8, seed=0, source="collaborative:two-tower mean",
                              fingerprint="abc")
    path = save_semantic_ids(tmp_path / "deep" / "sids.pt", sids)
    back = load_semantic_ids(path, fingerprint="abc")
    assert torch.equal(back.codes, sids.codes) and back.codebook_sizes == sids.codebook_sizes
    assert back.source == sids.source and back.fingerprint == "abc" and back.stats == sids.stats
    payload = torch.load(path, weights_only=True)
    assert {"codes", "collision_map", "lookup", "fingerprint", "codebook_sizes"} <= set(payload)
    assert len(payload["lookup"]) == 120
    assert not list(path.parent.glob("*.tmp")), "an atomic save leaves no temporary file"


def test_load_refuses_another_dataset_and_explains(tmp_path):
    sids = build_semantic_ids(vectors(), levels=2, codebook_size=4, seed=0, source="s", fingerprint="abc")
    path = save_semantic_ids(tmp_path / "sids.pt", sids)
    with pytest.raises(ValueError, match="fingerprint abc, not xyz"):
        load_semantic_ids(path, fingerprint="xyz")
    assert load_semantic_ids(path).fingerprint == "abc", "without a fingerprint, no check"
    with pytest.raises(FileNotFoundError, match="build them"):
        load_semantic_ids(tmp_path / "missing.pt")


def test_path_names_dataset_preset_and_source(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_RUNS_DIR", str(tmp_path))
    p = semantic_ids_path("ml-100k", "laptop", "text:intfloat/e5-base-v2")
    assert p.parent == tmp_path / "semantic_ids" and p.suffix == ".pt"
    assert "ml-100k" in p.name and "laptop" in p.name and "e5-base-v2" in p.name and "/" not in p.name
    assert p != semantic_ids_path("ml-100k", "laptop", "collaborative:two-tower transformer")


def test_invalid_codes_are_refused():
    with pytest.raises(ValueError, match="padding"):
        SemanticIDs(torch.tensor([[1, 0], [2, 0]]), (3, 1), "s", "f")
    with pytest.raises(ValueError, match="vocabularies"):
        SemanticIDs(torch.tensor([[0, 0], [5, 0]]), (3, 1), "s", "f")
    with pytest.raises(ValueError, match="one column per codebook size"):
        SemanticIDs(torch.zeros(3, 2, dtype=torch.long), (3, 1, 1), "s", "f")
    ambiguous = SemanticIDs(torch.tensor([[0, 0], [1, 0], [1, 0]]), (2, 1), "s", "f")
    with pytest.raises(ValueError, match="disambiguation"):
        ambiguous.lookup()
