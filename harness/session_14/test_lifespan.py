"""Exercise 6: lifespan (the bundle loaded once at start-up, models in eval mode without gradients)."""
import pytest
from fastapi.testclient import TestClient

from harness.autograder.checks import expect, expect_equal, fail
from harness.serving.bundle import Bundle, BundleError

from .conftest import app_with, known_users, watch_models

pytestmark = pytest.mark.exercise("lifespan")


@pytest.fixture
def loads(nb, monkeypatch):
    """Every call of load_bundle made by your code: (path, keyword arguments)."""
    from harness.serving.bundle import load_bundle

    calls = []

    def spy(path, **kwargs):
        calls.append((str(path), kwargs))
        return load_bundle(path, **kwargs)

    monkeypatch.setitem(nb._globals(), "load_bundle", spy)
    return calls


def test_loads_the_bundle_once_at_start_up(nb, reference, bundle_path, loads):
    app = app_with(reference, nb, {"lifespan"}, bundle_path)
    with TestClient(app) as client:
        expect_equal(len(loads), 1, "load_bundle calls at start-up")
        expect_equal(loads[0][0], str(bundle_path), "the bundle loaded is app.state.settings.bundle_path")
        expect(isinstance(app.state.bundle, Bundle), "the loaded bundle is in app.state.bundle",
               got=type(app.state.bundle).__name__, hint="app.state.bundle = bundle, before the yield")
        for user in known_users(app.state.bundle, 4):
            expect_equal(client.post("/recommend", json={"user_id": user, "k": 3}).status_code, 200,
                         "a request after start-up")
        expect_equal(len(loads), 1, "load_bundle calls after start-up and 4 requests: still one")
    expect(app.state.bundle is None, "after shutdown the bundle is released (the provided teardown)")


def test_passes_the_load_options(nb, reference, bundle_path, loads):
    app = app_with(reference, nb, {"lifespan"}, bundle_path, expect_fingerprint="not-this-data")
    try:
        with TestClient(app):
            pass
    except NotImplementedError:
        raise
    except BundleError:
        expect_equal(loads[0][1].get("expect_fingerprint"), "not-this-data",
                     "the expected fingerprint reaches load_bundle")
        return
    fail("a server told to expect another dataset's fingerprint refuses to start",
         got="it started", hint="load_bundle(settings.bundle_path, **settings.load_options)")


def test_models_in_eval_mode_without_gradients(nb, reference, bundle_path, loads):
    app = app_with(reference, nb, {"lifespan"}, bundle_path)
    with TestClient(app) as client:
        bundle = app.state.bundle
        training = [type(m).__name__ + (f".{n}" if n else "") for model in bundle.models()
                    for n, m in model.named_modules() if m.training]
        expect(not training, "every module of the served models is in eval mode",
               got=f"training mode: {', '.join(training[:4])}",
               hint="for model in bundle.models(): model.eval(); load_bundle returns them in training mode, like "
                    "every freshly built nn.Module: dropout would make answers random")
        grads = [name for model in bundle.models() for name, p in model.named_parameters() if p.requires_grad]
        expect(not grads, "no parameter requires grad at serve time", got=grads[:4],
               hint="model.requires_grad_(False) for every model")
        with watch_models(bundle) as calls:
            expect_equal(client.post("/recommend", json={"history": [5, 6, 7], "k": 4}).status_code, 200,
                         "a request")
        expect(calls and not any(training for _, training, _ in calls), "modules run in eval mode while serving")
