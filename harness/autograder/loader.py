"""Load the ``export`` cells of a session notebook as a Python module.

    >>> s01 = load_session(1)                      # the learner's sessions/ tree
    >>> s01 = load_session(1, tree="solutions")    # the reference
    >>> s03 = upstream(3)                          # an earlier session's components

Only cells tagged ``export`` run; demo and training cells never do. The module is
compiled with the notebook's own path as its file name and with every other line
blanked, so tracebacks name the notebook and the real line. Modules are cached per
tree and reloaded when the file changes on disk. They are registered under
``harness.notebooks.<tree>.<file stem>`` and importable by that name, so that
pickling (DataLoader workers, torch.save) finds them in child processes too.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from .notebook import export_source
from ..paths import TREES, display_path, tree_dir

PACKAGE = "harness.notebooks"
UPSTREAM_ENV = "HARNESS_UPSTREAM"


class NotebookError(Exception):
    """A notebook could not be loaded: missing file, syntax error, error while importing."""

    def __init__(self, message: str, path: Path | None = None, line: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line


def session_number(session: int | str) -> int:
    """Accept 7, "7", "07" or "session_07"."""
    if isinstance(session, int):
        number = session
    else:
        digits = "".join(ch for ch in str(session) if ch.isdigit())
        if not digits:
            raise ValueError(f"not a session number: {session!r}")
        number = int(digits)
    if not 1 <= number <= 16:
        raise ValueError(f"sessions are numbered 01 to 16, got {session!r}")
    return number


def notebook_path(session: int | str, tree: str = "sessions") -> Path:
    """Path of ``session_NN_<topic>.py`` in a tree; a clear error when it is missing."""
    number = session_number(session)
    folder = tree_dir(tree)
    matches = sorted(folder.glob(f"session_{number:02d}_*.py"))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        what = f"{display_path(folder)}/session_{number:02d}_*.py"
        fix = (f"run `python -m harness restore {number:02d}` to get the pristine notebook back"
               if tree == "sessions" else "this session has no reference notebook yet")
        raise NotebookError(f"no notebook {what}: {fix}")
    names = ", ".join(p.name for p in matches)
    raise NotebookError(f"several notebooks for session {number:02d} in {display_path(folder)}: {names}; keep one")


@dataclass
class _Cached:
    module: types.ModuleType
    stamp: tuple[int, int]


_cache: dict[tuple[str, Path], _Cached] = {}


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _module_name(tree: str, path: Path) -> str:
    return f"{PACKAGE}.{tree}.{path.stem}"


def _exec_notebook(path: Path, name: str) -> types.ModuleType:
    source = export_source(path)
    try:
        code = compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as err:
        raise NotebookError(
            f"{display_path(path)}, line {err.lineno}: {type(err).__name__}: {err.msg}. "
            "Fix this line (and run the cell in Jupyter to check) before the tests can load your code.",
            path, err.lineno) from None
    module = types.ModuleType(name, f"export cells of {path.name}")
    module.__file__ = str(path)
    module.__loader__ = _NotebookLoader(path)
    module.__spec__ = importlib.machinery.ModuleSpec(name, module.__loader__, origin=str(path))
    parent_name, _, child = name.rpartition(".")
    parent = importlib.import_module(parent_name)  # so `import harness.notebooks.<tree>.<stem>` resolves too
    sys.modules[name] = module
    setattr(parent, child, module)
    try:
        exec(code, module.__dict__)
    except BaseException as err:
        sys.modules.pop(name, None)
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        line = _last_notebook_line(err, path)
        where = f"{display_path(path)}, line {line}" if line else display_path(path)
        raise NotebookError(
            f"{where}: the export cells raised {type(err).__name__}: {err}. "
            "Everything in an `export` cell runs on import; keep demos and training in untagged cells.",
            path, line) from err
    return module


def _last_notebook_line(err: BaseException, path: Path) -> int | None:
    line = None
    tb = err.__traceback__
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def load_session(session: int | str, tree: str | None = None, *, reload: bool = False) -> types.ModuleType:
    """The export cells of session ``session`` from ``tree`` (default: ``HARNESS_IMPL`` or sessions)."""
    tree = tree or os.environ.get("HARNESS_IMPL") or "sessions"
    path = notebook_path(session, tree).resolve()
    key = (tree, path)
    cached = _cache.get(key)
    if cached and not reload and cached.stamp == _stamp(path):
        return cached.module
    stamp = _stamp(path)
    module = _exec_notebook(path, _module_name(tree, path))
    _cache[key] = _Cached(module, stamp)
    return module


def upstream_tree() -> str:
    """Which tree earlier sessions' components come from: solutions unless the pipeline says otherwise."""
    tree = os.environ.get(UPSTREAM_ENV, "solutions")
    if tree not in TREES:
        raise ValueError(f"{UPSTREAM_ENV}={tree!r}: use one of {', '.join(TREES)}")
    return tree


def upstream(session: int | str) -> types.ModuleType:
    """An earlier session's export cells, for use inside a later notebook.

    Tests always take these from the reference, so a learner stuck in session 7
    can still do session 8; ``python -m harness pipeline --impl sessions`` sets
    ``HARNESS_UPSTREAM=sessions`` so the whole pipeline runs on the learner's code.
    """
    return load_session(session, upstream_tree())


def clear_cache() -> None:
    for (tree, path) in list(_cache):
        sys.modules.pop(_module_name(tree, path), None)
    _cache.clear()


class _NotebookLoader(importlib.abc.Loader):
    def __init__(self, path: Path | None):
        self.path = path

    def create_module(self, spec):  # noqa: D401 - importlib protocol
        if self.path is None:  # a package level: harness.notebooks or harness.notebooks.<tree>
            module = types.ModuleType(spec.name)
            module.__path__ = []
            return module
        tree = spec.name.split(".")[2]
        return load_session(int(self.path.name[8:10]), tree)

    def exec_module(self, module):
        pass


class _NotebookFinder(importlib.abc.MetaPathFinder):
    """Makes ``import harness.notebooks.solutions.session_03_two_tower`` work in any process."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != PACKAGE and not fullname.startswith(PACKAGE + "."):
            return None
        parts = fullname.split(".")[2:]
        if len(parts) == 0:
            return importlib.machinery.ModuleSpec(fullname, _NotebookLoader(None), is_package=True)
        if parts[0] not in TREES or len(parts) > 2:
            return None
        if len(parts) == 1:
            return importlib.machinery.ModuleSpec(fullname, _NotebookLoader(None), is_package=True)
        candidate = tree_dir(parts[0]) / f"{parts[1]}.py"
        if not candidate.is_file() or not parts[1].startswith("session_"):
            return None
        return importlib.machinery.ModuleSpec(fullname, _NotebookLoader(candidate.resolve()), origin=str(candidate))


def _install_finder() -> None:
    if not any(isinstance(f, _NotebookFinder) for f in sys.meta_path):
        sys.meta_path.append(_NotebookFinder())


_install_finder()
