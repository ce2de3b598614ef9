"""Helpers for the harness's own tests: run the autograder in-process on a notebook tree."""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.paths import repo_root

_SESSION_TEST_MODULE = re.compile(r"^harness\.session_\d\d\.(conftest|test_\w+)$")


@dataclass
class GraderRun:
    exit_code: int
    verdicts: dict  # nodeid -> {"session", "exercise", "kind", "message", "when"}
    output: str

    def kinds(self) -> set[str]:
        return {v["kind"] for v in self.verdicts.values()}


@pytest.fixture
def restore_env():
    """The plugin writes HARNESS_* variables into os.environ; give the outer run its own back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def grade(tmp_path, restore_env, capsys):
    """grade(sessions_dir, [test paths], *extra args) -> GraderRun, run in this process."""

    def run(sessions_dir: Path | None, paths: list[str], *extra: str) -> GraderRun:
        from harness.autograder.loader import clear_cache

        if sessions_dir is not None:
            os.environ["HARNESS_SESSIONS_DIR"] = str(sessions_dir)
        os.environ.pop("HARNESS_IMPL", None)
        clear_cache()
        report = tmp_path / f"verdicts-{len(list(tmp_path.glob('verdicts-*')))}.json"
        args = [*(str(repo_root() / p) for p in paths), "-p", "no:cacheprovider", "-q",
                "--rootdir", str(repo_root()), "--harness-report", str(report), *extra]
        # The graded run imports the sessions' test modules afresh: a wrong implementation that mutates a
        # module-level constant of a test file (a codes tensor passed in, say) must not leak into the tests
        # of this process that run after it.
        saved = {name: sys.modules.pop(name) for name in list(sys.modules) if _SESSION_TEST_MODULE.match(name)}
        try:
            code = pytest.main(args)
        finally:
            for name in [n for n in sys.modules if _SESSION_TEST_MODULE.match(n)]:
                del sys.modules[name]
            sys.modules.update(saved)
        out = capsys.readouterr().out
        clear_cache()
        verdicts = json.loads(report.read_text()) if report.exists() else {}
        return GraderRun(int(code), verdicts, out)

    return run


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to download fails the test: files placed in data/raw/ must be used as they are."""
    from harness.data import download as dl

    def refuse(url, dest, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(dl, "download", refuse)
