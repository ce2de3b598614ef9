# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Session 14 — Serving I: the `/recommend` endpoint
#
# Everything so far ran offline, over whole splits. Today the pipeline answers one visitor at a
# time, over HTTP: a **service** that loads the models once, takes a JSON request, retrieves
# candidates from FAISS, reranks them with the DLRM and returns the best k, with titles and
# scores, in a few milliseconds, and that answers every bad request with a clear 4xx instead of
# crashing.
#
# ```
#  POST /recommend {"user_id": 7, "k": 10}        or {"history": [12, 50, 7], "k": 10}        or {}
#    │  FastAPI parses the JSON and validates it against RecommendRequest ......... wrong type, k, ids: 422
#    ▼  resolve_query: a user id becomes its stored history ............ unknown user: 404, unknown item: 422
#    ├── nothing known (a cold visitor) ─────────► the popularity list, "fallback": true
#    ▼  rank_candidates (batched, no autograd)
#         user tower ─► FAISS top-100, seen items excluded ─┐
#         cold items nearest by text (session 11) ──────────┴─► DLRM logits ─► top k
#    ▼  response_body ─► RecommendResponse (validated) ─► JSON: ids, titles, scores
# ```
#
# The workbook provides the **model bundle** (one folder with every model and a manifest, written by
# the pipeline, refused on load when it does not match), the FastAPI **scaffold** (routes, error
# JSON, a request-size limit), `python -m harness serve` and a Dockerfile. You write:
#
# | # | exercise | |
# | --- | --- | --- |
# | 1 | `request_model` | the pydantic request body: a user id or a history, and `k`, with the limits in the schema |
# | 2 | `response_model` | the pydantic response: ranked items with titles and finite scores, a fallback flag |
# | 3 | `resolve_query` | a request becomes a query: the user's stored history, or the request's own; 404 / 422 |
# | 4 | `rank_candidates` | retrieve → rerank → top-k for a batch of queries, under `torch.inference_mode()` |
# | 5 | `recommend` | one request end to end, with the popularity fallback for a cold visitor |
# | 6 | `lifespan` | load the bundle once at start-up, models in eval mode |
# | 7 | `recommend_endpoint` | the async endpoint: the model runs in a worker thread, never on the event loop |
# | 8 | `health` | readiness: 503 until the bundle is loaded, then what is being served |
#
# Then you run the service in-process and as a real uvicorn server on a loopback port, send it good
# and bad requests, and check that it answers exactly what offline evaluation computes.
# Session 15 makes it fast under load (micro-batching) and measures it.
#
# **Before:** [readings/session_14.md](../readings/session_14.md): FastAPI's *First Steps*, *Request
# Body*, *Handling Errors* and *Lifespan Events*, and PyTorch's *Saving and Loading Models* (about
# 55 minutes).

# %% tags=["export"]
import math
from contextlib import asynccontextmanager
from typing import Annotated, Literal, Sequence

import numpy as np
import torch
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from harness import upstream
from harness.serving.app import ServingLimits
from harness.serving.bundle import Bundle, load_bundle
from harness.serving.errors import NotReady, UnknownItems, UnknownUser
from harness.serving.glue import Query, pad_histories, padded_seen, ranker_batch, response_body, text_candidates

search_excluding_seen = upstream(6).search_excluding_seen

# %%
from harness import Checker

check = Checker(session=14, namespace=globals())

