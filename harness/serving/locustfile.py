"""The provided load-test script: ``locust --headless -f harness/serving/locustfile.py --host http://127.0.0.1:PORT``.

Run it through :func:`harness.serving.loadtest.run_locust` (bounded users, spawn rate and duration,
loopback only), which sets the environment variables below and parses the results. Locust runs
in its own process: it monkey-patches the standard library with gevent, which must never happen
inside a test process or a notebook kernel.

Each simulated user is a *closed loop*: it sends a request, waits for the answer, and sends the
next one at once (``wait_time = constant(0)``), so the number of users is the number of requests
in flight. A request counts as a failure unless it answers 200 with at least one item.

    HARNESS_LOCUST_REQUESTS    JSON file: a list of request bodies, drawn at random (seeded per user)
    HARNESS_LOCUST_LATENCIES   where to write every measured request (CSV): start time, latency in
                               ms, ok, status, and the server's Server-Timing (app, queue, model, batch)
    HARNESS_LOCUST_SEED        seed of the request draws (default 0)

Requests sent while users are still being spawned are not recorded (Locust's ``--reset-stats``
does the same to its own statistics).
"""
import json
import os
import random
import time

from locust import FastHttpUser, constant, events, task

with open(os.environ["HARNESS_LOCUST_REQUESTS"]) as _f:
    BODIES = [json.dumps(body).encode() for body in json.load(_f)]
SEED = int(os.environ.get("HARNESS_LOCUST_SEED", "0"))
_RECORDS: list[tuple] = []
_STATE = {"measuring": False, "users": 0}


@events.spawning_complete.add_listener
def _spawned(user_count, **kwargs):
    _STATE["measuring"] = True


def _timing(header: str | None) -> dict:
    out = {}
    for part in (header or "").split(","):
        name, _, rest = part.strip().partition(";")
        for field in rest.split(";"):
            key, _, value = field.partition("=")
            if key == "dur":
                out[name] = float(value)
            elif key == "desc":
                out[name] = float(value.strip('"'))
    return out


@events.request.add_listener
def _record(request_type, name, response_time, response_length, response=None, exception=None, start_time=None,
            **kwargs):
    """Every finished request, with Locust's own latency (the same population as its CSV, unrounded)."""
    if not _STATE["measuring"]:
        return
    headers = getattr(response, "headers", None)
    t = _timing(headers.get("server-timing") if headers else None)
    _RECORDS.append((start_time or time.time(), response_time, int(exception is None),
                     int(getattr(response, "status_code", 0) or 0), t.get("app", ""), t.get("queue", ""),
                     t.get("model", ""), t.get("batch", "")))


class Visitor(FastHttpUser):
    wait_time = constant(0)

    def on_start(self):
        _STATE["users"] += 1
        self.rng = random.Random(SEED * 1_000_003 + _STATE["users"])

    @task
    def recommend(self):
        body = self.rng.choice(BODIES)
        with self.client.post("/recommend", data=body, headers={"content-type": "application/json"},
                              catch_response=True, name="/recommend") as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                if not response.json()["items"]:
                    response.failure("200 with no items")
            except (ValueError, KeyError, TypeError) as err:
                response.failure(f"unreadable body: {err}")


@events.quitting.add_listener
def _write(environment, **kwargs):
    path = os.environ.get("HARNESS_LOCUST_LATENCIES")
    if not path:
        return
    with open(path, "w") as f:
        f.write("start,latency_ms,ok,status,app_ms,queue_ms,model_ms,batch\n")
        for row in _RECORDS:
            f.write(",".join(str(x) for x in row) + "\n")
