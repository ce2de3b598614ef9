"""The serving harness (harness/serving): bundle format and checks, request-path glue, app scaffold, load-test parsing.

The learner-facing behaviour (sessions 14 and 15, real servers, Locust, schemathesis) is graded in
harness/session_14 and harness/session_15; these tests cover what the workbook provides.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.paths import repo_root


@pytest.fixture(scope="module")
def bundle_path():
    from harness.serving.testing import tiny_bundle

    return tiny_bundle()


@pytest.fixture(scope="module")
def bundle(bundle_path):
    from harness.serving.bundle import load_bundle

    b = load_bundle(bundle_path)
    for m in b.models():
        m.eval().requires_grad_(False)
    return b


@pytest.fixture
def copy(bundle_path, tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(bundle_path, target)
    return target


# --- the bundle ------------------------------------------------------------------------------------

def test_bundle_round_trip(bundle_path):
    from harness.serving.bundle import load_bundle, read_manifest

    manifest = read_manifest(bundle_path)
    assert manifest["format_version"] == 1 and set(manifest["files"]) >= {"retriever.pt", "index.faiss", "ranker.pt",
                                                                         "features.pkl", "catalog.npz"}
    b = load_bundle(bundle_path)
    assert b.item_embeddings.shape == (b.n_items + 1, manifest["retriever"]["dim"])
    assert b.index.ntotal == b.n_items and len(b.titles) == b.n_items + 1
    assert all(m.training for m in b.models()), "load_bundle returns modules as built: eval mode is the server's job"
    assert b.popular[0] == int(np.argmax(b.popularity[1:])) + 1 and 0 not in b.popular
    assert b.knows_user(1) and not b.knows_user(b.n_users + 1) and not b.knows_user(0)
    assert b.text_index is not None and b.text_index.ntotal == int(b.cold.sum())


def test_refuses_another_datasets_bundle(copy):
    from harness.serving.bundle import BundleError, load_bundle

    with pytest.raises(BundleError, match="fingerprint 0000: the item and user ids may mean other things"):
        load_bundle(copy, expect_fingerprint="0000")


def test_refuses_a_changed_file(copy):
    from harness.serving.bundle import BundleError, load_bundle

    (copy / "ranker.pt").write_bytes((copy / "ranker.pt").read_bytes() + b"\0")
    with pytest.raises(BundleError, match="ranker.pt changed since the bundle was written"):
        load_bundle(copy)
    (copy / "index.faiss").unlink()
    with pytest.raises(BundleError, match="index.faiss but the file is missing"):
        load_bundle(copy)


def test_refuses_other_versions(copy):
    from harness.serving.bundle import BundleError, load_bundle

    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["versions"]["torch"] = "1.0.0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="written with torch 1.0.0"):
        load_bundle(copy)
    load_bundle(copy, allow_version_mismatch=True)
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version 99"):
        load_bundle(copy)


def test_missing_bundle_says_how_to_write_one(tmp_path):
    from harness.serving.bundle import BundleError, load_bundle

    with pytest.raises(BundleError, match="no model bundle at .*python -m harness pipeline"):
        load_bundle(tmp_path / "nothing")


def test_a_bundle_without_a_dlrm_keeps_the_retrievers_order(tmp_path, bundle):
    """The serving stage's fallback when the ranking stage did not run: RetrievalOrder, stored as a module."""
    from harness.autograder.loader import load_session
    from harness.data import load_dataset
    from harness.pipeline.features import FeatureBuilder
    from harness.serving.bundle import RetrievalOrder, load_bundle, write_bundle
    from harness.serving.testing import TINY_MAX_LEN, TINY_RETRIEVER, TINY_SERVING, _temporary_data_dir

    with _temporary_data_dir():
        ds = load_dataset("synthetic", "smoke")
    builder = FeatureBuilder.fit(ds, "valid", history_len=8).with_extra_dense({"retrieval_score": np.array([0.0, 1.0])})
    path = write_bundle(tmp_path / "b", dataset=ds, retriever=bundle.retriever,
                        retriever_info={"name": "tiny", "max_len": TINY_MAX_LEN, "build": TINY_RETRIEVER},
                        ranker=RetrievalOrder(builder.spec), ranker_info={"name": "retriever order"},
                        features=builder, serving=TINY_SERVING)
    b = load_bundle(path)
    assert b.manifest["ranker"]["stored"] == "module" and isinstance(b.ranker, RetrievalOrder)
    for m in b.models():
        m.eval()
    s14 = load_session(14, "solutions")
    history = b.user_history(3)
    ids, scores = s14.rank_candidates(b, [3], [history], 10)
    with torch.no_grad():
        from harness.serving.glue import pad_histories

        h, mask = pad_histories([history], b.max_len)
        q = b.retriever.user_tower(h, mask)
        cosine = (b.item_embeddings[ids[0]] * q[0]).sum(-1)
    assert torch.allclose(scores[0], cosine, atol=1e-5), "RetrievalOrder scores are the retriever's cosines"


