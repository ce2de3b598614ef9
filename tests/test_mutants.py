"""Every plausible wrong implementation listed in tests/mutants/ is caught by the autograder."""
from __future__ import annotations

import pytest

from harness.autograder.exercises import get_session
from harness.paths import tree_dir

from .mutants import all_mutants

MUTANTS = all_mutants()


@pytest.mark.parametrize("session,mutant", MUTANTS, ids=[f"s{s:02d}-{m.exercise}-{m.mistake}" for s, m in MUTANTS])
def test_mutant_is_caught(session, mutant, tmp_path, grade):
    spec = get_session(session)
    solution = tree_dir("solutions") / spec.notebook
    (tmp_path / spec.notebook).write_text(mutant.apply(solution.read_text()))
    # -x: one failing test is enough to catch the mistake, and the rest of the exercise's tests need not run
    run = grade(tmp_path, [f"harness/session_{session:02d}"], "--impl", "sessions", "--exercise", mutant.exercise, "-x")
    assert run.verdicts, f"no test of `{mutant.exercise}` ran:\n{run.output[-1500:]}"
    caught = [v for v in run.verdicts.values() if v["kind"] in ("fail", "timeout")]
    assert caught, (f"the mistake '{mutant.mistake}' in `{mutant.exercise}` passes every test; "
                    "add a test that catches it")
    assert all(v["kind"] != "not implemented" for v in run.verdicts.values())


def test_every_exercise_has_a_mutant():
    from harness.autograder.exercises import all_sessions

    covered = {(s, m.exercise) for s, m in MUTANTS}
    missing = [f"session {s.number:02d} `{e.name}`" for s in all_sessions() for e in s.exercises
               if (s.number, e.name) not in covered]
    assert not missing, "exercises with no wrong implementation in tests/mutants/: " + ", ".join(missing)
