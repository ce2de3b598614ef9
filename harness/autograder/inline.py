"""Inline checks: run an exercise's autograder tests against the notebook's own objects.

In a notebook::

    from harness import Checker
    check = Checker(session=1, namespace=globals())
    ...
    check("item_popularity")      # right after the exercise cell

The very tests of ``pytest harness/session_01`` run, with ``nb`` bound to the
notebook's globals, so a learner sees the same verdict without leaving Jupyter.
A failure prints the tutor message and raises, so "Run all" stops at the first
exercise that is not done.
"""
from __future__ import annotations

import io
import contextlib

import pytest

from .exercises import get_session
from .plugin import NAMESPACE_KEY, VERDICTS_KEY
from ..paths import repo_root


class CheckFailed(AssertionError):
    """An inline check found a problem (the message lists which tests and why)."""


class _Bind:
    def __init__(self, namespace: dict):
        self.namespace = namespace
        self.verdicts: dict = {}

    def pytest_configure(self, config):
        config.stash[NAMESPACE_KEY] = self.namespace

    def pytest_unconfigure(self, config):
        self.verdicts = dict(config.stash.get(VERDICTS_KEY, {}))


class Checker:
    def __init__(self, session: int, namespace: dict):
        self.session = get_session(session)
        self.namespace = namespace

    def __call__(self, exercise: str, quiet: bool = False) -> None:
        ex = self.session.exercise(exercise)
        number = self.session.number_of(ex.name)
        bind = _Bind(self.namespace)
        args = [str(self.session.tests_dir), "--exercise", ex.name, "-p", "no:cacheprovider",
                "--capture=sys", "-q", "--no-header", "--rootdir", str(repo_root())]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = pytest.main(args, plugins=[bind])
        verdicts = list(bind.verdicts.values())
        if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not verdicts:
            raise RuntimeError(f"could not run the checks of `{ex.name}` (pytest exit code {code}):\n{out.getvalue()[-2000:]}")
        failed = [v for v in verdicts if v["kind"] not in ("pass", "skip")]
        if not failed:
            if not quiet:
                print(f"✓ exercise {number} `{ex.name}`: all {len(verdicts)} checks pass")
            return
        lines = [f"✗ exercise {number} `{ex.name}`: {len(failed)} of {len(verdicts)} checks fail"]
        seen = set()
        for v in failed:
            message = v["message"] or "(see pytest output)"
            if message in seen:
                continue
            seen.add(message)
            lines.append("  - " + message.replace("\n", "\n    "))
        lines.append(f"  stuck? python -m harness hint {self.session.number:02d} {ex.name}")
        raise CheckFailed("\n".join(lines))
