"""``python -m harness progress``: a table of sessions x exercises for the learner's tree."""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from .exercises import all_sessions
from ..paths import repo_root
from .plugin import exercise_rollup


def collect(impl: str = "sessions", sessions: list[int] | None = None) -> dict[tuple[int, str], str]:
    """Run the autograder quietly and return a status per (session, exercise)."""
    import pytest

    chosen = [s for s in all_sessions() if not sessions or s.number in sessions]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "verdicts.json"
        args = [str(s.tests_dir) for s in chosen] + [
            "--impl", impl, "-q", "--no-header", "-p", "no:cacheprovider", "--rootdir", str(repo_root()),
            "--harness-report", str(report)]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            pytest.main(args)
        verdicts = json.loads(report.read_text()) if report.exists() else {}
    return exercise_rollup(verdicts)


def render(status: dict[tuple[int, str], str], impl: str = "sessions", sessions: list[int] | None = None) -> str:
    lines = [f"workbook progress ({impl}/)", ""]
    done = total = 0
    for session in all_sessions():
        if sessions and session.number not in sessions:
            continue
        rows = []
        for i, ex in enumerate(session.exercises, 1):
            st = status.get((session.number, ex.name), "not run")
            total += 1
            if st == "passes":
                done += 1
                mark, word = "✓", "pass"
            elif st.startswith("not implemented"):
                mark, word = "·", "not started"
            else:
                mark, word = "✗", f"fail ({st})"
            rows.append(f"    {mark} {i}. {ex.name:<28} {word}")
        passed = sum(1 for ex in session.exercises if status.get((session.number, ex.name)) == "passes")
        lines.append(f"session {session.number:02d}  {session.title}  [{passed}/{len(session.exercises)}]")
        lines.extend(rows)
    lines += ["", f"{done} of {total} exercises pass"]
    return "\n".join(lines)
