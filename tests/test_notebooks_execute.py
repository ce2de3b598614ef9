"""The reference notebooks run top to bottom in a real Jupyter kernel, on the synthetic smoke preset (as in CI).

On MovieLens-100K with the laptop preset they are run by hand; their figures are in the README.
"""
from __future__ import annotations

import pytest

from harness.autograder import stubs
from harness.autograder.execute import execute_notebook
from harness.paths import runs_dir

NOTEBOOKS = stubs.solution_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_solution_notebook_executes(path):
    out = runs_dir() / "executed"
    out.mkdir(parents=True, exist_ok=True)
    nb = execute_notebook(path, env={"WORKBOOK_DATASET": "synthetic", "WORKBOOK_PRESET": "smoke", "WANDB_MODE": "disabled",
                                     "HF_HUB_OFFLINE": "1"},
                          save_to=out / f"{path.stem}.ipynb")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    checks = [o["text"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("name") == "stdout" and "✓ exercise" in o.get("text", "")]
    assert checks, "the notebook ran no inline check"
