"""Generate the learner's notebooks from the reference ones (single source of truth).

``solutions/session_NN_*.py`` is the only file an author edits. ``sync`` turns it
into ``sessions/session_NN_*.py`` with nbgrader's ``ClearSolutions`` preprocessor
(used as a library, ``enforce_metadata=False`` since we mark regions, not cells),
names the exercise in each stub's ``NotImplementedError``, and clears outputs.
"""
from __future__ import annotations

import ast
import difflib
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .exercises import Session, get_session
from .loader import session_number
from ..paths import display_path, tree_dir

PLACEHOLDER = "__HARNESS_EXERCISE__"
CODE_STUB = f'# YOUR CODE HERE\nraise NotImplementedError("{PLACEHOLDER}")'
TEXT_STUB = "YOUR ANSWER HERE"
FORMAT = "py:percent"
BACKUP_DIR = "backup"
_STUB_LINE = re.compile(r"NotImplementedError\(\"exercise \d+ `(?P<name>[^`]+)`")  # a stub's line, as written


class StubError(Exception):
    """The solution notebook cannot be turned into a stub (a region outside an exercise...)."""


def _qualnames_by_line(tree: ast.AST) -> dict[int, str]:
    """Map each line inside a def/class body to the qualified name of the innermost one."""
    owner: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{child.name}" if prefix else child.name
                for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                    owner[line] = name
                visit(child, name)
            else:
                visit(child, prefix)

    visit(tree, "")
    return owner


def _name_stubs(source: str, session: Session, notebook: str) -> str:
    """Replace the placeholder in each stub with a message naming its exercise."""
    if PLACEHOLDER not in source:
        return source
    try:
        owners = _qualnames_by_line(ast.parse(source))
    except SyntaxError as err:
        raise StubError(f"{notebook}: a cell does not parse after clearing solutions: {err}") from None
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if PLACEHOLDER not in line:
            continue
        qualname = owners.get(i + 1)
        exercise = session.owner_of(qualname) if qualname else None
        if exercise is None:
            where = f"inside `{qualname}`" if qualname else "at module level"
            raise StubError(
                f"{notebook}: a solution region {where} belongs to no exercise of session "
                f"{session.number:02d}; add it to harness/session_{session.number:02d}/__init__.py")
        number = session.number_of(exercise.name)
        message = (f"exercise {number} `{exercise.name}` (session {session.number:02d}) is not implemented yet: "
                   "replace this line with your code")
        if qualname != exercise.name:
            message = message.replace(f"`{exercise.name}`", f"`{exercise.name}` ({qualname})", 1)
        lines[i] = line.replace(PLACEHOLDER, message.replace('"', "'"))
    return "\n".join(lines)


def stub_text(solution: Path, session: Session | None = None) -> str:
    """The learner's version of a solution notebook, as text."""
    # imported here: nbgrader and nbconvert take seconds to import, and `unwritten_exercises` (the
    # pipeline's and the server's check) needs neither
    import jupytext
    from nbconvert.preprocessors import ClearOutputPreprocessor
    from nbgrader.preprocessors import ClearSolutions

    solution = Path(solution)
    session = session or get_session(session_number(solution.name[8:10]))
    text = solution.read_text(encoding="utf-8")
    nb = jupytext.reads(text, fmt=FORMAT)
    clear = ClearSolutions(enforce_metadata=False, code_stub={"python": CODE_STUB}, text_stub=TEXT_STUB)
    try:
        nb, _ = clear.preprocess(nb, {})
    except RuntimeError as err:  # nested or unterminated regions
        raise StubError(f"{solution.name}: {err}") from None
    nb, _ = ClearOutputPreprocessor().preprocess(nb, {})
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = _name_stubs(cell.source, session, solution.name)
    return jupytext.writes(nb, fmt=FORMAT)


@dataclass
class SyncResult:
    written: list[Path]
    unchanged: list[Path]
    backups: list[Path]


