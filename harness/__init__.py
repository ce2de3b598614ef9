"""The workbook's harness, laid out by role:

    harness.autograder   loads notebooks, generates stubs, grades exercises (pytest plugin, inline checks)
    harness.data         datasets, all prepared into one schema
    harness.pipeline     the glue of each track and the stages of ``python -m harness pipeline``
    harness.evaluation   the full-catalog protocol every number is measured with
    harness.session_NN   each session's exercise manifest and tests

What a notebook types stays short: ``from harness import Checker, upstream``.
Importing ``harness`` is cheap (no torch, no pytest); submodules load what they need.
"""
from .autograder.loader import NotebookError, load_session, upstream

__all__ = ["Checker", "NotebookError", "load_session", "upstream"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Checker":  # imports pytest: only when a notebook asks for it
        from .autograder.inline import Checker

        return Checker
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
