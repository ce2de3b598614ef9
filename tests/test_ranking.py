"""The ranking track's glue (harness.pipeline.ranking): no leakage, the batches session 08 trains on, reranking."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from harness.autograder.loader import load_session


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The synthetic smoke dataset (in a temporary data folder) and an untrained Transformer retriever."""
    from harness.config import load_config
    from harness.data import load_dataset
    from harness.pipeline import ranking
    from harness.pipeline.retrieval import build_tower_from_config

    saved = os.environ.get("HARNESS_DATA_DIR")
    os.environ["HARNESS_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    try:
        ds = load_dataset("synthetic", "smoke")
    finally:
        if saved is None:
            os.environ.pop("HARNESS_DATA_DIR", None)
        else:
            os.environ["HARNESS_DATA_DIR"] = saved
    torch.manual_seed(0)
    model = build_tower_from_config(ds, "transformer", load_config("two_tower", "smoke")).eval()
    view = ranking.RetrieverView.of(model, max_len=8, name="tiny")
    cfg = load_config("dlrm", "smoke")
    return ds, view, cfg, ranking.RankingData.build(ds, view, cfg)


def test_position_queries_see_only_the_past(smoke):
    ds, view, _, _ = smoke
    sequences = [np.asarray(s).copy() for s in ds.sequences(upto="valid")[:12]]  # a few users are enough
    queries, has = view.position_queries(sequences)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])])
    user = int(np.argmax([len(s) for s in sequences]))
    n = len(sequences[user])
    assert not has[offsets[user]] and torch.all(queries[offsets[user]] == 0), "position 0 has no history, no query"
    assert bool(has[offsets[user] + 1: offsets[user + 1]].all())
    for t in (1, 5, n // 2, n - 1):
        changed = [s.copy() for s in sequences]
        changed[user][t:] = np.roll(changed[user][t:], 1) if n - t > 1 else changed[user][t:]
        changed[user][t] = (changed[user][t] % ds.n_items) + 1  # the target itself changes too
        q2, _ = view.position_queries(changed)
        rows = slice(offsets[user], offsets[user] + t + 1)
        assert torch.allclose(queries[rows], q2[rows], atol=1e-6), f"the query at position {t} saw items after it"
    # and it is the tower's output on a window of the past that ends just before the target
    t = n - 1
    S = view.max_len // 2
    k = max(0, (t - S) // S) if t - 1 >= 2 * S - 1 else 0
    a = k * S
    with torch.no_grad():
        h = torch.as_tensor(sequences[user][a:t], dtype=torch.long)[None]
        direct = view.model.user_tower(h, torch.ones_like(h, dtype=torch.bool))[0]
    assert torch.allclose(queries[offsets[user] + t], direct, atol=1e-5)


def test_training_data_is_the_training_split(smoke):
    ds, view, cfg, data = smoke
    train = ds.history("valid")
    assert np.array_equal(data.positives.items.numpy(), train["item_id"].to_numpy())
    assert np.array_equal(data.positives.users.numpy(), train["user_id"].to_numpy())
    # the pools never hold one of the user's training items
    users = data.positives.users
    for r in torch.randperm(len(users), generator=torch.Generator().manual_seed(0))[:200].tolist():
        u = int(users[r])
        own = set(ds.sequences(upto="valid")[u].tolist())
        assert not (set(data.pool[r].tolist()) - {0}) & own
    # capped rows are each user's latest interactions
    rows = data.training_rows(5)
    lengths = np.diff(data.train_offsets)
    assert len(rows) == int(np.minimum(lengths, 5).sum())
    assert bool((data.positives.positions[rows] >= torch.from_numpy(lengths)[data.positives.users[rows]] - 5).all())


def test_candidates_come_from_the_history_before_the_split(smoke, monkeypatch):
    from harness.pipeline import ranking

    ds, view, _, _ = smoke
    for split in ("valid", "test"):
        seen_sequences = {}
        original = view.queries

        def spy(sequences, users, **kwargs):
            seen_sequences["s"] = sequences
            return original(sequences, users, **kwargs)

        monkeypatch.setattr(view, "queries", spy)
        cands = ranking.retrieve_candidates(view, ds, split, 20)
        monkeypatch.undo()
        users, targets = ds.targets(split)
        later = {"valid": ("valid", "test"), "test": ("test",)}[split]
        held_out = {(int(u), int(i)) for s in later for u, i in zip(*ds.targets(s))}
        for u in users[:50]:
            history = set(np.asarray(seen_sequences["s"][int(u)]).tolist())
            assert not {i for (v, i) in held_out if v == int(u)} & history, f"{split}: user {u}'s query saw a held-out item"
        for b in range(len(cands)):
            assert not (set(cands.items[b].tolist()) - {0}) & set(cands.seen[b].tolist())
        assert torch.equal(cands.targets, torch.as_tensor(np.asarray(targets)))


def test_collate_builds_groups(smoke):
    from harness.pipeline import ranking

    ds, view, cfg, data = smoke
    variant = ranking.Variant("t")
    collate = ranking.RankingCollate(data, variant, cfg, sampler=load_session(8, "solutions").mixed_negatives)
    rows = data.training_rows(None)[:64].tolist()
    batch = collate(rows)
    G = batch["group_size"]
    assert G == 1 + cfg.negatives.count
    items = batch["item"].view(-1, G)
    assert torch.equal(items[:, 0], data.positives.items[rows])
    users = batch["user"].view(-1, G)
    assert bool((users == users[:, :1]).all())
    exclude = data.exclude(data.positives.users[rows])
    for b in range(len(rows)):
        assert not set(items[b, 1:].tolist()) & (set(exclude[b].tolist()) | {0})
    score = batch["dense"][:, -1].view(-1, G)
    want = ranking.candidate_scores(view, data.queries[rows], items)
    want = torch.where(torch.isfinite(want), want, 0.0)
    assert torch.allclose(score, want, atol=1e-6), "the last dense column is the retriever's score of the pair"
    assert batch["history"].shape[0] == len(rows) * G


def test_rerank_ranks_match_a_sort(smoke):
    from harness.pipeline import ranking

    ds, view, cfg, data = smoke
    cands = data.valid
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 4, cands.items.shape, generator=g).float()  # many ties
    ranks = ranking.rerank_ranks(cands, scores)
    s = scores.masked_fill(cands.items == 0, -float("inf"))
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    ranked = cands.items.gather(1, order)
    hit = ranked == cands.targets[:, None]
    want = torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(ranks, cands.items.shape[1]))
    assert torch.equal(ranks, want)
