"""The provided full-catalog evaluation: ranks, tie-breaking, seen exclusion, metric values."""
from __future__ import annotations

import math

import torch

from harness.evaluation import MetricsTable, metrics_from_ranks, ranks_from_scores, ranks_from_topk, seen_mask


def test_rank_counts_better_items_and_lower_id_ties():
    scores = torch.tensor([[9.0, 1.0, 3.0, 3.0, 2.0, 5.0]])
    # excluding padding (col 0): 5.0 (item 5) and the tie 3.0 at item 2 come before item 3
    assert ranks_from_scores(scores, torch.tensor([3])).item() == 2
    assert ranks_from_scores(scores, torch.tensor([2])).item() == 1
    assert ranks_from_scores(scores, torch.tensor([5])).item() == 0


def test_seen_items_are_removed_from_the_ranking():
    scores = torch.tensor([[0.0, 5.0, 4.0, 3.0]])
    exclude = torch.tensor([[False, True, True, False]])
    assert ranks_from_scores(scores, torch.tensor([3]), exclude).item() == 0


def test_scores_and_topk_lists_agree():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (32, 101), generator=g).float()  # many ties
    targets = torch.randint(1, 101, (32,), generator=g)
    ranks = ranks_from_scores(scores, targets)
    s = scores.clone()
    s[:, 0] = -math.inf
    topk = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :10]
    from_lists = ranks_from_topk(topk, targets)
    assert torch.equal(torch.where(ranks < 10, ranks, torch.full_like(ranks, 10)), from_lists)


def test_metric_values():
    m = metrics_from_ranks(torch.tensor([0, 1, 9, 10, 100]), ks=(10,))
    assert math.isclose(m["HR@10"], 3 / 5)
    assert math.isclose(m["NDCG@10"], (1 + 1 / math.log2(3) + 1 / math.log2(11)) / 5)
    assert math.isclose(m["MRR"], (1 + 1 / 2 + 1 / 10 + 1 / 11 + 1 / 101) / 5)
    from_lists = metrics_from_ranks(torch.tensor([0, 1, 9, 10, 10]), ks=(10,), list_length=10)  # 10 = not in the list
    assert math.isclose(from_lists["MRR"], (1 + 1 / 2 + 1 / 10) / 5)
    assert math.isclose(from_lists["HR@10"], m["HR@10"]) and math.isclose(from_lists["NDCG@10"], m["NDCG@10"])


def test_seen_mask():
    mask = seen_mask([[], [1, 3], [2]], [2, 1], n_items=3)
    assert mask.tolist() == [[False, False, True, False], [False, True, False, True]]


def test_table_renders():
    t = MetricsTable()
    t.add("popularity", {"HR@10": 0.0859, "NDCG@10": 0.0449, "Recall@50": 0.1983}, "session 01")
    assert "| popularity | 0.0859 | 0.0449 | 0.1983 | session 01 |" in t.to_markdown()
    assert "popularity" in str(t)


def test_table_with_intervals():
    t = MetricsTable()
    t.add("popularity", {"HR@10": 0.0859, "NDCG@10": 0.0449, "Recall@50": 0.1983}, "session 01")
    t.add("retriever", {"HR@10": 0.2, "NDCG@10": 0.1, "Recall@50": 0.5})
    t.add("retriever → DLRM", {"HR@10": 0.21, "NDCG@10": 0.11, "Recall@50": 0.5}, "sessions 07-10")
    t.add_interval("retriever", "NDCG@10", 0.09, 0.12)
    t.add_interval("retriever → DLRM", "NDCG@10", 0.095, 0.125)
    t.add_difference("retriever → DLRM", "NDCG@10", "retriever", 0.01, -0.002, 0.021)
    md = t.to_markdown().splitlines()
    assert md[0] == "| model | HR@10 | NDCG@10 | Recall@50 | NDCG@10 95% CI | Δ NDCG@10 vs retriever [95% CI] | notes |"
    assert md[2] == "| popularity | 0.0859 | 0.0449 | 0.1983 |  |  | session 01 |"  # rows without intervals keep their cells
    assert md[4] == "| retriever → DLRM | 0.2100 | 0.1100 | 0.5000 | [0.0950, 0.1250] | +0.0100 [-0.0020, +0.0210] | sessions 07-10 |"
    text = str(t)
    assert "NDCG@10 95% CI" in text and "+0.0100 [-0.0020, +0.0210]" in text
    assert t.intervals["retriever"]["NDCG@10"] == {"low": 0.09, "high": 0.12, "confidence": 0.95}
    assert t.differences["retriever → DLRM"]["NDCG@10"]["baseline"] == "retriever"
    plain = MetricsTable()
    plain.add("popularity", {"HR@10": 0.0859, "NDCG@10": 0.0449, "Recall@50": 0.1983})
    assert plain.to_markdown().splitlines()[0] == "| model | HR@10 | NDCG@10 | Recall@50 | notes |"
