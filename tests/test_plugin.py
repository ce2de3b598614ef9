"""What the autograder says: not implemented, wrong, renamed, broken, stuck, and the reference passing."""
from __future__ import annotations

import pytest

from harness.autograder.exercises import get_session
from harness.paths import tree_dir

S01 = get_session(1)


def _tree(tmp_path, edit=lambda text: text, source="sessions"):
    text = (tree_dir(source) / S01.notebook).read_text()
    (tmp_path / S01.notebook).write_text(edit(text))
    return tmp_path


def test_reference_passes(grade):
    run = grade(None, ["harness/session_01"], "--impl", "solutions")
    assert run.exit_code == 0 and run.kinds() == {"pass"}


def test_stub_fails_with_one_line_per_test(tmp_path, grade):
    run = grade(_tree(tmp_path), ["harness/session_01"])
    assert run.exit_code == 1
    assert run.kinds() == {"not implemented"}
    for verdict in run.verdicts.values():
        assert verdict["message"].startswith(f"exercise {S01.number_of(verdict['exercise'])} `{verdict['exercise']}` is not implemented yet — ")
        assert "\n" not in verdict["message"] and "session_01_orientation.py:" in verdict["message"]
    assert "not implemented yet" in run.output and "Traceback" not in run.output


def test_renamed_function_fails_only_its_exercise(tmp_path, grade):
    tree = _tree(tmp_path, lambda t: t.replace("def item_popularity(", "def item_popularity_v2("), "solutions")
    run = grade(tree, ["harness/session_01"])
    by_exercise = {}
    for v in run.verdicts.values():
        by_exercise.setdefault(v["exercise"], set()).add(v["kind"])
    assert by_exercise["item_popularity"] == {"fail"}
    assert by_exercise["interaction_stats"] == {"pass"}
    message = next(v["message"] for v in run.verdicts.values() if v["exercise"] == "item_popularity")
    assert "did you rename or delete `item_popularity`?" in message


def test_syntax_error_is_reported_with_file_and_line_not_a_collection_error(tmp_path, grade):
    tree = _tree(tmp_path, lambda t: t.replace("def long_tail_share(counts", "def long_tail_share(counts,,"), "solutions")
    run = grade(tree, ["harness/session_01"])
    assert run.exit_code == 1  # tests failed; 2 would be an interrupted (collection) run
    assert run.kinds() == {"error"}
    line = next(i for i, l in enumerate((tree / S01.notebook).read_text().splitlines(), 1) if "counts,," in l)
    message = next(iter(run.verdicts.values()))["message"]
    assert f"session_01_orientation.py, line {line}: SyntaxError" in message


def test_infinite_loop_times_out_with_a_message(tmp_path, grade):
    def edit(text):
        return text.replace("    items = counts[1:].double()\n", "    while True:\n        pass\n")

    tree = _tree(tmp_path, edit, "solutions")
    import harness.autograder.plugin as plugin

    old = plugin.DEFAULT_TIME_LIMIT
    plugin.DEFAULT_TIME_LIMIT = 1.0
    try:
        run = grade(tree, ["harness/session_01"], "--exercise", "long_tail_share", "-x")
    finally:
        plugin.DEFAULT_TIME_LIMIT = old
    verdict = next(v for v in run.verdicts.values() if v["kind"] != "pass")
    assert verdict["kind"] == "timeout"
    assert "more than 1 s of CPU time" in verdict["message"] and "infinite loop" in verdict["message"]


def test_waiting_forever_is_caught_by_the_wall_clock_guard(tmp_path, grade):
    def edit(text):
        return text.replace("    items = counts[1:].double()\n", "    import time\n    time.sleep(3600)\n")

    tree = _tree(tmp_path, edit, "solutions")
    import harness.autograder.plugin as plugin

    old = plugin.DEFAULT_TIME_LIMIT, plugin.WALL_FACTOR
    plugin.DEFAULT_TIME_LIMIT, plugin.WALL_FACTOR = 0.5, 2.0
    try:
        run = grade(tree, ["harness/session_01"], "--exercise", "long_tail_share", "-x")
    finally:
        plugin.DEFAULT_TIME_LIMIT, plugin.WALL_FACTOR = old
    verdict = next(v for v in run.verdicts.values() if v["kind"] != "pass")
    assert verdict["kind"] == "timeout" and "waiting rather than computing" in verdict["message"]


def test_the_limit_counts_cpu_time_so_a_busy_machine_cannot_fail_a_right_answer(tmp_path, grade):
    """A right answer that sleeps (as if the cores were busy elsewhere) for longer than the limit still passes."""
    def edit(text):
        return text.replace("    items = counts[1:].double()\n", "    import time\n    time.sleep(1.5)\n    items = counts[1:].double()\n", 1)

    tree = _tree(tmp_path, edit, "solutions")
    import harness.autograder.plugin as plugin

    old = plugin.DEFAULT_TIME_LIMIT
    plugin.DEFAULT_TIME_LIMIT = 1.0
    try:
        run = grade(tree, ["harness/session_01"], "--exercise", "long_tail_share", "-k", "test_head_share")
    finally:
        plugin.DEFAULT_TIME_LIMIT = old
    assert run.verdicts and run.kinds() == {"pass"}, run.output[-1500:]


def test_graded_tests_run_torch_on_one_thread_and_restore_the_setting(tmp_path, grade):
    import torch

    before = torch.get_num_threads()
    probe = tmp_path / "probe.txt"
    tree = _tree(tmp_path, lambda t: t.replace("    items = counts[1:].double()\n",
                 f"    open({str(probe)!r}, 'w').write(str(torch.get_num_threads()))\n    items = counts[1:].double()\n", 1),
                 "solutions")
    grade(tree, ["harness/session_01"], "--exercise", "long_tail_share")
    assert probe.read_text() == "1"
    assert torch.get_num_threads() == before


def test_crash_in_learner_code_shows_the_notebook_line(tmp_path, grade):
    tree = _tree(tmp_path, lambda t: t.replace("    counts[0] = 0\n", "    counts[0] = counts[n_items + 5]\n"), "solutions")
    run = grade(tree, ["harness/session_01"], "--exercise", "item_popularity")
    message = next(v["message"] for v in run.verdicts.values() if v["kind"] == "fail")
    assert "raised IndexError" in message
    assert "session_01_orientation.py:" in message and "counts[0] = counts[n_items + 5]" in message


def test_exercise_summary_is_printed(tmp_path, grade):
    run = grade(_tree(tmp_path), ["harness/session_01"])
    assert "workbook: exercises (sessions/)" in run.output
    assert "1. interaction_stats" in run.output and "python -m harness hint 01" in run.output


def test_unmarked_test_in_a_session_folder_is_rejected(tmp_path, grade, monkeypatch):
    import harness.autograder.plugin as plugin

    class Item:
        nodeid = "harness/session_01/test_x.py::test_y"
        path = tree_dir("solutions").parent / "harness" / "session_01" / "test_x.py"

        def get_closest_marker(self, name):
            return None

    class Config:
        def getoption(self, name):
            return []

    with pytest.raises(pytest.UsageError, match="exercise"):
        plugin.pytest_collection_modifyitems(Config(), [Item()])