# %% [markdown]
# ## 1. The model bundle
#
# A service must run *exactly* the models the pipeline evaluated, with the features they were
# trained with. The pipeline's `serving-bundle` stage writes them into one folder:
#
# | file | what |
# | --- | --- |
# | `manifest.json` | format version, dataset name and **fingerprint**, the models' build settings, serving limits, torch / FAISS versions, a SHA-256 per file |
# | `retriever.pt` | the two-tower model's `state_dict` (user tower + item tower, session 03) |
# | `item_embeddings.pt`, `index.faiss` | the item vectors and session 06's FAISS index over them (label r = item r + 1) |
# | `ranker.pt` | the DLRM's `state_dict` (session 07, trained in sessions 08–10) |
# | `features.pkl` | the ranker's feature builder: vocabularies and statistics from training, histories up to the test split |
# | `catalog.npz` | titles, popularity, the cold items, every known user's history |
# | `text_vectors.pt` | (when there are cold items) session 11's text vectors |
#
# **State dicts, not pickled modules.** `torch.save(model)` pickles the module *and a reference to its
# class*: renaming a file or a class breaks every saved model. A `state_dict` is just named tensors; the
# bundle stores the settings that rebuild the module (`build_two_tower(..., tower="transformer",
# dim=64, ...)`) and loads the tensors into it with `torch.load(..., weights_only=True)`, which runs no
# code from the file. (`torch.export` goes further: it captures the forward pass as a graph that runs
# without the Python class, for serving from C++ or on a phone.)
#
# **Refuse a mismatched bundle.** `load_bundle` checks the format version, the torch and FAISS versions
# it was written with, every file's checksum, and the dataset fingerprint against the one you expect:
# a bundle built from other data maps item ids to other items, and would serve nonsense without a
# single error. It comes back with the models **in training mode**, as every `nn.Module` is after
# construction: dropout on, autograd recording. Putting them in eval mode is the server's job (exercise 6).
#
# Load the bundle of the current dataset (the pipeline writes it on first use: the Transformer
# retriever, the DLRM, the features; seconds when the models are cached):

# %%
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from harness.config import load_config
from harness.pipeline.serving import ensure_bundle
from harness.serving.bundle import BundleError

DATASET = os.environ.get("WORKBOOK_DATASET", "ml-100k")
PRESET = load_config("serving").preset
start = time.perf_counter()
BUNDLE = ensure_bundle(DATASET, PRESET, log=False)
bundle = load_bundle(BUNDLE)
print(f"bundle ready in {time.perf_counter() - start:.1f} s: {BUNDLE.name}")
print(json.dumps(bundle.summary(), indent=1))
print("training mode after loading:", {type(m).__name__: m.training for m in bundle.models()})

# %% [markdown]
# A bundle whose manifest claims other data is refused, with what to do:

# %%
with tempfile.TemporaryDirectory() as tmp:
    fake = Path(tmp) / "bundle"
    shutil.copytree(BUNDLE, fake)
    try:
        load_bundle(fake, expect_fingerprint="0123456789abcdef")
    except BundleError as err:
        print("refused:", err)
    (fake / "ranker.pt").write_bytes((fake / "ranker.pt").read_bytes() + b"\0")
    try:
        load_bundle(fake)
    except BundleError as err:
        print("refused:", err)

# %% [markdown]
# ## 2. The request: validate at the edge
#
# The serving contract: `POST /recommend` with
#
# * `{"user_id": 7, "k": 10}`: a known user, whose history the service looks up;
# * `{"history": [12, 50, 7], "k": 10}`: an anonymous visitor's history, item ids, most recent last;
# * neither (`{}`, `{"history": []}`): a **cold visitor**, who gets the popularity list.
#
# FastAPI validates the JSON body against a pydantic model *before your code runs*, and answers a
# 422 with a readable message when it does not fit. Everything a schema can say belongs in the
# schema: it is enforced, it shows in `/docs`, and it is what schemathesis (session 15) fuzzes.
#
# ### Exercise 1 — `request_model`
#
# Return a pydantic model class named `RecommendRequest` with these fields; the limits come from
# the server's `ServingLimits` (which is why it is built by a function, at app creation):
#
# | field | type | default | constraint (in the schema: `Field(...)`) |
# | --- | --- | --- | --- |
# | `user_id` | `int` or `None` | `None` | `ge=1` |
# | `history` | list of `int`, or `None` | `None` | at most `limits.max_history` ids (`max_length`), each `ge=1`: 0 is padding, never an item |
# | `k` | `int` | `10` | `ge=1`, `le=limits.max_k` |
#
# * **Strict types**: `model_config = ConfigDict(extra="forbid", strict=True)`. Pydantic's default
#   "lax" mode turns `"7"` into `7` and `true` into `1`; a client sending those has a bug you want
#   to tell it about. `extra="forbid"` turns a typo (`"userid"`) into a 422 instead of a silently
#   ignored field and a cold-visitor answer.
# * **Each id in range**: `list[Annotated[int, Field(ge=1)]]`; the list's own constraint is
#   `Field(None, max_length=...)`.
# * **Not both**: a `@model_validator(mode="after")` raises `ValueError("give either user_id or history,
#   not both")` when `user_id` is set and `history` is not `None`. (A `ValueError` in a validator
#   becomes a 422 entry.)
#
# Whether an id *exists* (user 99999, item 50000) the schema cannot know: that is exercise 3.

