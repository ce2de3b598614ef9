"""Your whole session 14 in a real server: uvicorn in a subprocess on a free loopback port, over HTTP.

These tests start ``python -m harness serve`` on your *saved* notebook (so they run under pytest,
not in an inline check), send it valid requests, the bad-input corpus and schemathesis's generated
requests, and stop it with SIGINT: it must shut down cleanly.
"""
import httpx
import pytest

from harness.autograder.checks import expect, expect_equal, fail

pytestmark = [pytest.mark.exercise("recommend_endpoint"), pytest.mark.time_limit(60)]


@pytest.fixture(scope="module")
def server(request, bundle_path):
    from harness.serving.server import ServerProcess
    from harness.serving.testing import graded_server_tree

    tree = graded_server_tree(request, (14,), "notebook file in a subprocess")
    process = ServerProcess(bundle_path, impl=tree, batching=False)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, trust_env=False, timeout=20) as c:
        yield c


def test_valid_requests_over_http(server, client, served_bundle):
    user = next(u for u in range(1, served_bundle.n_users + 1) if served_bundle.knows_user(u))
    for body, strategy in (({"user_id": user, "k": 5}, "retrieve-rank"), ({"history": [4, 8, 15], "k": 5},
                                                                           "retrieve-rank"), ({"k": 5}, "popularity")):
        r = client.post("/recommend", json=body)
        expect_equal(r.status_code, 200, f"POST /recommend {body}")
        answer = r.json()
        expect(len(answer["items"]) == 5 and answer["strategy"] == strategy, f"{body}: 5 items, strategy {strategy}",
               got=str(answer)[:200])
    expect_equal(client.get("/health").status_code, 200, "GET /health")


def test_bad_input_gets_a_4xx_with_a_message(server, client, served_bundle, limits):
    from harness.serving.corpus import bad_requests

    wrong = []
    for case in bad_requests(served_bundle, limits):
        r = client.post("/recommend", content=case.body, headers={"content-type": case.content_type})
        if r.status_code not in case.expected:
            wrong.append(f"{case.name}: {r.status_code} {r.text[:100]!r} (expected {'/'.join(map(str, case.expected))})")
        elif not r.headers.get("content-type", "").startswith("application/json") or "detail" not in r.json():
            wrong.append(f"{case.name}: {r.status_code} without a JSON {{'detail': ...}} message")
    if wrong:
        fail(f"{len(wrong)} bad requests got the wrong answer (a 500 is a crash of your code; a 200 means the "
             "request was not validated)", got="\n    " + "\n    ".join(wrong[:8]),
             hint="strict types and Field limits in request_model; unknown users and items checked in resolve_query "
                  "before any tensor is built")


def test_schemathesis_finds_no_5xx(server):
    from harness.serving.loadtest import run_schemathesis

    result = run_schemathesis(server.url, max_examples=5, timeout=120)
    if not result.ok:
        fail("schemathesis, fuzzing POST /recommend and GET /health from the OpenAPI schema, finds no server error "
             "and every response matches its schema", got="\n" + result.summary[-1500:],
             hint="each failure above comes with a curl command that reproduces it")


def test_shuts_down_cleanly(server):
    code = server.stop()
    expect(server.clean_exit, "the server stops on SIGINT: exit code 0 after 'Application shutdown complete'",
           got=f"exit code {code}; log ends with {server.log[-600:]!r}",
           hint="the code after the lifespan's yield runs at shutdown: it must not raise")
