"""Exercise 3: rank_batch (one rank_candidates call for many requests, each its own row and its own k)."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_equal
from harness.serving.glue import Query

pytestmark = pytest.mark.exercise("rank_batch")


def _queries(bundle):
    users = [u for u in range(1, bundle.n_users + 1) if bundle.knows_user(u)][:4]
    qs = [Query(u, tuple(bundle.user_history(u))) for u in users]
    qs.insert(2, Query(0, (5, 9, 5, 30)))
    return qs


@pytest.fixture
def calls(nb, reference14, monkeypatch):
    seen = []
    original = reference14.rank_candidates

    def spy(bundle, users, histories, k):
        seen.append((list(users), k))
        return original(bundle, users, histories, k)

    monkeypatch.setitem(nb._globals(), "rank_candidates", spy)
    return seen


def test_each_query_gets_its_own_row_and_k(nb, reference14, served_bundle, calls):
    qs = _queries(served_bundle)
    ks = [3, 10, 1, 7, 5]
    out = nb.rank_batch(served_bundle, qs, ks)
    expect(isinstance(out, (list, tuple)) and len(out) == len(qs), "one (ids, scores) pair per query, in order",
           got=type(out).__name__ if not isinstance(out, (list, tuple)) else f"{len(out)} pairs")
    for b, (q, k) in enumerate(zip(qs, ks)):
        ids, scores = out[b]
        want_ids, want_scores = reference14.rank_candidates(served_bundle, [q.user_id], [q.history], k)
        expect_equal(torch.as_tensor(ids), want_ids[0], f"query {b} (k = {k}): the ids it gets when ranked alone",
                     hint="row b of the batched result, cut to its own k: ids[b, :k]")
        expect_close(torch.as_tensor(scores), want_scores[0], f"query {b}: its scores", rtol=1e-4, atol=1e-5)


def test_one_forward_pass_for_the_batch(nb, served_bundle, calls):
    qs = _queries(served_bundle)
    nb.rank_batch(served_bundle, qs, [4, 9, 2, 2, 6])
    expect_equal(len(calls), 1, "rank_candidates calls for a batch of 5 requests",
                 hint="one call with every query: the point of batching is one forward pass")
    expect_equal(calls[0][1], 9, "the k of that call: the largest k of the batch",
                 hint="k = max(ks); each row is then cut to its own k")
    expect_equal(calls[0][0], [q.user_id for q in qs], "the users of that call, in the queries' order")
