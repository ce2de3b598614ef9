"""JupyterLab set-up: open the workbook's ``.py`` notebooks as notebooks on double click."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..paths import repo_root

OVERRIDES = {
    "@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}},
    # No "get notified about official Jupyter news?" pop-up and no update check: a learner's first
    # screen is the workbook, and the machine may have no internet anyway.
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


# nbgrader is used as a library to generate stubs; its course-management UI has no use here.
NBGRADER_SERVER = {"ServerApp": {"jpserver_extensions": {
    f"nbgrader.server_extensions.{name}": False
    for name in ("formgrader", "validate_assignment", "assignment_list", "course_list")}},
    "LabApp": {"check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}}
NBGRADER_LAB = {"disabledExtensions": {"@jupyter/nbgrader": True}}


def _merge_json(path: Path, update: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    current = json.loads(path.read_text()) if path.exists() else {}
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            current[key].update(value)
        else:
            current[key] = value
    path.write_text(json.dumps(current, indent=2))


def configure_lab() -> Path:
    """Write JupyterLab settings into this environment (never the user's home folder)."""
    prefix = Path(sys.prefix)
    overrides = prefix / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    _merge_json(overrides, OVERRIDES)
    # config.d files load in name order, so "zz-" wins over nbgrader's own file.
    _merge_json(prefix / "etc" / "jupyter" / "jupyter_server_config.d" / "zz-recsys-workbook.json", NBGRADER_SERVER)
    _merge_json(prefix / "etc" / "jupyter" / "labconfig" / "page_config.json", NBGRADER_LAB)
    return overrides


def launch_lab(extra: list[str]) -> int:
    args = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={repo_root()}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")  # Jupyter refuses to run as root without it (containers, cloud VMs)
    return subprocess.call(args + list(extra))
