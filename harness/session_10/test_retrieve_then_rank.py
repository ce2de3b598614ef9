"""Exercise 1: retrieve_then_rank (FAISS indexes built here; rankers that record what they are given)."""
import pytest
import torch

from harness.autograder.checks import call_leaving_inputs_unchanged, expect, expect_dtype, expect_equal, expect_shape

from .conftest import RecordingRanker, embeddings, flat_index, hashed_scores, padded, queries, reference_candidates

pytestmark = pytest.mark.exercise("retrieve_then_rank")


def _setup(B=6, n_items=80, dim=8, seed=0, seen_rows=None):
    emb = embeddings(n_items, dim, seed)
    q = queries(B, dim, seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    seen = seen_rows if seen_rows is not None else padded(
        [(torch.randperm(n_items, generator=g)[:int(torch.randint(0, 12, (1,), generator=g))] + 1).tolist()
         for _ in range(B)])
    users = torch.arange(10, 10 + B)
    return flat_index(emb), q, seen, users


def _oracle(candidates, scores, k):
    scores = scores.float().masked_fill(candidates == 0, float("-inf"))
    return candidates.gather(1, torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k])


def test_shapes(nb):
    index, q, seen, users = _setup()
    ranked, candidates = nb.retrieve_then_rank(index, q, seen, users, hashed_scores, K=20, k=5)
    expect_shape(ranked, (6, 5), "ranked lists (B, k)")
    expect_shape(candidates, (6, 20), "candidates (B, K)", hint="retrieve K candidates, rank them, return both")
    expect_dtype(ranked, torch.int64, "ranked item ids")
    expect_dtype(candidates, torch.int64, "candidate item ids")


def test_candidates_are_the_retrievers(nb):
    index, q, seen, users = _setup(seed=1)
    ranker = RecordingRanker(hashed_scores)
    _, candidates = nb.retrieve_then_rank(index, q, seen, users, ranker, K=25, k=10)
    want = reference_candidates(index, q, seen, 25)
    expect_equal(candidates, want, "the candidates are session 06's search_excluding_seen(index, queries, seen, K)",
                 hint="upstream(6).search_excluding_seen(index, queries, seen, K): the top K unseen items, best first")
    expect(len(ranker.calls) == 1, "rank_fn is called once, with the whole batch", got=f"{len(ranker.calls)} calls",
           hint="score the (B, K) candidates in one call: the ranker batches, a loop over users does not")
    users_given, cands_given = ranker.calls[0]
    expect_equal(cands_given, want, "rank_fn receives all K candidates of every user",
                 hint="K truncation: the ranker must see all K retrieved candidates, not the first k")
    expect_equal(users_given, users, "rank_fn receives the user ids as given")


def test_ranked_by_the_rankers_scores(nb):
    index, q, seen, users = _setup(B=8, seed=2)
    ranked, candidates = nb.retrieve_then_rank(index, q, seen, users, hashed_scores, K=30, k=12)
    expect_equal(ranked, _oracle(candidates, hashed_scores(users, candidates), 12),
                 "the k candidates with the highest ranker scores, highest first",
                 hint="torch.argsort(scores, dim=1, descending=True, stable=True)[:, :k], then candidates.gather(1, order)")


def test_the_rankers_favourite_comes_first_from_deep_in_the_list(nb):
    index, q, seen, users = _setup(B=4, seed=3)
    want = reference_candidates(index, q, seen, 40)
    favourite = want[:, 35]  # retrieved at rank 36: outside any top 10

    def ranker(u, c):
        return (c == favourite[:, None]).float()

    ranked, _ = nb.retrieve_then_rank(index, q, seen, users, ranker, K=40, k=10)
    expect_equal(ranked[:, 0], favourite, "the candidate the ranker scores highest, retrieved at rank 36, comes first",
                 hint="rerank all K candidates; cutting to k before ranking leaves the ranker nothing to promote")
    expect_equal(ranked[:, 1:], want[:, :9], "the others keep the retriever's order (equal ranker scores)",
                 hint="a stable sort keeps tied candidates in retrieval order")


def test_ties_keep_the_retrieval_order(nb):
    index, q, seen, users = _setup(seed=4)
    ranked, candidates = nb.retrieve_then_rank(index, q, seen, users, lambda u, c: torch.zeros(c.shape), K=20, k=20)
    expect_equal(ranked, candidates, "a ranker with no opinion (all scores equal) leaves the retriever's order",
                 hint="torch.argsort(..., stable=True): an unstable sort shuffles ties")


def test_padding_comes_last_and_seen_never_returns(nb):
    n_items = 12
    seen = padded([[1, 2, 3, 4, 5, 6, 7, 8], [], [9, 10, 11]])  # user 0 has only 4 unseen items
    index, q, _, users = _setup(B=3, n_items=n_items, seed=5)
    favour_padding = lambda u, c: -c.float()  # noqa: E731 - the padding id 0 gets the best score
    ranked, candidates = nb.retrieve_then_rank(index, q, seen, users, favour_padding, K=8, k=8)
    expect(bool((candidates[0, 4:] == 0).all()), "setup: user 0's candidates end in padding", got=candidates[0].tolist())
    expect(set(ranked[0, :4].tolist()) == {9, 10, 11, 12} and bool((ranked[0, 4:] == 0).all()),
           "padding candidates come last, as 0, whatever the ranker scores them", got=str(ranked[0].tolist()),
           hint="scores.masked_fill(candidates == 0, -inf) before sorting")
    for b in range(3):
        bad = (set(ranked[b].tolist()) - {0}) & set(seen[b].tolist())
        expect(not bad, "no seen item is recommended", got=f"user row {b}: {sorted(bad)}",
               hint="retrieve with search_excluding_seen: a plain search re-admits the user's history")


def test_full_list_is_a_permutation_of_the_candidates(nb):
    index, q, seen, users = _setup(seed=6)
    ranked, candidates = nb.retrieve_then_rank(index, q, seen, users, hashed_scores, K=15, k=15)
    for b in range(len(ranked)):
        expect(sorted(ranked[b].tolist()) == sorted(candidates[b].tolist()),
               "with k = K the ranked list holds every candidate exactly once", got=f"row {b}: {ranked[b].tolist()}",
               hint="gather the candidates in the ranker's order; don't drop or repeat any")


def test_inputs_unchanged(nb):
    index, q, seen, users = _setup(seed=7)
    call_leaving_inputs_unchanged(nb.retrieve_then_rank, index, q, seen, users, hashed_scores, K=10, k=4,
                                  what="retrieve_then_rank")


def test_k_above_K(nb):
    index, q, seen, users = _setup(seed=8)
    nb.retrieve_then_rank(index, q, seen, users, hashed_scores, K=10, k=10)
    with pytest.raises(ValueError):
        nb.retrieve_then_rank(index, q, seen, users, hashed_scores, K=10, k=11)
