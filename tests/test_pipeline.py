"""The main job, end to end on the synthetic smoke preset: every stage runs and reports its row."""
from __future__ import annotations

import json
import math
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
    markdown = (tmp_path / "out" / "metrics.md").read_text()
    assert "| two-tower transformer |" in markdown
    assert result["skipped_stages"] == [], out.stdout[-2000:]
    # the ranking track: the DLRM reranks the best retriever's candidates, with bootstrap intervals
    dlrm = [name for name in rows if "→ DLRM" in name]
    assert len(dlrm) >= 2 and any("no retrieval score" in name for name in dlrm), rows
    for name in dlrm:
        interval = result["intervals"][name]["NDCG@10"]
        assert interval["low"] <= rows[name]["NDCG@10"] <= interval["high"], (name, interval)
        difference = result["differences"][name]["NDCG@10"]
        assert difference["baseline"] in ("two-tower mean", "two-tower transformer"), difference
        assert difference["low"] <= difference["delta"] <= difference["high"], difference
        assert math.isclose(difference["delta"], rows[name]["NDCG@10"] - rows[difference["baseline"]]["NDCG@10"],
                            abs_tol=1e-6)
    assert "NDCG@10 95% CI" in markdown and "Δ NDCG@10" in markdown
    # cold-start and semantic IDs: every ranker on the cold and the warm set, with intervals
    for ranker in ("DLRM ids", "DLRM text", "DLRM text + ID dropout", "DLRM semantic IDs + ID dropout",
                   "DLRM text + semantic IDs + ID dropout"):
        for which in ("cold", "warm"):
            assert f"{ranker} ({which})" in rows and f"{ranker} ({which})" in result["intervals"], (ranker, which)
    # the capstone: the generative row and the other code set's row, on the same protocol
    assert "generative" in rows and any(name.startswith("generative (") for name in rows), rows


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
    assert {"popularity", "two-tower-mean", "two-tower-transformer", "dlrm"} <= set(result["skipped_stages"])
    assert result["metrics"] == {}
    assert "stage skipped: not written yet: exercise 2 `item_popularity` of session 01" in out.stdout, out.stdout[-2000:]
    assert not list((tmp_path / "runs").rglob("offline-run-*")), "a W&B run was opened for a stage that cannot run"
