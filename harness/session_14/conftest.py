"""Fixtures of session 14: a tiny bundle, the reference, and apps that mix one of your functions with it.

The bundle (``harness.serving.testing.tiny_bundle``) holds seeded random models on the synthetic
smoke data, built from the reference solutions of sessions 02-07 and cached under runs/test-cache/.
Requests are built with the *reference's* request model, and an app graded for one exercise runs
your function for that exercise and the reference for the others, so that one unfinished exercise
never fails the tests of another.
"""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from harness.autograder.loader import load_session


@pytest.fixture(scope="session")
def bundle_path():
    from harness.serving.testing import tiny_bundle

    return tiny_bundle()


@pytest.fixture(scope="session")
def reference():
    return load_session(14, "solutions")


@pytest.fixture(scope="session")
def limits(bundle_path):
    from harness.serving.app import ServingLimits
    from harness.serving.bundle import read_manifest

    return ServingLimits.from_manifest(read_manifest(bundle_path))


@pytest.fixture(scope="session")
def served_bundle(bundle_path):
    """The tiny bundle loaded once and prepared as a server prepares it (eval mode, no gradients)."""
    from harness.serving.bundle import load_for_inference

    return load_for_inference(bundle_path)


@pytest.fixture
def make_request(reference, limits):
    """``make_request({"user_id": 3, "k": 5})``: a request validated by the reference's request model."""
    model = reference.request_model(limits)
    return lambda body: model.model_validate(body)


def known_users(bundle, n: int, start: int = 1) -> list[int]:
    users = [u for u in range(start, bundle.n_users + 1) if bundle.knows_user(u)]
    return users[:n]


class Mixed:
    """Session 14's logic from the reference, except the functions in ``names``, which come from ``nb``."""

    def __init__(self, reference, nb, names):
        self._reference, self._nb, self._names = reference, nb, set(names)

    def __getattr__(self, name):
        return getattr(self._nb if name in self._names else self._reference, name)


def settings_for(bundle_path, **kwargs):
    from harness.serving.app import ServingSettings

    return ServingSettings(str(bundle_path), **kwargs)


def app_with(reference, nb, names, bundle_path, **settings):
    """An app whose exercises ``names`` are yours and the rest the reference's."""
    from harness.serving.app import create_app

    return create_app(settings_for(bundle_path, **settings), logic=Mixed(reference, nb, names))


@contextlib.contextmanager
def watch_models(bundle):
    """Records, for every forward call of any module of the bundle's models: (module, training, grad enabled)."""
    calls = []
    handles = []
    for model in bundle.models():
        for name, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=f"{type(model).__name__}.{name}" if name else type(model).__name__:
                calls.append((name, m.training, torch.is_grad_enabled()))))
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def fake_request(bundle):
    """What an endpoint reads from FastAPI's Request: ``request.app.state.bundle``."""
    return SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(bundle=bundle)))


def run_async(coroutine):
    """Run a coroutine to completion in a fresh event loop, on a helper thread (a notebook's kernel already runs
    a loop on its own thread, where asyncio.run is refused)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(__import__("asyncio").run, coroutine).result()