def test_writing_over_a_bundle_replaces_it(tmp_path, bundle_path):
    from harness.serving.bundle import _replace_dir

    target = tmp_path / "b"
    shutil.copytree(bundle_path, target)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "manifest.json").write_text("{}")
    _replace_dir(fresh, target)
    assert (target / "manifest.json").read_text() == "{}" and not list(tmp_path.glob(".b.old-*"))


# --- the request path's glue ----------------------------------------------------------------------

def test_ranker_batch_is_one_feature_builder_call_per_pair(bundle):
    from harness.serving.glue import ranker_batch

    users = [5, 0, 17]
    histories = [bundle.user_history(5), [3, 9, 20, 4, 3], bundle.user_history(17)]
    candidates = torch.randint(0, bundle.n_items + 1, (3, 7), generator=torch.Generator().manual_seed(0))
    got = ranker_batch(bundle, users, histories, candidates)
    C = candidates.shape[1]
    known = bundle.features.batch(torch.tensor(users).repeat_interleave(C), candidates.reshape(-1))
    anonymous = bundle.features.batch(0, candidates.reshape(-1), histories=[np.array(histories[1])])
    assert set(got) == set(known)
    for key in got:
        want = known[key].clone()
        want[C:2 * C] = anonymous[key][C:2 * C]
        assert torch.equal(got[key], want), key


def test_pad_histories_is_offline_evaluations_padding(bundle):
    from harness.pipeline.retrieval import history_batch
    from harness.serving.glue import pad_histories

    sequences = [np.array(bundle.user_history(u)) for u in range(bundle.n_users + 1)]
    offline = history_batch(sequences, [4, 9, 30], bundle.max_len)
    history, mask = pad_histories([bundle.user_history(u) for u in (4, 9, 30)], bundle.max_len)
    assert torch.equal(history, offline["history"]) and torch.equal(mask, offline["mask"])


def test_text_candidates_are_cold_unseen_and_padded(bundle):
    from harness.serving.glue import text_candidates

    histories = [bundle.user_history(2), [1, 2, 3]]
    cold_ids = np.nonzero(bundle.cold)[0]
    exclude = torch.tensor([[int(cold_ids[0]), 0], [int(cold_ids[1]), int(cold_ids[2])]])
    out = text_candidates(bundle, histories, exclude, n=len(cold_ids))
    assert out.shape == (2, len(cold_ids))
    for b in range(2):
        real = out[b][out[b] != 0].tolist()
        assert real and all(bundle.cold[i] for i in real) and not set(real) & set(exclude[b].tolist())
        assert len(real) == len(set(real)) and out[b][len(real):].eq(0).all()
    assert text_candidates(bundle, histories, exclude, n=0).shape == (2, 0)
    # the cosine table (few cold items) and the FAISS search (many) rank the cold items alike
    import dataclasses

    assert bundle.text_table is not None
    searched = text_candidates(dataclasses.replace(bundle, text_table=None), histories, exclude, n=5)
    assert torch.equal(text_candidates(bundle, histories, exclude, n=5), searched)


def test_request_corpus_is_valid(bundle, tmp_path):
    from harness.autograder.loader import load_session
    from harness.serving.app import ServingLimits
    from harness.serving.loadtest import write_request_corpus

    path = write_request_corpus(bundle, tmp_path / "r.json", n=200, cold_share=0.1)
    bodies = json.loads(path.read_text())
    model = load_session(14, "solutions").request_model(ServingLimits.from_manifest(bundle.manifest))
    parsed = [model.model_validate(b) for b in bodies]
    kinds = {("user" if p.user_id else "history" if p.history else "cold") for p in parsed}
    assert kinds == {"user", "history", "cold"} and all(max(p.history or [1]) <= bundle.n_items for p in parsed)


# --- the app scaffold ------------------------------------------------------------------------------

