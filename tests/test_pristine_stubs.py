"""CI's promise: the generated stubs fail every exercise test as "not implemented", and nothing else."""
from __future__ import annotations

from harness.autograder import stubs
from harness.autograder.exercises import all_sessions


def test_every_exercise_test_fails_as_not_implemented(tmp_path, grade):
    for solution in stubs.solution_notebooks():
        (tmp_path / solution.name).write_text(stubs.stub_text(solution))
    sessions = all_sessions()
    run = grade(tmp_path, [f"harness/session_{s.number:02d}" for s in sessions], "--impl", "sessions")
    assert run.exit_code == 1, f"expected failing tests and no collection error, got exit code {run.exit_code}:\n{run.output[-3000:]}"
    wrong = {node: v for node, v in run.verdicts.items() if v["kind"] != "not implemented"}
    assert not wrong, "tests that do not fail as 'not implemented' on the pristine stubs:\n" + "\n".join(
        f"  {node}: {v['kind']}: {(v['message'] or '')[:200]}" for node, v in wrong.items())
    tested = {(v["session"], v["exercise"]) for v in run.verdicts.values()}
    untested = [f"{s.number:02d} {e.name}" for s in sessions for e in s.exercises if (s.number, e.name) not in tested]
    assert not untested, f"exercises with no test: {untested}"
