"""The workbook's harness: notebook loader, stub generation, autograder, datasets, pipeline.

Importing ``harness`` is cheap (no torch); submodules load what they need.
"""
from .loader import NotebookError, load_session, upstream

__all__ = ["NotebookError", "load_session", "upstream"]
__version__ = "0.1.0"