# %% tags=["export"]
def request_model(limits: ServingLimits) -> type[BaseModel]:
    """The request body of ``POST /recommend``, with ``limits`` in its schema.

    Returns:
        a pydantic model class ``RecommendRequest`` with fields ``user_id``, ``history``, ``k``
        (see the table above), strict, no extra fields, never both ``user_id`` and ``history``.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 1 `request_model` (session 14) is not implemented yet: replace this line with your code")


# %%
check("request_model")

# %% [markdown]
# ## 3. The response: a contract on your own output
#
# A `response_model` makes FastAPI validate what *your* code returns and document it. If your code
# returns something that breaks it, the client gets a 500: a bug of the service, caught at its
# boundary instead of in a client's parser. (Python's `float("-inf")` is not even valid JSON.)
#
# ### Exercise 2 — `response_model`
#
# Return a pydantic model class `RecommendResponse` (field names and types exactly as below:
# `response_body` fills them, session 15 and the load tests read them):
#
# | field | type | |
# | --- | --- | --- |
# | `user_id` | `int` or `None` | the request's user id, `None` for a history or a cold visitor |
# | `items` | list of `RecommendedItem` | best first |
# | `fallback` | `bool` | True for the popularity list |
# | `strategy` | `Literal["retrieve-rank", "popularity"]` | how the list was made |
# | `bundle_id` | `str` | which bundle answered (for logs, A/B tests, rollbacks) |
#
# and `RecommendedItem` (defined inside your function too): `item_id: int` with `ge=1`, `title: str`,
# `score: float` with `Field(allow_inf_nan=False)`, `cold: bool` (the item had no interaction when the
# models were trained: text is its only evidence).
#
# One `@model_validator(mode="after")` on `RecommendResponse` states what a ranked list is: no
# item twice, scores never increasing down the list, and `fallback` true exactly when `strategy` is
# `"popularity"` (raise `ValueError` with a message that says which rule broke).

# %% tags=["export"]
def response_model() -> type[BaseModel]:
    """The response body of ``POST /recommend``: a ranked list, validated (see the table above).

    Returns:
        a pydantic model class ``RecommendResponse`` (with its item model ``RecommendedItem``).
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 2 `response_model` (session 14) is not implemented yet: replace this line with your code")


# %%
check("response_model")

# %% [markdown]
# ## 4. From a request to a query
#
# The service keeps every known user's history in memory (`bundle.user_history(user_id)`, the
# interactions before the test split, as offline evaluation sees them). A request is resolved into a
# `Query(user_id, history)`: `user_id` is 0 for an anonymous history, and `Query().cold` is the
# visitor with nothing at all.
#
# ### Exercise 3 — `resolve_query`
#
# * `user_id` given: unknown (`not bundle.knows_user(user_id)`) → `raise UnknownUser(user_id,
#   bundle.n_users)` (a 404 with a message); else `Query(user_id, tuple(bundle.user_history(user_id)))`.
# * a history given: every id must be in `1..bundle.n_items`; collect the positions and ids of those
#   that are not and `raise UnknownItems(positions, ids, bundle.n_items)` (a 422 in the same shape as
#   FastAPI's, one entry per bad id: say *all* of them, not just the first). Else `Query(0, tuple(history))`.
#   Keep the history as sent: its order matters and repeated items are allowed.
# * neither: `Query()`.
#
# Check the ids before they touch a tensor: `torch.tensor([2**63])` raises `RuntimeError`, and
# an embedding lookup with an id past the table raises `IndexError`: both would be 500s.

