"""Exercise 3: resolve_query (a known user's stored history, an explicit history, or a cold visitor; 404 / 422)."""
import pytest

from harness.autograder.checks import expect, expect_equal
from harness.serving.errors import UnknownItems, UnknownUser
from harness.serving.glue import Query

from .conftest import known_users

pytestmark = pytest.mark.exercise("resolve_query")


def _raises(fn, kind, what, hint):
    try:
        fn()
    except NotImplementedError:
        raise
    except kind as err:
        return err
    except Exception as err:
        expect(False, what, expected=kind.__name__, got=f"{type(err).__name__}: {str(err)[:150]}", hint=hint)
    expect(False, what, expected=kind.__name__, got="no exception", hint=hint)


def test_known_user(nb, served_bundle, make_request):
    user = next(u for u in known_users(served_bundle, 100) if len(served_bundle.user_history(u)) > served_bundle.max_len)
    q = nb.resolve_query(served_bundle, make_request({"user_id": user, "k": 5}))
    expect(isinstance(q, Query), "resolve_query returns a Query", got=type(q).__name__)
    expect_equal(q.user_id, user, "the query's user id")
    expect_equal(list(q.history), served_bundle.user_history(user), "a known user's history is their stored one",
                 hint="bundle.user_history(user_id): every item, most recent last (rank_candidates needs them all to "
                      "exclude seen items; the retriever's window is applied there)")


def test_explicit_history_kept_as_sent(nb, served_bundle, make_request):
    history = [7, 3, 7, 12, 1]
    request = make_request({"history": history})
    q = nb.resolve_query(served_bundle, request)
    expect_equal(q.user_id, 0, "an anonymous history has user id 0")
    expect_equal(list(q.history), history, "the history, in the order sent, repeated items included",
                 hint="Query(0, tuple(history)): no sorting, no de-duplication")
    expect_equal(list(request.history), history, "the request's own history is left as it was")


def test_cold_visitor(nb, served_bundle, make_request):
    for body in ({}, {"history": []}, {"user_id": None, "k": 3}):
        q = nb.resolve_query(served_bundle, make_request(body))
        expect(isinstance(q, Query) and q.cold, f"{body} is a cold visitor: Query() (user 0, no history)",
               got=repr(q), hint="neither a user id nor any history item: return Query()")


def test_unknown_user_is_a_404(nb, served_bundle, make_request):
    err = _raises(lambda: nb.resolve_query(served_bundle, make_request({"user_id": served_bundle.n_users + 1})),
                  UnknownUser, "a user id past the last user raises UnknownUser (a 404)",
                  "if not bundle.knows_user(user_id): raise UnknownUser(user_id, bundle.n_users)")
    expect_equal(err.status_code, 404, "UnknownUser's status code")
    _raises(lambda: nb.resolve_query(served_bundle, make_request({"user_id": 2 ** 70})), UnknownUser,
            "a user id of 2**70 raises UnknownUser, not an overflow", "compare ints; no tensor before the check")


def test_unknown_items_are_all_reported(nb, served_bundle, make_request):
    n = served_bundle.n_items
    err = _raises(lambda: nb.resolve_query(served_bundle, make_request({"history": [5, n + 1, 7, n + 40]})),
                  UnknownItems, "item ids past the catalog raise UnknownItems (a 422)",
                  "collect every (position, id) outside 1..bundle.n_items, then raise UnknownItems(positions, ids, "
                  "bundle.n_items)")
    expect_equal(err.status_code, 422, "UnknownItems' status code")
    expect_equal(list(err.positions), [1, 3], "the positions of the unknown ids in the history (all of them)",
                 hint="report every bad id, not only the first: the client fixes them all at once")
    expect_equal([int(i) for i in err.ids], [n + 1, n + 40], "the unknown ids themselves")
    _raises(lambda: nb.resolve_query(served_bundle, make_request({"history": [3, 2 ** 63]})), UnknownItems,
            "an id of 2**63 raises UnknownItems (torch.tensor([2**63]) would fail with a RuntimeError: a 500)",
            "check the ids as Python ints before anything builds a tensor")
    q = nb.resolve_query(served_bundle, make_request({"history": [1, n]}))
    expect_equal(list(q.history), [1, n], "ids 1 and n_items are both in the catalog (1..n_items)",
                 hint="the valid range is 1 <= id <= bundle.n_items")
