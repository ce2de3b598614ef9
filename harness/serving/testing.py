"""A tiny model bundle for tests and smoke runs, built in about a second.

The synthetic smoke dataset (381 users, 297 items), session 03's Transformer two-tower and session
07's DLRM at toy sizes with seeded random weights (how long a forward pass takes, and whether
batched and unbatched serving agree, does not depend on training), random unit text vectors and
a seeded 8% of items marked cold so that the text path has something to serve. Built from the
reference solutions, never from the learner's notebooks, so that a test of session 14 grades
session 14 only.

    from harness.serving.testing import tiny_bundle
    path = tiny_bundle()             # cached under runs/test-cache/ while the code it is built from is unchanged
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..paths import runs_dir

TINY_RETRIEVER = {"tower": "transformer", "dim": 16, "category_dim": 8, "dropout": 0.1, "layers": 1, "heads": 2}
TINY_RANKER = {"dim": 8, "bottom": [16], "top": [32, 16]}
TINY_MAX_LEN = 20
TINY_SERVING = {"n_candidates": 40, "n_text_candidates": 5, "max_k": 40, "max_history": 64,
                "max_body_bytes": 4096}


@contextlib.contextmanager
def _temporary_data_dir():
    saved = os.environ.get("HARNESS_DATA_DIR")
    folder = tempfile.mkdtemp(prefix="serving-data-")
    os.environ["HARNESS_DATA_DIR"] = folder
    try:
        yield Path(folder)
    finally:
        if saved is None:
            os.environ.pop("HARNESS_DATA_DIR", None)
        else:
            os.environ["HARNESS_DATA_DIR"] = saved
        shutil.rmtree(folder, ignore_errors=True)


def build_tiny_bundle(path: str | Path, seed: int = 0) -> Path:
    """Write the tiny bundle to ``path`` (see the module docstring); returns ``path``."""
    from ..autograder.loader import load_session
    from ..data import load_dataset
    from ..pipeline.features import FeatureBuilder
    from .bundle import write_bundle

    s03, s07 = load_session(3, "solutions"), load_session(7, "solutions")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _temporary_data_dir():
            ds = load_dataset("synthetic", "smoke")
        codes, names = ds.category_codes()
        torch.manual_seed(seed)
        retriever = s03.build_two_tower(ds.n_items, torch.from_numpy(codes), len(names), **TINY_RETRIEVER)
        builder = FeatureBuilder.fit(ds, "valid", history_len=8)
        ranker = s07.DLRM(builder.spec, dim=TINY_RANKER["dim"], bottom=tuple(TINY_RANKER["bottom"]),
                          top=tuple(TINY_RANKER["top"]))
        g = torch.Generator().manual_seed(seed + 1)
        text = torch.nn.functional.normalize(torch.randn(ds.n_items + 1, 16, generator=g), dim=1)
        rng = np.random.default_rng(seed)
        cold = np.zeros(ds.n_items + 1, dtype=bool)
        cold[rng.choice(np.arange(1, ds.n_items + 1), size=max(1, int(0.08 * ds.n_items)), replace=False)] = True
        return write_bundle(path, dataset=ds, retriever=retriever,
                            retriever_info={"name": "two-tower transformer (tiny, random weights)",
                                            "max_len": TINY_MAX_LEN, "build": TINY_RETRIEVER},
                            ranker=ranker, ranker_info={"name": "DLRM (tiny, random weights)", "build": TINY_RANKER,
                                                        "note": "random weights: for tests"},
                            features=builder, text_vectors=text, text_source="random unit vectors (tests)",
                            cold=cold, serving=TINY_SERVING, preset="smoke", notes=["test bundle"])
    finally:
        torch.set_num_threads(threads)


def _key() -> str:
    import faiss

    from ..pipeline.cache import code_fingerprint

    code = code_fingerprint("solutions", (2, 3, 6, 7), modules=("harness.serving.bundle", "harness.serving.testing",
                                                                 "harness.pipeline.features", "harness.data.synthetic"))
    return hashlib.sha256(f"{code} {torch.__version__} {faiss.__version__}".encode()).hexdigest()[:16]


def tiny_bundle() -> Path:
    """The tiny bundle, built once and reused while the code it comes from is unchanged (safe across processes)."""
    import fcntl

    folder = runs_dir() / "test-cache"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"serving-bundle-{_key()}"
    if (path / "manifest.json").is_file():
        return path
    with open(folder / "serving-bundle.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (path / "manifest.json").is_file():
                for old in folder.glob("serving-bundle-*"):
                    if old.is_dir() and old != path:
                        shutil.rmtree(old, ignore_errors=True)
                build_tiny_bundle(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


__all__ = ["TINY_SERVING", "build_tiny_bundle", "tiny_bundle"]


def graded_server_tree(request, sessions: tuple[int, ...], what: str) -> str:
    """The notebook tree a real-server test serves, once every exercise of ``sessions`` is written.

    Skips under an inline check (a subprocess serves the *saved* notebook file, which only pytest
    grades), and raises the autograder's not-implemented error for the first stub it finds.
    """
    import pytest

    from ..autograder.exercises import get_session
    from ..autograder.loader import notebook_path
    from ..autograder.plugin import NAMESPACE_KEY
    from ..autograder.stubs import unwritten_exercises
    from ..paths import display_path

    if request.config.stash.get(NAMESPACE_KEY, None) is not None:
        pytest.skip(f"the real-server tests run under pytest (`pytest harness/session_{sessions[0]:02d}`): they "
                    f"serve your saved {what}")
    tree = request.config.getoption("impl") or os.environ.get("HARNESS_IMPL") or "sessions"
    for number in sessions:
        session = get_session(number)
        for name, line in unwritten_exercises(number, tree):
            raise NotImplementedError(f"exercise {session.number_of(name)} `{name}` (session {number:02d}) is not "
                                      f"implemented yet — {display_path(notebook_path(number, tree))}:{line}")
    return tree