# %% tags=["export"]
def resolve_query(bundle: Bundle, request) -> Query:
    """The query a valid ``RecommendRequest`` asks for (see above); UnknownUser / UnknownItems otherwise."""
    # YOUR CODE HERE
    raise NotImplementedError("exercise 3 `resolve_query` (session 14) is not implemented yet: replace this line with your code")


# %%
check("resolve_query")

# %% [markdown]
# ## 5. Retrieve, rerank, top-k
#
# The request path is the offline pipeline, for a batch of B queries (B = 1 today; session 15
# batches many requests into one call, so write it for any B):
#
# 1. **Query vectors**: `history, mask = pad_histories(histories, bundle.max_len)` (the last
#    `max_len` items, left-padded, by session 02's collate function, as in offline evaluation), then
#    `bundle.retriever.user_tower(history, mask)` → `(B, d)`.
# 2. **Retrieve**: `search_excluding_seen(bundle.index, queries, seen, bundle.n_candidates)` (session
#    06) with `seen = padded_seen(histories)`, *every* item of the history → `(B, N)` item ids, 0-padded.
# 3. **Cold items by text**: `text_candidates(bundle, histories, exclude)` → `(B, M)` items that had
#    no interaction before the serving split (M = 0 when the bundle has none), the nearest to the
#    history in session 11's text space, never one in `exclude`: pass
#    `torch.cat([seen, retrieved], dim=1)` so that no item comes twice. Concatenate: `(B, C)`,
#    C = N + M.
# 4. **Rerank**: `bundle.ranker(ranker_batch(bundle, users, histories, candidates, queries))` gives
#    `(B * C,)` logits, row `b * C + j` for candidate j of query b: reshape to `(B, C)`.
# 5. **Top-k**: padding candidates (id 0) must never be recommended: their score is `-inf`. Sort
#    each row with `torch.sort(..., descending=True, stable=True)` (ties keep the retriever's order,
#    so the answer is deterministic), keep the first k scores and the ids at those positions, and
#    make the id 0 wherever the score is `-inf` (fewer than k real candidates).
#
# All of it under `with torch.inference_mode():` (or `torch.no_grad()`). Grad mode is a
# *thread-local* setting: the server calls this function in a worker thread (exercise 7), where a
# `torch.set_grad_enabled(False)` made at start-up in the main thread does not apply. Without it,
# every request records an autograd graph it never uses.

