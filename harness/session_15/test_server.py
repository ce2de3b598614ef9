"""Your micro-batching in a real server: uvicorn subprocesses on free loopback ports, over HTTP, under Locust.

Two servers run your saved notebooks (sessions 14 and 15 of the graded tree): one request at a
time, and micro-batched. The same requests must get the same answers from both; the bad-input
corpus a 4xx from the batched one; a short bounded Locust load no error; and both must stop
cleanly on SIGINT.
"""
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from harness.autograder.checks import expect, fail

pytestmark = [pytest.mark.exercise("MicroBatcher"), pytest.mark.time_limit(60)]


@pytest.fixture(scope="module")
def servers(request, bundle_path):
    from harness.serving.server import ServerProcess, start_all, stop_all
    from harness.serving.testing import graded_server_tree

    tree = graded_server_tree(request, (15, 14), "notebooks in subprocesses")
    pair = {"unbatched": ServerProcess(bundle_path, impl=tree, batching=False),
            "batched": ServerProcess(bundle_path, impl=tree, batching=True, max_batch=16, max_wait_ms=5.0)}
    start_all(pair.values())
    try:
        yield pair
    finally:
        stop_all(pair.values())


def _bodies(bundle, n=48):
    rng = np.random.default_rng(0)
    users = [u for u in range(1, bundle.n_users + 1) if bundle.knows_user(u)]
    out = []
    for i in range(n):
        u = int(rng.choice(users))
        if i % 3 == 0:
            out.append({"user_id": u, "k": int(rng.integers(1, 20))})
        else:
            h = bundle.user_history(u)[: int(rng.integers(1, 40))]
            out.append({"history": [int(x) for x in h], "k": int(rng.integers(1, 20))})
    return out


def test_batched_and_unbatched_answer_the_same(servers, served_bundle):
    bodies = _bodies(served_bundle)

    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    with httpx.Client(trust_env=False, timeout=30, limits=limits) as client:
        def post(url, body):
            r = client.post(f"{url}/recommend", json=body)
            return r.status_code, r.json(), r.headers.get("server-timing", "")

        with ThreadPoolExecutor(16) as pool:  # concurrent, so that the batched server forms real batches
            batched = list(pool.map(lambda b: post(servers["batched"].url, b), bodies))
        unbatched = [post(servers["unbatched"].url, b) for b in bodies]
    sizes = [float(t.split('batch;desc="')[1].split('"')[0]) for _, _, t in batched if 'batch;desc="' in t]
    for i, (body, (s1, a, _), (s2, b, _)) in enumerate(zip(bodies, batched, unbatched)):
        expect(s1 == 200 and s2 == 200, f"request {i} {body}: both servers answer 200", got=(s1, s2))
        ids_a, ids_b = [x["item_id"] for x in a["items"]], [x["item_id"] for x in b["items"]]
        if ids_a != ids_b:
            fail(f"request {i} (k = {body['k']}) gets the same items batched and unbatched",
                 expected=str(ids_b), got=str(ids_a),
                 hint="each request's future must get its own row of the batch (rank_batch), cut to its own k")
        gap = max([abs(x["score"] - y["score"]) for x, y in zip(a["items"], b["items"])] + [0.0])
        expect(gap <= 1e-5, f"request {i}: the same scores batched and unbatched (within 1e-5)", got=f"gap {gap:.2e}")
    expect(sizes and max(sizes) > 1, "16 concurrent clients form batches of more than one request",
           got=f"batch sizes seen: {sorted(set(sizes))[:10]}")


def test_bad_input_gets_a_4xx_when_batched(servers, served_bundle):
    from harness.serving.app import ServingLimits
    from harness.serving.bundle import read_manifest
    from harness.serving.corpus import bad_requests

    limits = ServingLimits.from_manifest(read_manifest(servers["batched"].bundle))
    wrong = []
    with httpx.Client(base_url=servers["batched"].url, trust_env=False, timeout=20) as c:
        for case in bad_requests(served_bundle, limits):
            r = c.post("/recommend", content=case.body, headers={"content-type": case.content_type})
            if r.status_code not in case.expected:
                wrong.append(f"{case.name}: {r.status_code} {r.text[:80]!r}")
    if wrong:
        fail(f"{len(wrong)} bad requests got the wrong answer from the batched server",
             got="\n    " + "\n    ".join(wrong[:8]))


def test_a_short_locust_run_has_no_errors(servers, served_bundle, tmp_path):
    from harness.serving.loadtest import run_locust, write_request_corpus

    corpus = write_request_corpus(served_bundle, tmp_path / "requests.json", n=200)
    r = run_locust(servers["batched"].url, corpus, users=8, seconds=2, out_dir=tmp_path / "locust")
    expect(r.requests > 0, "Locust's requests reached the server", got=r.log[-800:])
    expect(r.failures == 0, "a 2-second load of 8 closed-loop users: no failed request",
           got=f"{r.failures} of {r.requests} failed; {r.log[-800:]}")


def test_both_shut_down_cleanly(servers):
    from harness.serving.server import stop_all

    stop_all(servers.values())
    for name, server in servers.items():
        code = server.returncode
        expect(server.clean_exit, f"the {name} server stops on SIGINT with exit code 0",
               got=f"exit code {code}; log ends with {server.log[-500:]!r}",
               hint="MicroBatcher.stop (provided) cancels the worker; process must not swallow CancelledError")
