"""Plausible wrong implementations of each exercise, as edits of the reference notebook.

Each session has a module ``session_NN.py`` with ``MUTANTS``: a list of :class:`Mutant`.
``tests/test_mutants.py`` applies each one to a copy of the solution notebook and checks
that the autograder fails the exercise (a real failure, not "not implemented").
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    exercise: str
    mistake: str
    old: str  # must occur exactly once in the solution notebook
    new: str

    def apply(self, text: str) -> str:
        count = text.count(self.old)
        if count != 1:
            raise AssertionError(f"mutant '{self.mistake}': the snippet to replace occurs {count} times in the "
                                 "solution notebook (expected once); update the mutant")
        return text.replace(self.old, self.new)


def all_mutants() -> list[tuple[int, Mutant]]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("session_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            found += [(int(info.name[-2:]), m) for m in module.MUTANTS]
    return found
