"""Stub generation from the solutions, the sync check, and restore."""
from __future__ import annotations

import ast
import re
import shutil

import pytest

from harness.autograder import stubs
from harness.autograder.exercises import all_sessions
from harness.paths import tree_dir


@pytest.fixture
def sessions_copy(tmp_path, monkeypatch, restore_env):
    """A copy of sessions/ that tests may damage."""
    target = tmp_path / "sessions"
    shutil.copytree(tree_dir("sessions"), target, ignore=shutil.ignore_patterns("backup"))
    monkeypatch.setenv("HARNESS_SESSIONS_DIR", str(target))
    return target


def test_repository_is_in_sync():
    assert stubs.check() == []


def test_check_fails_after_a_hand_edit(sessions_copy):
    path = next(sessions_copy.glob("session_01_*.py"))
    path.write_text(path.read_text().replace("# YOUR CODE HERE", "# edited by hand", 1))
    problems = stubs.check()
    assert len(problems) == 1 and path.name in problems[0] and "differs" in problems[0]


def test_check_reports_missing_and_extra_files(sessions_copy):
    next(sessions_copy.glob("session_01_*.py")).unlink()
    (sessions_copy / "session_02_stray.py").write_text("# %%\n")
    problems = "\n".join(stubs.check())
    assert "missing" in problems and "session_02_stray.py" in problems


def test_cli_check_exit_codes(sessions_copy):
    from harness.cli import main

    assert main(["sync", "--check"]) == 0
    path = next(sessions_copy.glob("session_01_*.py"))
    path.write_text(path.read_text() + "\n# x\n")
    assert main(["sync", "--check"]) == 1


def test_stubs_name_their_exercise_and_keep_no_solution():
    for session in all_sessions():
        text = stubs.stub_text(tree_dir("solutions") / session.notebook)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        for i, ex in enumerate(session.exercises, 1):
            pattern = rf"exercise {i} `{ex.name}`( \([\w.]+\))? \(session {session.number:02d}\) is not implemented yet"
            assert re.search(pattern, text), ex.name
        ast.parse("\n".join(l for l in text.splitlines() if not l.startswith("# %")))


def test_solutions_are_in_canonical_jupytext_form():
    import jupytext

    for path in stubs.solution_notebooks():
        text = path.read_text()
        assert jupytext.writes(jupytext.reads(text, fmt="py:percent"), fmt="py:percent") == text, (
            f"{path.name} changes when jupytext rewrites it; open and save it in Jupyter, or run jupytext --to py:percent")


def test_region_outside_an_exercise_is_rejected(tmp_path):
    source = (tree_dir("solutions") / all_sessions()[0].notebook).read_text()
    bad = source.replace("# %% tags=[\"export\"]\nimport math\n",
                         "# %% tags=[\"export\"]\nimport math\n\n\ndef stray():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n", 1)
    path = tmp_path / all_sessions()[0].notebook
    path.write_text(bad)
    with pytest.raises(stubs.StubError, match="stray"):
        stubs.stub_text(path)


def test_sync_keeps_a_backup_of_what_it_overwrites(sessions_copy):
    path = next(sessions_copy.glob("session_01_*.py"))
    mine = path.read_text().replace("# YOUR CODE HERE", "# my work", 1)
    path.write_text(mine)
    result = stubs.sync()
    assert path in result.written and len(result.backups) == 1
    assert result.backups[0].read_text() == mine
    assert stubs.check() == []


def test_restore_keeps_the_learners_file(sessions_copy):
    path = next(sessions_copy.glob("session_01_*.py"))
    mine = path.read_text().replace("# YOUR CODE HERE", "# my work", 1)
    path.write_text(mine)
    target, kept = stubs.restore("01")
    assert target == path and kept is not None
    assert kept.read_text() == mine and kept.parent.name == "backup"
    assert stubs.check() == []
    # The backup is not mistaken for the session's notebook.
    from harness.autograder.loader import notebook_path

    assert notebook_path(1, "sessions") == path