# %% tags=["export"]
def rank_candidates(bundle: Bundle, users: Sequence[int], histories: Sequence[Sequence[int]],
                    k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Retrieve -> rerank -> top-k for B queries at once.

    Args:
        users: B user ids (0 = anonymous); histories: B non-empty lists of item ids, most recent last.
        k: 1 <= k <= bundle.n_candidates.

    Returns:
        ids int64 (B, k), best first, 0 where fewer than k candidates exist; scores float32 (B, k),
        the ranker's logits, -inf where the id is 0.
    """
    # YOUR CODE HERE
    raise NotImplementedError("exercise 4 `rank_candidates` (session 14) is not implemented yet: replace this line with your code")


# %%
check("rank_candidates")

# %% [markdown]
# ## 6. One request, end to end
#
# ### Exercise 5 — `recommend`
#
# `recommend(bundle, request)` returns the response body (a dict, which FastAPI validates with your
# response model):
#
# * `query = resolve_query(bundle, request)`;
# * a **cold visitor** (`query.cold`): the `request.k` most popular items, `bundle.popular[:k]`
#   (ids by training interactions, most first), scored by their interaction counts
#   (`bundle.popularity[ids]`, as floats), `response_body(bundle, query, ids, scores, fallback=True)`;
#   no model runs;
# * otherwise `rank_candidates(bundle, [query.user_id], [query.history], request.k)` and
#   `response_body(..., fallback=False)` with its single row.
#
# `response_body` (provided) adds the titles and cold flags and leaves padding ids out.

# %% tags=["export"]
def recommend(bundle: Bundle, request) -> dict:
    """The answer to one valid ``RecommendRequest``: a dict in the shape of ``RecommendResponse``."""
    # YOUR CODE HERE
    raise NotImplementedError("exercise 5 `recommend` (session 14) is not implemented yet: replace this line with your code")


# %%
check("recommend")

# %% [markdown]
# ## 7. The app: load once, never block the event loop
#
# FastAPI runs on an **event loop**: one thread interleaves every open request, switching at each
# `await`. A `lifespan` context manager runs once: the code before its `yield` at start-up (before
# the first request), the code after it at shutdown.
#
# ### Exercise 6 — `lifespan`
#
# At start-up: `load_bundle(app.state.settings.bundle_path, **app.state.settings.load_options)` (the
# options carry the expected fingerprint), then every module of `bundle.models()` in eval mode
# (`model.eval()`: dropout off) with `requires_grad_(False)`, then keep it in `app.state.bundle`.
# Optionally warm it up with one small `rank_candidates` call (the first call of a model pays for
# allocations). The teardown after `yield` is provided. **Once**: loading per request would add the
# whole loading time (hundreds of milliseconds and a copy of every model) to every answer.

# %% tags=["export"]
@asynccontextmanager
async def lifespan(app):
    """Start-up: load the bundle once, models in eval mode without gradients, into ``app.state.bundle``."""
    # YOUR CODE HERE
    raise NotImplementedError("exercise 6 `lifespan` (session 14) is not implemented yet: replace this line with your code")
    yield
    app.state.bundle = None  # shutdown: drop the models (a reload would load a fresh bundle)


# %% [markdown]
# ### Exercise 7 — `recommend_endpoint`
#
# `async def recommend_endpoint(body, request)`: the scaffold calls it with the validated body and
# the `Request` (`request.app.state.bundle` is the loaded bundle; `None` means not ready: raise
# `NotReady()`, a 503). The model is CPU-bound and blocking: called directly inside an `async def`,
# it would freeze the event loop, and every other request, `/health` included, would wait for it.
# Run `recommend` in a worker thread: `return await run_in_threadpool(recommend, bundle, body)`.
#
# ### Exercise 8 — `health`
#
# `async def health(request)`: `NotReady()` while `request.app.state.bundle` is `None`; otherwise
# `{"status": "ok", **bundle.summary()}` (its id, dataset, fingerprint, models). A load balancer
# sends traffic only to instances whose health check answers 200.

# %% tags=["export"]
async def recommend_endpoint(body, request: Request) -> dict:
    """``POST /recommend``: the answer of ``recommend``, computed in a worker thread."""
    # YOUR CODE HERE
    raise NotImplementedError("exercise 7 `recommend_endpoint` (session 14) is not implemented yet: replace this line with your code")


async def health(request: Request) -> dict:
    """``GET /health``: 503 until the bundle is loaded, then ``{"status": "ok", **bundle.summary()}``."""
    # YOUR CODE HERE
    raise NotImplementedError("exercise 8 `health` (session 14) is not implemented yet: replace this line with your code")


# %%
check("lifespan")
check("recommend_endpoint")
check("health")

# %% [markdown]
# ## Run it, part 1: the app in-process
#
# `harness.serving.app.create_app` is the scaffold: it builds the request and response models
# from your functions, registers `POST /recommend` and `GET /health` with their documentation, and
# turns the service's errors into JSON. `logic=` says where your functions are (here: this
# notebook). FastAPI's `TestClient` runs the app in this process, lifespan included.

# %%
from types import SimpleNamespace

from fastapi.testclient import TestClient

from harness.serving.app import ServingSettings, create_app

settings = ServingSettings(str(BUNDLE), expect_fingerprint=bundle.fingerprint)
app = create_app(settings, logic=SimpleNamespace(**globals()))
user = int(np.nonzero(np.diff(bundle.history_offsets)[1:])[0][0]) + 1
history = bundle.user_history(user)[-5:]

with TestClient(app) as client:
    print("GET /health:", client.get("/health").json()["status"])
    for body in ({"user_id": user, "k": 5}, {"history": history, "k": 5}, {"k": 5}):
        start = time.perf_counter()
        answer = client.post("/recommend", json=body).json()
        ms = (time.perf_counter() - start) * 1e3
        print(f"\n{json.dumps(body)} -> {answer['strategy']}, fallback={answer['fallback']} ({ms:.1f} ms in-process)")
        for item in answer["items"]:
            print(f"   {item['item_id']:>6}  {item['score']:>9.3f}  {'(cold) ' if item['cold'] else ''}{item['title'][:60]}")

# %% [markdown]
# ### The service answers what offline evaluation computes
#
# For a few test users, the service's top-10 must be exactly `rank_candidates` on their stored
# history, and its candidates exactly session 06's FAISS search: the numbers of sessions 06–10
# describe what this endpoint returns.

# %% [markdown]
# The notebook's own `bundle` is still as `load_bundle` returned it, in training mode. Two calls
# on the same query then disagree (dropout draws new masks each time); prepared as your `lifespan`
# prepares the server's copy, they agree:

# %%
query_users, query_histories = [user], [bundle.user_history(user)]
twice = [rank_candidates(bundle, query_users, query_histories, 10)[0] for _ in range(2)]
print("training mode, the same query twice, same answer:", bool(torch.equal(*twice)))
for model in bundle.models():
    model.eval()
    model.requires_grad_(False)
twice = [rank_candidates(bundle, query_users, query_histories, 10)[0] for _ in range(2)]
print("eval mode,     the same query twice, same answer:", bool(torch.equal(*twice)))

# %%
test_users = [int(u) for u in np.nonzero(np.diff(bundle.history_offsets)[1:])[0][:20] + 1]
with TestClient(app) as client:
    served = [client.post("/recommend", json={"user_id": u, "k": 10}).json() for u in test_users]
direct_ids, direct_scores = rank_candidates(bundle, test_users, [bundle.user_history(u) for u in test_users], 10)
same = all([i["item_id"] for i in s["items"]] == [int(x) for x in row if x] for s, row in zip(served, direct_ids))
gap = max(abs(i["score"] - float(x)) for s, row in zip(served, direct_scores) for i, x in zip(s["items"], row))
print(f"{len(test_users)} users: same ids as the batched offline call: {same}; largest score gap {gap:.2e}")
assert same and gap < 1e-4

# %% [markdown]
# ## Run it, part 2: bad input gets a 4xx, never a 500
#
# The corpus below is what clients really send: wrong types, out-of-range values, padding ids,
# unknown ids, typos, oversized or malformed payloads. Every answer must be a 4xx with a message
# that says what to fix. (Session 15 fuzzes the same endpoint with generated inputs.)

# %%
from harness.serving.corpus import bad_requests

with TestClient(app, raise_server_exceptions=False) as client:
    rows = []
    for case in bad_requests(bundle, app.state.limits):
        r = client.post("/recommend", content=case.body, headers={"content-type": case.content_type})
        detail = r.json().get("detail") if r.headers.get("content-type", "").startswith("application/json") else r.text
        message = detail if isinstance(detail, str) else "; ".join(d.get("msg", "") for d in detail)
        rows.append((case.name, r.status_code, message))
print(f"{'case':<34}{'status':>7}  message")
for name, status, message in rows:
    print(f"{name:<34}{status:>7}  {message[:90]}")
assert all(400 <= status < 500 for _, status, _ in rows), "a bad request got a non-4xx answer"

# %% [markdown]
# ## Run it, part 3: a real server
#
# `python -m harness serve` runs uvicorn on `127.0.0.1:8000` (loopback: only this machine can
# reach it). `ServerProcess` starts the same command in a subprocess on a free port, waits for
# `/health`, and stops it with SIGINT (uvicorn's graceful shutdown: finish open requests, run the
# lifespan's teardown). It serves the saved notebook file of the tree this notebook is in: yours
# in `sessions/`.
#
# ```bash
# .venv/bin/python -m harness serve --bundle runs/bundles/ml-100k-laptop            # the reference
# .venv/bin/python -m harness serve --impl sessions --batching off                  # your notebook
# curl -s localhost:8000/recommend -H 'content-type: application/json' -d '{"user_id": 1, "k": 5}'
# ```
#
# Open `http://127.0.0.1:8000/docs` while it runs: the schema of your request and response models.

# %%
import httpx

from harness.paths import TREES
from harness.serving.server import ServerProcess

IMPL = Path.cwd().name if Path.cwd().name in TREES else "sessions"  # the tree this notebook is in: your code
with ServerProcess(BUNDLE, impl=IMPL, batching=False) as server:
    with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as client:
        print(client.get("/health").json())
        r = client.post("/recommend", json={"user_id": user, "k": 3})
        print(r.status_code, r.headers["server-timing"], [i["item_id"] for i in r.json()["items"]])
        latencies = []
        for u in test_users * 5:
            start = time.perf_counter()
            client.post("/recommend", json={"user_id": u, "k": 10}).raise_for_status()
            latencies.append((time.perf_counter() - start) * 1e3)
        print(f"{len(latencies)} sequential requests over loopback: median {np.median(latencies):.2f} ms, "
              f"max {np.max(latencies):.2f} ms (session 15 measures properly, under load)")
        schema = client.get("/openapi.json").json()
print("request schema:", json.dumps(schema["components"]["schemas"]["RecommendRequest"]["properties"])[:300], "...")
print(f"shut down cleanly: {server.clean_exit} (exit code {server.returncode})")

# %% [markdown]
# ## Run it, part 4: in a container
#
# The repository's `Dockerfile` builds a CPU-only image (torch's CPU wheel, FAISS for CPU, the
# harness and the notebooks that rebuild the models) and serves a bundle that you mount, or copy in
# at build time. Docker does not run inside this workbook's own environment; on a machine with it:
#
# ```bash
# docker build -t recsys-serve .
# docker run --rm -p 8000:8000 -v "$PWD/runs/bundles/ml-100k-laptop:/bundle:ro" recsys-serve
# # or bake the bundle into the image:
# docker build -t recsys-serve --build-arg BUNDLE=runs/bundles/ml-100k-laptop .
# docker run --rm -p 8000:8000 recsys-serve
# ```
#
# Inside the container the server listens on `0.0.0.0` (the container's own interfaces, reached
# through the published port); on your machine, `-p 127.0.0.1:8000:8000` keeps it to loopback.

# %% [markdown]
# ## Reflection
#
# 1. Your service keeps the user histories it knows in memory. What happens to a user's
#    recommendations between two interactions, and what would you need to update histories online?
# 2. List every input that can reach `/recommend` and the status code each gets. Which of them would a
#    load balancer's health check or a client retry treat differently, and does that matter?
# 3. The model bundle is written by the offline pipeline and read by the service. What could make the
#    two disagree (code version, feature definitions, item ids), and which check in the manifest
#    catches each?
# 4. Where does the latency of one request go (user tower, FAISS search, feature assembly, DLRM,
#    JSON)? Guess first, then measure in session 15.
#
# **After:** [readings/session_14.md](../readings/session_14.md): FastAPI in containers, uvicorn's
# deployment notes, schemathesis. **Next:** session 15 batches concurrent requests into one forward
# pass and load-tests the server.
