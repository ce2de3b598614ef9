"""Scale check: prepare a synthetic file as large as Amazon Electronics 5-core, in its published format.

    python -m harness data benchmark            # 15.5M ratings, 1.6M users, 368K items

The real 5-core file cannot be fetched everywhere, so this writes one of the same size
in the same format (gzip CSV ``user_id,parent_asin,rating,timestamp`` plus metadata
JSONL), then runs ``python -m harness data prepare amazon-electronics`` on it in a child
process and reports its wall time and peak resident memory (``ru_maxrss`` of the child).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..paths import runs_dir


def _peak_rss_gib(rusage) -> float:
    return rusage.ru_maxrss * (1 if sys.platform == "darwin" else 1024) / 2**30


def run_benchmark(rows: int = 15_500_000, users: int = 1_600_000, items: int = 368_000,
                  folder: Path | None = None, keep: bool = False) -> dict:
    from . import amazon
    from .synthetic import SyntheticConfig, amazon_meta_records, generate

    tmp = tempfile.TemporaryDirectory(dir=folder) if not keep else None
    root = Path(tmp.name) if tmp else Path(folder or tempfile.mkdtemp())
    raw_dir = root / "raw" / "amazon-electronics"
    config = replace(SyntheticConfig(), n_users=users, n_items=items, n_categories=40,
                     mean_length=1.02 * rows / users, min_length=5, seed=1)
    start = time.perf_counter()
    data = generate(config)
    frame = data.interactions.iloc[:rows]
    if len(frame) < rows:
        print(f"note: the generator produced {len(frame):,} rows, fewer than the {rows:,} asked for")
    ratings_path = amazon.write_ratings_csv_gz(frame, raw_dir / amazon.ratings_5core_url().rsplit("/", 1)[-1])
    amazon.write_meta_jsonl_gz(amazon_meta_records(data.items), raw_dir / amazon.meta_url().rsplit("/", 1)[-1])
    written = time.perf_counter() - start
    print(f"wrote {len(frame):,} ratings ({ratings_path.stat().st_size / 2**20:.0f} MiB gzip) and "
          f"{len(data.items):,} metadata records in {written:.0f} s", flush=True)
    n_rows = len(frame)
    del data, frame

    env = dict(os.environ, HARNESS_DATA_DIR=str(root))
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "harness", "data", "prepare", "amazon-electronics"], env=env)
    _, status, rusage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"prepare failed with exit code {os.waitstatus_to_exitcode(status)}")
    meta = json.loads((root / "processed" / "amazon-electronics" / "meta.json").read_text())
    result = {"rows_in_file": n_rows, "users": meta["n_users"], "items": meta["n_items"],
              "interactions": meta["n_interactions"], "prepare_seconds": round(seconds, 1),
              "peak_rss_gib": round(_peak_rss_gib(rusage), 2), "cpu_count": os.cpu_count()}
    out = runs_dir() / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "amazon-scale.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if tmp:
        tmp.cleanup()
    return result
