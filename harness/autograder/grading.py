"""What the autograder knows about a test: its session, its exercise, and how it failed.

Shared by the pytest plugin (messages and the per-exercise summary), ``harness
progress`` and the inline checks in the notebooks.
"""
from __future__ import annotations

import re
import types
from dataclasses import dataclass
from pathlib import Path

from .checks import ExerciseFailure
from .exercises import Session, get_session
from .loader import NotebookError, load_session, notebook_path
from ..paths import display_path, tree_dir

STUB_MESSAGE = re.compile(r"exercise (?P<number>\d+) `(?P<name>[^`]+)`.*\(session (?P<session>\d\d)\) is not implemented yet")


class MissingName(AttributeError):
    """The notebook has no object by the name a test looks for."""


class ExerciseTimeout(Exception):
    """A test ran past its time limit (raised from a SIGALRM handler)."""


def session_of_path(path: Path) -> Session | None:
    """The session whose test folder ``harness/session_NN/`` holds ``path``."""
    for parent in Path(path).resolve().parents:
        if re.fullmatch(r"session_\d\d", parent.name) and parent.parent.name == "harness":
            try:
                return get_session(int(parent.name[-2:]))
            except KeyError:
                return None
    return None


class NotebookNamespace:
    """What tests see as ``nb``: the session's export cells, loaded on first use.

    A missing name fails that test only, with "did you rename or delete `X`?";
    a syntax error in the notebook fails each test with its file and line.
    """

    def __init__(self, session: Session, tree: str, namespace: dict | None = None):
        self._session = session
        self._tree = tree
        self._namespace = namespace
        self._module: types.ModuleType | None = None

    @property
    def inline(self) -> bool:
        """True in a notebook's inline check (objects live in the kernel, not in an importable module)."""
        return self._namespace is not None

    def _globals(self) -> dict:
        """The namespace the notebook's functions look names up in (for spies in tests)."""
        source = self._load()
        return source if isinstance(source, dict) else vars(source)

    def _load(self):
        if self._namespace is not None:
            return self._namespace
        if self._module is None:
            self._module = load_session(self._session.number, self._tree)
        return self._module

    @property
    def _where(self) -> str:
        if self._namespace is not None:
            return "this notebook"
        try:
            return display_path(notebook_path(self._session.number, self._tree))
        except NotebookError:
            return f"{self._tree}/{self._session.notebook}"

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        source = self._load()
        try:
            return source[name] if isinstance(source, dict) else getattr(source, name)
        except (KeyError, AttributeError):
            raise MissingName(
                f"{self._where} has no `{name}`: did you rename or delete `{name}`? The tests look it up by "
                "that name, and only cells tagged `export` are loaded, so keep it in its exercise cell."
            ) from None

    def __dir__(self):
        source = self._load()
        return list(source) if isinstance(source, dict) else dir(source)


@dataclass
class Verdict:
    """How one test ended, in the autograder's words."""

    kind: str  # "pass", "not implemented", "fail", "error", "skip", "timeout"
    message: str | None  # None: show pytest's own traceback


def _notebook_frames(tb: types.TracebackType | None) -> list[tuple[str, int, str]]:
    frames = []
    roots = {tree_dir("sessions"), tree_dir("solutions")}
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename)
        if path.suffix == ".py" and any(root in path.parents for root in roots):
            frames.append((display_path(path), tb.tb_lineno, tb.tb_frame.f_code.co_qualname))
        tb = tb.tb_next
    return frames


def _source_line(path: str, line: int) -> str:
    import linecache

    from ..paths import repo_root

    full = Path(path) if Path(path).is_absolute() else repo_root() / path
    return linecache.getline(str(full), line).strip()


def explain(err: BaseException, session: Session | None, exercise: str | None, where: str) -> Verdict:
    """Turn an exception raised by a test into one tutor-style message."""
    label = ""
    if session is not None and exercise is not None:
        label = f"exercise {session.number_of(exercise)} `{exercise}`"
    if isinstance(err, NotImplementedError):
        match = STUB_MESSAGE.search(str(err))
        frames = _notebook_frames(err.__traceback__)
        if match or frames:
            name = match.group("name") if match else exercise
            number = match.group("number") if match else (session.number_of(exercise) if session and exercise else "?")
            loc = f"{frames[-1][0]}:{frames[-1][1]}" if frames else where
            msg = f"exercise {number} `{name}` is not implemented yet — {loc}"
            if exercise and name != exercise:
                msg = f"{label} needs {msg}"
            return Verdict("not implemented", msg)
    if isinstance(err, ExerciseTimeout):
        return Verdict("timeout", f"{label or 'this test'}: {err}")
    if isinstance(err, NotebookError):
        return Verdict("error", str(err))
    if isinstance(err, MissingName):
        return Verdict("fail", f"{label}: {err}" if label else str(err))
    if isinstance(err, ExerciseFailure):
        return Verdict("fail", f"{label}: {err}" if label else str(err))
    frames = _notebook_frames(err.__traceback__)
    text = f"{type(err).__name__}: {err}"
    if len(text) > 600:
        text = text[:600] + " ..."
    if frames:
        lines = [f"{label or 'your code'} raised {text}"]
        for path, line, func in frames[-3:]:
            lines.append(f"  {path}:{line} in {func}")
            src = _source_line(path, line)
            if src:
                lines.append(f"      {src}")
        return Verdict("fail", "\n".join(lines))
    if isinstance(err, AssertionError):
        return Verdict("fail", f"{label}: {text}" if label else text)
    return Verdict("fail", None)  # let pytest show its own traceback: the error is in the test or the harness
