"""Exercise 8: health (readiness: 503 until the bundle is loaded, then what is served)."""
import pytest
from fastapi.testclient import TestClient

from harness.autograder.checks import expect, expect_equal
from harness.serving.errors import NotReady

from .conftest import app_with, fake_request, run_async

pytestmark = pytest.mark.exercise("health")


def test_not_ready_before_start_up(nb):
    try:
        run_async(nb.health(fake_request(None)))
    except NotImplementedError:
        raise
    except NotReady:
        return
    except Exception as err:
        expect(False, "health raises NotReady (503) while no bundle is loaded", got=f"{type(err).__name__}: {err}")
    expect(False, "health raises NotReady (503) while no bundle is loaded", got="an answer (200)",
           hint="a load balancer would send traffic to an instance that cannot serve it yet")


def test_reports_the_bundle(nb, served_bundle):
    body = run_async(nb.health(fake_request(served_bundle)))
    expect(isinstance(body, dict), "health returns a dict", got=type(body).__name__)
    expect_equal(body.get("status"), "ok", "the status")
    summary = served_bundle.summary()
    for key in ("bundle_id", "dataset", "fingerprint", "n_items", "retriever", "ranker"):
        expect_equal(body.get(key), summary[key], f"health's `{key}`", hint="{'status': 'ok', **bundle.summary()}")


def test_through_the_app(nb, reference, bundle_path):
    app = app_with(reference, nb, {"health"}, bundle_path)
    with TestClient(app) as client:
        r = client.get("/health")
        expect_equal(r.status_code, 200, "GET /health once the bundle is loaded")
        expect_equal(r.json().get("bundle_id"), app.state.bundle.bundle_id, "the bundle id it reports")
