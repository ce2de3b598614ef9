"""progress, hint, env and the exit codes of the command line."""
from __future__ import annotations

import json
import subprocess
import sys

from harness.autograder import stubs
from harness.autograder.exercises import get_session
from harness.paths import repo_root, tree_dir


def test_progress_table(tmp_path, monkeypatch, restore_env):
    session = get_session(1)
    # exercise 2 solved, exercise 3 wrong, the rest untouched stubs
    stub = stubs.stub_text(tree_dir("solutions") / session.notebook)
    solved = stub.replace(
        "    # YOUR CODE HERE\n    raise NotImplementedError(\"exercise 2 `item_popularity` (session 01) is not implemented yet: replace this line with your code\")",
        "    counts = torch.bincount(item_ids.long(), minlength=n_items + 1)\n    counts[0] = 0\n    return counts")
    wrong = solved.replace(
        "    # YOUR CODE HERE\n    raise NotImplementedError(\"exercise 3 `long_tail_share` (session 01) is not implemented yet: replace this line with your code\")",
        "    return 0.5")
    assert wrong != solved != stub
    (tmp_path / session.notebook).write_text(wrong)
    monkeypatch.setenv("HARNESS_SESSIONS_DIR", str(tmp_path))
    from harness.autograder.progress import collect, render

    table = render(collect("sessions", [1]), sessions=[1])
    lines = {l.split(".")[1].split()[0]: l for l in table.splitlines() if l.strip() and l.strip()[0] in "✓✗·"}
    assert lines["item_popularity"].strip().startswith("✓") and "pass" in lines["item_popularity"]
    assert lines["long_tail_share"].strip().startswith("✗") and "fail" in lines["long_tail_share"]
    assert lines["interaction_stats"].strip().startswith("·") and "not started" in lines["interaction_stats"]
    assert "1 of 4 exercises pass" in table


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=repo_root())


def test_hint():
    out = _cli("hint", "01", "recommend_popular")
    assert out.returncode == 0 and "stable=True" in out.stdout and "exercise 4 `recommend_popular`" in out.stdout


def test_hint_unknown_exercise_is_a_clear_error():
    out = _cli("hint", "01", "nope")
    assert out.returncode == 2 and "has no exercise `nope`" in out.stderr


def test_env_json():
    out = _cli("env", "--json")
    report = json.loads(out.stdout)
    assert report["device"] == "cpu" and report["amp_dtype"] == "none (fp32)"
    assert report["faiss"]["installed"] and report["faiss"]["build"] == "cpu"


def test_lab_settings_open_py_notebooks_and_silence_the_news(tmp_path, monkeypatch):
    import json
    import sys

    from harness.autograder.lab import configure_lab

    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    overrides = json.loads(configure_lab().read_text())
    assert overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]["python"] == "Jupytext Notebook"
    assert overrides["@jupyterlab/apputils-extension:notification"] == {"fetchNews": "false", "checkForUpdates": False}
    server = json.loads((tmp_path / "etc/jupyter/jupyter_server_config.d/zz-recsys-workbook.json").read_text())
    assert server["LabApp"]["check_for_updates_class"] == "jupyterlab.NeverCheckForUpdate"
