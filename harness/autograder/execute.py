"""Run a percent notebook top to bottom in a Jupyter kernel (what CI does with the solutions)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient


def execute_notebook(path: Path, env: dict[str, str] | None = None, timeout: int = 900,
                     save_to: Path | None = None) -> nbformat.NotebookNode:
    """Execute every cell of ``path`` in a fresh ``python3`` kernel; raise on the first error.

    ``env`` is added to the kernel's environment (for instance ``WORKBOOK_PRESET=smoke``).
    ``save_to`` writes the executed notebook, outputs included, as ``.ipynb``.
    """
    nb = jupytext.read(path)
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        start = time.perf_counter()
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(Path(path).parent)}})
        client.execute()
        nb.metadata["execution_seconds"] = round(time.perf_counter() - start, 1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if save_to:
        nbformat.write(nb, save_to)
    return nb