def test_app_documents_its_errors_limits_and_timing(bundle_path):
    from fastapi.testclient import TestClient

    from harness.serving.app import ServingSettings, create_app

    app = create_app(ServingSettings(str(bundle_path)))
    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
        responses = schema["paths"]["/recommend"]["post"]["responses"]
        assert {"200", "400", "404", "413", "422", "503"} <= set(responses)
        r = client.post("/recommend", json={"history": [1, 2], "k": 3})
        assert r.status_code == 200 and r.headers["server-timing"].startswith("app;dur=")
        limit = app.state.limits.max_body_bytes
        big = json.dumps({"history": [1] * limit}).encode()
        r = client.post("/recommend", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "over the limit" in r.json()["detail"]
        chunks = (big[i:i + 512] for i in range(0, len(big), 512))  # no content-length: counted as it arrives
        r = client.post("/recommend", content=chunks, headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = client.post("/recommend", content=b'{"k": NaN}', headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["input"] == "NaN"


def test_batched_app_reports_batches(bundle_path):
    from fastapi.testclient import TestClient

    from harness.serving.app import ServingSettings, create_app

    app = create_app(ServingSettings(str(bundle_path), batching=True, max_batch=4, max_wait_ms=1.0))
    with TestClient(app) as client:
        r = client.post("/recommend", json={"user_id": 3, "k": 4})
        timing = r.headers["server-timing"]
        assert r.status_code == 200 and "queue;dur=" in timing and 'batch;desc="1"' in timing
        assert client.post("/recommend", json={"k": 2}).json()["fallback"] is True


# --- load tests and fuzzing: parsing and bounds ----------------------------------------------------

def test_loopback_only():
    from harness.serving.loadtest import check_loopback, run_locust, run_schemathesis

    for url in ("http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:80", "http://127.3.4.5:9"):
        check_loopback(url)
    for url in ("http://10.0.0.1:8000", "http://192.168.1.2", "http://example.com", "http://0.0.0.0:8000"):
        with pytest.raises(ValueError, match="loopback"):
            check_loopback(url)
    with pytest.raises(ValueError, match="loopback"):
        run_locust("http://10.1.1.1:80", "x.json", users=1, seconds=1, out_dir="/tmp/never")
    with pytest.raises(ValueError, match="loopback"):
        run_schemathesis("http://8.8.8.8")
    with pytest.raises(ValueError, match="bounded"):
        run_locust("http://127.0.0.1:9", "x.json", users=5000, seconds=1, out_dir="/tmp/never")


def test_parse_locust_stats(tmp_path):
    from harness.serving.loadtest import parse_locust_stats

    header = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
              "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,"
              "99.99%,100%")
    rows = ["POST,/recommend,1200,2,4,4.6,1.2,40,900,199.5,0.3,4,5,5,6,7,9,11,14,30,40,40",
            ",Aggregated,1200,2,4,4.6,1.2,40,900,199.5,0.3,4,5,5,6,7,9,11,14,30,40,40"]
    (tmp_path / "locust_stats.csv").write_text("\n".join([header, *rows]) + "\n")
    stats = parse_locust_stats(tmp_path / "locust")
    assert stats == {"requests": 1200, "failures": 2, "qps": 199.5, "p50": 4.0, "p95": 9.0, "p99": 14.0,
                     "mean": 4.6, "max": 40.0}


def test_parse_locust_json(tmp_path):
    from harness.serving.loadtest import parse_locust_json

    entry = {"name": "/recommend", "method": "POST", "start_time": 100.0, "last_request_timestamp": 110.0,
             "num_requests": 100, "num_failures": 1, "total_response_time": 500.0, "max_response_time": 40.0,
             "response_times": {str(ms): 1 for ms in range(1, 101)}}
    (tmp_path / "locust.json").write_text(json.dumps([entry]))
    stats = parse_locust_json(tmp_path / "locust")
    assert stats["requests"] == 100 and stats["failures"] == 1 and stats["qps"] == 10.0 and stats["mean"] == 5.0
    assert (stats["p50"], stats["p95"], stats["p99"]) == (51.0, 96.0, 100.0)  # Locust's own convention


def test_locust_is_never_imported_here():
    """Locust monkey-patches the standard library with gevent: it only ever runs as a subprocess."""
    import harness.pipeline.serving  # noqa: F401
    import harness.serving.loadtest  # noqa: F401

    assert "locust" not in sys.modules and "gevent" not in sys.modules


# --- the command line -----------------------------------------------------------------------------

def _serve(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "harness", "serve", *args], capture_output=True, text=True,
                          cwd=repo_root(), env={**os.environ, **(env or {})}, timeout=120)


def test_serve_refuses_a_missing_bundle(tmp_path):
    out = _serve("--bundle", str(tmp_path / "none"), "--port", "9")
    assert out.returncode == 2 and "no model bundle" in out.stderr, out.stderr[-800:]


def test_serve_says_which_exercise_is_missing(tmp_path, bundle_path):
    from harness.paths import tree_dir

    # a notebook whose first exercise is still a stub (as `harness sync` writes it; no nbgrader needed here)
    solution = next(tree_dir("solutions").glob("session_14_*.py"))
    text = solution.read_text()
    start, end = text.index("    ### BEGIN SOLUTION"), text.index("    ### END SOLUTION\n") + len("    ### END SOLUTION\n")
    stub = ('    # YOUR CODE HERE\n    raise NotImplementedError("exercise 1 `request_model` (session 14) is not '
            'implemented yet: replace this line with your code")\n')
    (tmp_path / solution.name).write_text(text[:start] + stub + text[end:])
    out = _serve("--bundle", str(bundle_path), "--impl", "sessions", "--port", "9",
                 env={"HARNESS_SESSIONS_DIR": str(tmp_path)})
    assert out.returncode == 2 and "exercise 1 `request_model` (session 14) is not implemented yet" in out.stderr


def test_serving_stages_are_in_the_pipeline():
    from harness.pipeline.runner import all_stages

    names = [s.name for s in all_stages()]
    assert names[-2:] == ["serving-bundle", "serving"]
