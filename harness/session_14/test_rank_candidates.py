"""Exercise 4: rank_candidates (user tower -> FAISS, seen excluded -> + cold items by text -> DLRM -> top-k)."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_equal, expect_shape, fail

from .conftest import known_users, watch_models

pytestmark = pytest.mark.exercise("rank_candidates")


def _queries(bundle):
    """Three known users (one with a history longer than the retriever's window) and two anonymous histories."""
    users = known_users(bundle, 60)
    long_user = next(u for u in users if len(bundle.user_history(u)) > bundle.max_len + 5)
    picked = [users[0], long_user, users[5]]
    histories = [bundle.user_history(u) for u in picked] + [[3, 17, 3, 40], bundle.user_history(users[9])[:2]]
    return picked + [0, 0], histories


def _same_ranking(got, expected, what, hint=None):
    ids, scores = got
    ref_ids, ref_scores = expected
    expect_equal(ids, ref_ids, f"{what}: item ids", hint=hint)
    expect_equal(torch.isinf(scores), torch.isinf(ref_scores), f"{what}: where the scores are -inf (padding)", hint=hint)
    finite = torch.isfinite(ref_scores)
    expect_close(scores[finite], ref_scores[finite], f"{what}: scores (the ranker's logits)", rtol=1e-4, atol=1e-5,
                 hint=hint)


def test_shapes_and_dtypes(nb, served_bundle):
    users, histories = _queries(served_bundle)
    ids, scores = nb.rank_candidates(served_bundle, users, histories, 7)
    expect_shape(ids, (5, 7), "ids for 5 queries, k = 7")
    expect_shape(scores, (5, 7), "scores for 5 queries, k = 7")
    expect_dtype(ids, torch.int64, "ids")
    expect_dtype(scores, torch.float32, "scores", hint="the ranker's logits, .float()")
    expect(not scores.requires_grad, "the scores do not require grad",
           hint="run everything under `with torch.inference_mode():`")


def test_matches_retrieve_then_rerank(nb, reference, served_bundle):
    users, histories = _queries(served_bundle)
    for k in (10, served_bundle.n_candidates):
        got = nb.rank_candidates(served_bundle, users, histories, k)
        want = reference.rank_candidates(served_bundle, users, histories, k)
        _same_ranking(got, want, f"k = {k}: the top-k of the ranker over the retriever's candidates and the cold "
                                 "items' text candidates",
                      hint="FAISS top bundle.n_candidates (seen excluded) + text_candidates(bundle, histories, "
                           "torch.cat([seen, retrieved], 1)), ranker logits reshaped to (B, C), sorted descending "
                           "with stable=True")


def test_never_a_seen_item(nb, served_bundle):
    users, histories = _queries(served_bundle)
    ids, _ = nb.rank_candidates(served_bundle, users, histories, served_bundle.n_candidates)
    for b, history in enumerate(histories):
        leaked = sorted(set(ids[b].tolist()) & set(history))
        expect(not leaked, f"query {b} gets no item of its own history (history of {len(history)} items, the tower "
                           f"reads the last {served_bundle.max_len})", got=f"seen items {leaked[:8]} recommended",
               hint="exclude every item of the history (padded_seen(histories)), not only the last max_len that the "
                    "user tower reads")
        real = ids[b][ids[b] != 0].tolist()
        expect(len(real) == len(set(real)), f"query {b}: no item twice",
               got=sorted({i for i in real if real.count(i) > 1}),
               hint="pass exclude=torch.cat([seen, retrieved], dim=1) to text_candidates")


def test_cold_items_come_through_the_text_path(nb, reference, served_bundle):
    users, histories = _queries(served_bundle)
    k = served_bundle.n_candidates
    ids, _ = nb.rank_candidates(served_bundle, users, histories, k)
    ref_ids, _ = reference.rank_candidates(served_bundle, users, histories, k)
    cold = torch.as_tensor(served_bundle.cold)
    want = int(cold[ref_ids].sum())
    got = int(cold[ids].sum())
    expect(want > 0, "(the test bundle has cold items among the reference's candidates)")
    expect(got == want, "cold items (no interaction in training) reach the ranker through the text path",
           expected=f"{want} cold items in the top {k} of {len(users)} queries", got=f"{got}",
           hint="concatenate text_candidates(bundle, histories, exclude) to the retriever's candidates before "
                "reranking")


def test_padding_when_candidates_run_out(nb, served_bundle):
    n = served_bundle.n_items
    history = list(range(9, n + 1))  # the visitor has seen every item but 1..8
    ids, scores = nb.rank_candidates(served_bundle, [0], [history], 12)
    real = ids[0] != 0
    expect(int(real.sum()) <= 8, "at most the 8 unseen items are recommended", got=ids[0].tolist())
    expect(bool((real.cummin(dim=0).values == real).all()), "padding 0s only after the real items",
           got=ids[0].tolist(), hint="padding candidates get score -inf before sorting, so they sort last")
    expect(bool(torch.isinf(scores[0][~real]).all()) and bool(torch.isfinite(scores[0][real]).all()),
           "score -inf exactly where the id is 0", got=scores[0].tolist(),
           hint="logits.masked_fill(candidates == 0, -inf); then ids.masked_fill(torch.isinf(scores), 0)")
    expect(set(ids[0][real].tolist()) <= set(range(1, 9)), "only unseen items", got=ids[0].tolist())


def test_sorted_best_first(nb, served_bundle):
    users, histories = _queries(served_bundle)
    _, scores = nb.rank_candidates(served_bundle, users, histories, 20)
    finite = torch.where(torch.isfinite(scores), scores, torch.full_like(scores, -1e30))
    expect(bool((finite[:, :-1] >= finite[:, 1:]).all()), "each row's scores never increase",
           got=scores[0, :6].tolist(), hint="torch.sort(logits, dim=1, descending=True, stable=True)")


def test_rows_of_a_batch_are_independent(nb, served_bundle):
    users, histories = _queries(served_bundle)
    ids, scores = nb.rank_candidates(served_bundle, users, histories, 10)
    for b in (4, 1, 0):
        one = nb.rank_candidates(served_bundle, [users[b]], [histories[b]], 10)
        _same_ranking((ids[b:b + 1], scores[b:b + 1]), one,
                      f"query {b} ranked in a batch of {len(users)} and alone",
                      hint="row b of every tensor belongs to query b: reshape the logits to (B, C), never mix rows")


def test_no_autograd_during_the_forward_pass(nb, served_bundle):
    users, histories = _queries(served_bundle)
    with watch_models(served_bundle) as calls:
        nb.rank_candidates(served_bundle, users[:2], histories[:2], 5)
    expect(len(calls) > 0, "the bundle's models run", hint="bundle.retriever.user_tower(...) and bundle.ranker(...)")
    recording = sorted({name for name, _, grad in calls if grad})
    if recording:
        fail("the models run without autograd", got=f"grad mode on in {', '.join(recording[:4])}",
             hint="wrap the whole function in `with torch.inference_mode():`; grad mode is thread-local, so a "
                  "torch.set_grad_enabled(False) at start-up does not reach the worker thread that serves a request")