def solution_notebooks() -> list[Path]:
    return sorted(tree_dir("solutions").glob("session_[0-9][0-9]_*.py"))


def _backup(path: Path) -> Path:
    folder = path.parent / BACKUP_DIR
    folder.mkdir(exist_ok=True)
    target = folder / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}"
    n = 1
    while target.exists():
        target = folder / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{n}{path.suffix}"
        n += 1
    shutil.copy2(path, target)
    return target


def sync(backup: bool = True, only: list[int] | None = None) -> SyncResult:
    """Write ``sessions/`` from ``solutions/``; a differing file is copied to ``sessions/backup/`` first."""
    out = tree_dir("sessions")
    out.mkdir(parents=True, exist_ok=True)
    result = SyncResult([], [], [])
    for solution in solution_notebooks():
        if only and int(solution.name[8:10]) not in only:
            continue
        target = out / solution.name
        text = stub_text(solution)
        if target.exists() and target.read_text(encoding="utf-8") == text:
            result.unchanged.append(target)
            continue
        if target.exists() and backup:
            result.backups.append(_backup(target))
        target.write_text(text, encoding="utf-8")
        result.written.append(target)
    return result


def check() -> list[str]:
    """Differences between ``sessions/`` and what ``sync`` would write (empty when in sync)."""
    problems = []
    out = tree_dir("sessions")
    expected = set()
    for solution in solution_notebooks():
        target = out / solution.name
        expected.add(target.name)
        want = stub_text(solution)
        if not target.exists():
            problems.append(f"{display_path(target)}: missing (run `python -m harness sync`)")
            continue
        have = target.read_text(encoding="utf-8")
        if have != want:
            diff = list(difflib.unified_diff(want.splitlines(), have.splitlines(), "generated", "on disk", n=0, lineterm=""))
            changed = sum(1 for d in diff if d[:1] in "+-" and d[:3] not in ("+++", "---"))
            first = next((d for d in diff if d.startswith("@@")), "")
            problems.append(f"{display_path(target)}: differs from its solution's stub ({changed} lines, first at {first})")
    for extra in sorted(out.glob("session_[0-9][0-9]_*.py")):
        if extra.name not in expected:
            problems.append(f"{display_path(extra)}: has no solution notebook in solutions/")
    return problems


def restore(session: int | str) -> tuple[Path, Path | None]:
    """Give the learner the pristine stub of one session; their file is kept in ``sessions/backup/``."""
    number = session_number(session)
    matches = [p for p in solution_notebooks() if p.name.startswith(f"session_{number:02d}_")]
    if not matches:
        raise StubError(f"session {number:02d} has no notebook yet")
    solution = matches[0]
    out = tree_dir("sessions")
    out.mkdir(parents=True, exist_ok=True)
    target = out / solution.name
    text = stub_text(solution)
    kept = None
    for old in sorted(out.glob(f"session_{number:02d}_*.py")):
        if old.read_text(encoding="utf-8") == text and old == target:
            continue
        kept = _backup(old)
        if old != target:
            old.unlink()
    target.write_text(text, encoding="utf-8")
    return target, kept


def unwritten_exercises(session: int, tree: str) -> list[tuple[str, int]]:
    """Exercises of ``session`` whose stub line is still in ``tree``'s notebook: ``[(name, line)]``.

    A cheap, static look at the file (no import): the pipeline uses it to skip a stage before it
    opens a W&B run or trains anything.
    """
    from .loader import NotebookError, notebook_path
    from .notebook import read_cells

    spec = get_session(session)
    try:
        path = notebook_path(session, tree)
    except NotebookError:
        return [(ex.name, 0) for ex in spec.exercises]
    lines, cells = read_cells(path)
    found = []
    for cell in cells:
        if not cell.is_export:
            continue
        for i in range(cell.start, cell.stop):
            match = _STUB_LINE.search(lines[i])
            if match and match.group("name") not in [name for name, _ in found]:
                found.append((match.group("name"), i + 1))
    return found

