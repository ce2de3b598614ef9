"""Exercise 7: recommend_endpoint (503 before start-up; the model in a worker thread; nothing loaded per request)."""
import asyncio
import time

import pytest
from fastapi.testclient import TestClient

from harness.autograder.checks import expect, expect_equal
from harness.serving.errors import NotReady

from .conftest import app_with, fake_request, known_users, run_async

pytestmark = pytest.mark.exercise("recommend_endpoint")


@pytest.fixture
def with_reference_recommend(nb, reference, monkeypatch):
    monkeypatch.setitem(nb._globals(), "recommend", reference.recommend)


def _run(coroutine):
    return run_async(coroutine)


def test_not_ready_is_a_503(nb, reference, make_request, with_reference_recommend):
    try:
        _run(nb.recommend_endpoint(make_request({"k": 3}), fake_request(None)))
    except NotImplementedError:
        raise
    except NotReady as err:
        expect_equal(err.status_code, 503, "NotReady's status code")
        return
    except Exception as err:
        expect(False, "a request before the bundle is loaded raises NotReady (a 503)",
               got=f"{type(err).__name__}: {str(err)[:120]}", hint="if bundle is None: raise NotReady()")
    expect(False, "a request before the bundle is loaded raises NotReady (a 503)", got="an answer")


def test_answers_what_recommend_answers(nb, reference, served_bundle, make_request, with_reference_recommend):
    request = make_request({"history": [9, 4, 22], "k": 5})
    got = _run(nb.recommend_endpoint(request, fake_request(served_bundle)))
    want = reference.recommend(served_bundle, request)
    expect_equal([i["item_id"] for i in got["items"]], [i["item_id"] for i in want["items"]],
                 "the endpoint's answer is recommend(bundle, body)")


def test_does_not_block_the_event_loop(nb, reference, served_bundle, make_request, monkeypatch):
    original = reference.recommend

    def slow_recommend(bundle, body):
        time.sleep(0.4)  # a slow model: CPU-bound work that holds this thread
        return original(bundle, body)

    monkeypatch.setitem(nb._globals(), "recommend", slow_recommend)

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        await nb.recommend_endpoint(make_request({"history": [3, 4], "k": 3}), fake_request(served_bundle))
        task.cancel()
        return ticks

    ticks = _run(main())
    expect(ticks >= 5, "other requests keep being served while the model runs (the event loop is not blocked)",
           expected="the loop ticks about 20 times during a 0.4 s model call", got=f"{ticks} ticks",
           hint="return await run_in_threadpool(recommend, bundle, body): calling recommend(...) directly in an "
                "async def freezes every other request, /health included, until it returns")


def test_nothing_is_loaded_per_request(nb, reference, bundle_path, monkeypatch):
    from harness.serving.bundle import load_bundle

    calls = []

    def spy(path, **kwargs):
        calls.append(path)
        return load_bundle(path, **kwargs)

    monkeypatch.setitem(nb._globals(), "load_bundle", spy)
    monkeypatch.setitem(nb._globals(), "recommend", reference.recommend)
    app = app_with(reference, nb, {"recommend_endpoint"}, bundle_path)
    with TestClient(app) as client:
        at_start = len(calls)  # (the reference's start-up may load through the same name)
        for user in known_users(app.state.bundle, 3):
            r = client.post("/recommend", json={"user_id": user, "k": 3})
            expect_equal(r.status_code, 200, "a request through the app")
        per_request = len(calls) - at_start
    expect_equal(per_request, 0, "load_bundle calls made by the endpoint over 3 requests",
                 hint="the bundle is loaded once, at start-up (lifespan): the endpoint reads request.app.state.bundle")
