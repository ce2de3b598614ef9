"""Where things live: the repository root, the two notebook trees, data and run folders.

Every other module asks here instead of guessing, so that tests can point a tree
somewhere else (``HARNESS_SESSIONS_DIR`` / ``HARNESS_SOLUTIONS_DIR``) without
touching the learner's files.
"""
from __future__ import annotations

import os
from pathlib import Path

TREES = ("sessions", "solutions")


def repo_root() -> Path:
    """The workbook checkout: ``HARNESS_ROOT`` if set, else the folder above this package."""
    env = os.environ.get("HARNESS_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parents[1]


def tree_dir(tree: str) -> Path:
    """Folder of a notebook tree: ``sessions`` (the learner's) or ``solutions`` (the reference)."""
    if tree not in TREES:
        raise ValueError(f"unknown notebook tree {tree!r}: use one of {', '.join(TREES)}")
    env = os.environ.get(f"HARNESS_{tree.upper()}_DIR")
    return Path(env).resolve() if env else repo_root() / tree


def data_dir() -> Path:
    """Root of ``raw/`` and ``processed/`` datasets (``HARNESS_DATA_DIR`` overrides)."""
    env = os.environ.get("HARNESS_DATA_DIR")
    return Path(env).resolve() if env else repo_root() / "data"


def runs_dir() -> Path:
    """Checkpoints, W&B offline runs and compile caches (git-ignored)."""
    env = os.environ.get("HARNESS_RUNS_DIR")
    return Path(env).resolve() if env else repo_root() / "runs"


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it, for short messages."""
    try:
        return str(Path(path).resolve().relative_to(repo_root()))
    except ValueError:
        return str(path)


def atomic_write(path: Path, write) -> Path:
    """``write(tmp_path)`` to a temporary file beside ``path``, then rename it into place.

    A reader sees the old file or the new one, never half of one, and a crash leaves no partial file.
    """
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
