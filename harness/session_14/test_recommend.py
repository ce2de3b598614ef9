"""Exercise 5: recommend (one request end to end; the popularity fallback for a cold visitor)."""
import numpy as np
import pytest

from harness.autograder.checks import expect, expect_close, expect_equal
from harness.serving.errors import UnknownUser

from .conftest import known_users

pytestmark = pytest.mark.exercise("recommend")


@pytest.fixture
def isolated(nb, reference, monkeypatch):
    """Your recommend, with the reference's resolve_query and rank_candidates (graded elsewhere), spied on."""
    calls = []
    original = reference.rank_candidates  # looked up before the patch (under --impl solutions, nb is the reference)

    def rank(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    g = nb._globals()
    monkeypatch.setitem(g, "resolve_query", reference.resolve_query)
    monkeypatch.setitem(g, "rank_candidates", rank)
    return calls


def _ids(body):
    return [item["item_id"] for item in body["items"]]


def test_known_user(nb, reference, served_bundle, make_request, isolated):
    user = known_users(served_bundle, 4)[3]
    request = make_request({"user_id": user, "k": 6})
    got, want = nb.recommend(served_bundle, request), reference.recommend(served_bundle, request)
    expect(isinstance(got, dict), "recommend returns the response body as a dict", got=type(got).__name__,
           hint="return response_body(bundle, query, ids[0], scores[0], fallback=False)")
    expect_equal(_ids(got), _ids(want), "the recommended ids for a known user",
                 hint="rank_candidates(bundle, [query.user_id], [query.history], request.k): the user's id and their "
                      "stored history")
    expect_close(np.array([i["score"] for i in got["items"]]), np.array([i["score"] for i in want["items"]]),
                 "their scores", rtol=1e-4, atol=1e-5)
    expect((got["fallback"], got["strategy"], got["user_id"]) == (False, "retrieve-rank", user),
           "a ranked answer, not a fallback", got=(got["fallback"], got["strategy"], got["user_id"]))
    reference.response_model().model_validate(got)


def test_history_request(nb, reference, served_bundle, make_request, isolated):
    request = make_request({"history": [12, 40, 7], "k": 4})
    got = nb.recommend(served_bundle, request)
    expect_equal(len(isolated), 1, "rank_candidates calls for one request")
    want = reference.recommend(served_bundle, request)
    expect_equal(_ids(got), _ids(want), "the recommended ids for an anonymous history",
                 hint="an anonymous query has user id 0 and the request's own history")
    nb_k = [len(got["items"]) for got in (nb.recommend(served_bundle, make_request({"history": [3], "k": k}))
                                          for k in (1, served_bundle.n_candidates))]
    expect_equal(nb_k, [1, served_bundle.n_candidates], "k items come back (k = 1 and k = n_candidates)",
                 hint="pass request.k to rank_candidates")


def test_cold_visitor_gets_popularity(nb, served_bundle, make_request, isolated):
    for body in ({"k": 5}, {"history": [], "k": 5}):
        got = nb.recommend(served_bundle, make_request(body))
        expect(got["fallback"] is True and got["strategy"] == "popularity",
               f"{body}: a cold visitor gets the fallback, marked as such",
               got=(got.get("fallback"), got.get("strategy")), hint="response_body(..., fallback=True)")
        expect_equal(_ids(got), served_bundle.popular[:5].tolist(), "the 5 most popular items, most popular first",
                     hint="bundle.popular[:request.k]")
        expect_close(np.array([i["score"] for i in got["items"]]),
                     served_bundle.popularity[served_bundle.popular[:5]].astype(float),
                     "their scores are their interaction counts", hint="bundle.popularity[ids] as floats")
    expect_equal(len(isolated), 0, "no model runs for a cold visitor", hint="return before calling rank_candidates")


def test_errors_are_not_swallowed(nb, served_bundle, make_request, isolated):
    try:
        nb.recommend(served_bundle, make_request({"user_id": served_bundle.n_users + 3}))
    except NotImplementedError:
        raise
    except UnknownUser:
        return
    except Exception as err:
        expect(False, "an unknown user raises UnknownUser (the app turns it into a 404)",
               got=f"{type(err).__name__}: {str(err)[:120]}")
    expect(False, "an unknown user raises UnknownUser (the app turns it into a 404), not a fallback answer",
           got="an answer", hint="let resolve_query's errors propagate: a fallback would hide a client's bug")
