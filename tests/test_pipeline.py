"""The main job, end to end on the synthetic smoke preset: every stage runs and reports its row."""
from __future__ import annotations

import json
import subprocess
import sys

from harness.paths import repo_root


def test_pipeline_smoke(tmp_path):
    env = {"HARNESS_DATA_DIR": str(tmp_path / "data"), "HARNESS_RUNS_DIR": str(tmp_path / "runs"),
           "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "harness", "pipeline", "--dataset", "synthetic", "--preset", "smoke",
                          "--output", str(tmp_path / "out")], capture_output=True, text=True, cwd=repo_root(),
                         env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    rows = result["metrics"]
    assert set(rows) >= {"popularity", "two-tower mean", "two-tower transformer"}, rows
    for name, metrics in rows.items():
        assert {"HR@10", "NDCG@10", "Recall@50"} <= set(metrics), name
        assert 0.0 <= metrics["NDCG@10"] <= metrics["HR@10"] <= 1.0
    assert "| two-tower transformer |" in (tmp_path / "out" / "metrics.md").read_text()
    assert result["skipped_stages"] == [], out.stdout[-2000:]


def test_unwritten_stages_are_skipped_before_anything_starts(tmp_path):
    """On the pristine stubs every stage is skipped with the exercise it needs, and no W&B run is opened."""
    from harness.autograder import stubs

    tree = tmp_path / "sessions"
    tree.mkdir()
    for solution in stubs.solution_notebooks():
        (tree / solution.name).write_text(stubs.stub_text(solution))
    env = {"HARNESS_DATA_DIR": str(tmp_path / "data"), "HARNESS_RUNS_DIR": str(tmp_path / "runs"),
           "HARNESS_SESSIONS_DIR": str(tree), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "harness", "pipeline", "--dataset", "synthetic", "--preset", "smoke",
                          "--impl", "sessions", "--output", str(tmp_path / "out")], capture_output=True, text=True,
                         cwd=repo_root(), env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {"popularity", "two-tower-mean", "two-tower-transformer"} <= set(result["skipped_stages"])
    assert result["metrics"] == {}
    assert "stage skipped: not written yet: exercise 2 `item_popularity` of session 01" in out.stdout, out.stdout[-2000:]
    assert not list((tmp_path / "runs").rglob("offline-run-*")), "a W&B run was opened for a stage that cannot run"
