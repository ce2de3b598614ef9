"""The exercise manifest: one id ties the notebook text, the stub and the tests.

Each test folder ``harness/session_NN/`` declares its session in ``__init__.py``::

    SESSION = Session(1, "orientation", "Orientation and the system map", exercises=(
        Exercise("interaction_stats", hint="..."),
        ...
    ))

The exercise ``name`` is the function or class the learner writes in the notebook;
its number is its position in the manifest. Tests mark themselves with
``@pytest.mark.exercise("name")``; ``harness sync`` checks that every solution region
belongs to a listed exercise and names it in the stub's ``NotImplementedError``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from .loader import session_number

HARNESS_DIR = Path(__file__).resolve().parents[1]  # the session_NN/ test folders sit in the package root


@dataclass(frozen=True)
class Exercise:
    name: str
    hint: str
    summary: str = ""


@dataclass(frozen=True)
class Session:
    number: int
    slug: str
    title: str
    exercises: tuple[Exercise, ...] = field(default_factory=tuple)

    @property
    def notebook(self) -> str:
        return f"session_{self.number:02d}_{self.slug}.py"

    @property
    def tests_dir(self) -> Path:
        return HARNESS_DIR / f"session_{self.number:02d}"

    def exercise(self, name: str) -> Exercise:
        for ex in self.exercises:
            if ex.name == name:
                return ex
        known = ", ".join(f"`{e.name}`" for e in self.exercises)
        raise KeyError(f"session {self.number:02d} has no exercise `{name}` (its exercises: {known})")

    def number_of(self, name: str) -> int:
        return [e.name for e in self.exercises].index(self.exercise(name).name) + 1

    def owner_of(self, qualname: str) -> Exercise | None:
        """The exercise a function or method belongs to: ``Tower.forward`` belongs to ``Tower``."""
        parts = qualname.split(".")
        for i in range(len(parts), 0, -1):
            candidate = ".".join(parts[:i])
            for ex in self.exercises:
                if ex.name == candidate:
                    return ex
        return None


def get_session(session: int | str) -> Session:
    number = session_number(session)
    try:
        module = importlib.import_module(f"harness.session_{number:02d}")
    except ModuleNotFoundError:
        raise KeyError(f"session {number:02d} has no tests in the harness yet") from None
    return module.SESSION


def all_sessions() -> list[Session]:
    """Every session that has a test folder, in order."""
    root = HARNESS_DIR
    found = []
    for folder in sorted(root.glob("session_[0-9][0-9]")):
        if (folder / "__init__.py").is_file():
            found.append(get_session(int(folder.name[-2:])))
    return found
