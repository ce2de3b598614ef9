"""Load tests (Locust, headless) and API fuzzing (schemathesis) against a real server on loopback.

    corpus = write_request_corpus(bundle, "runs/serving/requests.json")      # valid bodies, seeded
    result = run_locust(server.url, corpus, users=32, seconds=10, out_dir="runs/serving/u32")
    result.p99, result.qps, result.failures        # Locust's final statistics (percentiles rounded by Locust)
    result.latencies                                # every request measured by the locustfile (exact)

    fuzz = run_schemathesis(server.url, max_examples=30)   # no 5xx, responses match the OpenAPI schema
    fuzz.ok, fuzz.summary

Both run as subprocesses, bounded in time (users, spawn rate and duration; examples and a time
budget), and only against loopback addresses: :func:`check_loopback` refuses anything else.
Locust monkey-patches the standard library with gevent, so it never runs inside this process.
"""
from __future__ import annotations

import csv
import ipaddress
import re
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import numpy as np

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def check_loopback(url: str) -> None:
    """Raise ValueError unless ``url`` points at this machine (127.0.0.0/8, ::1 or localhost)."""
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"load tests and fuzzing only target this machine's loopback address, not {host!r}: "
                         "start the server with `python -m harness serve` (127.0.0.1) and point at it")


def write_request_corpus(bundle, path: str | Path, n: int = 2000, *, k: int = 10, seed: int = 0,
                         history_share: float = 0.5, cold_share: float = 0.0) -> Path:
    """``n`` valid request bodies as a JSON list: known users, explicit histories, and cold visitors.

    A history is a prefix of a real user's sequence (random length, within the server's limit), so it
    looks like a visitor's session; ``k`` is the same for every request.
    """
    rng = np.random.default_rng(seed)
    limit = int(bundle.serving["max_history"])
    users = np.nonzero(np.diff(bundle.history_offsets[:bundle.n_users + 2])[1:] > 0)[0] + 1
    bodies = []
    for _ in range(n):
        r = rng.random()
        if r < cold_share:
            bodies.append({"k": k})
        elif r < cold_share + history_share:
            items = bundle.user_history(int(rng.choice(users)))[:limit]
            cut = int(rng.integers(1, len(items) + 1))
            bodies.append({"history": [int(i) for i in items[:cut]], "k": k})
        else:
            bodies.append({"user_id": int(rng.choice(users)), "k": k})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bodies))
    return path


@dataclass
class LoadResult:
    """One Locust run: Locust's own statistics (aggregated row of its CSV) and every measured request."""

    label: str
    users: int
    seconds: float
    requests: int
    failures: int
    qps: float  # requests per second, Locust's figure (after spawning, --reset-stats)
    p50: float  # milliseconds, Locust's percentiles (of its histogram: above 100 ms, 2 significant digits)
    p95: float
    p99: float
    mean: float
    max: float
    latencies_path: Path | None = None
    csv_prefix: Path | None = None
    log: str = ""
    returncode: int = 0
    _latencies: object = field(default=None, repr=False)

    @property
    def latencies(self):
        """pandas DataFrame, one row per measured request: start, latency_ms, ok, status, app_ms, queue_ms,
        model_ms, batch (the last four from the server's Server-Timing header; NaN when absent)."""
        import pandas as pd

        if self._latencies is None:
            self._latencies = (pd.read_csv(self.latencies_path) if self.latencies_path and self.latencies_path.is_file()
                               else pd.DataFrame(columns=["start", "latency_ms", "ok", "status", "app_ms", "queue_ms",
                                                          "model_ms", "batch"]))
        return self._latencies

    @property
    def window(self) -> float:
        """Seconds from the first measured request's start to the last one's end (what QPS divides by)."""
        lat = self.latencies
        if len(lat) == 0:
            return float(self.seconds)
        return float((lat["start"] + lat["latency_ms"] / 1e3).max() - lat["start"].min())

    def row(self) -> dict:
        return {"run": self.label, "users": self.users, "requests": self.requests, "failures": self.failures,
                "QPS": round(self.qps, 1), "p50 ms": self.p50, "p95 ms": self.p95, "p99 ms": self.p99}


def parse_locust_stats(csv_prefix: str | Path) -> dict:
    """The ``Aggregated`` row of Locust's ``<prefix>_stats.csv`` as numbers."""
    path = Path(f"{csv_prefix}_stats.csv")
    if not path.is_file():
        raise FileNotFoundError(f"Locust wrote no {path.name} (did it start? see its log)")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    agg = next((r for r in rows if r.get("Name") == "Aggregated"), rows[-1] if rows else None)
    if agg is None:
        raise ValueError(f"{path} has no rows")

    def num(key: str) -> float:
        value = agg.get(key, "")
        try:
            return float(value)
        except (TypeError, ValueError):
            return float("nan")

    return {"requests": int(num("Request Count") if np.isfinite(num("Request Count")) else 0),
            "failures": int(num("Failure Count") if np.isfinite(num("Failure Count")) else 0),
            "qps": num("Requests/s"), "p50": num("50%"), "p95": num("95%"), "p99": num("99%"),
            "mean": num("Average Response Time"), "max": num("Max Response Time")}


def _locust_percentile(response_times: dict, total: int, q: float) -> float:
    """Locust's own percentile of its response-time histogram (buckets rounded as Locust rounds them)."""
    keep = int(total * q)
    seen = 0
    for ms in sorted(response_times, reverse=True):
        seen += response_times[ms]
        if total - seen <= keep:
            return float(ms)
    return float("nan")


def parse_locust_json(prefix: str | Path) -> dict:
    """Locust's final statistics (``--json-file <prefix>``, written at exit), summed over its request names."""
    path = Path(f"{prefix}.json")
    if not path.is_file():
        raise FileNotFoundError(f"Locust wrote no {path.name} (did it start? see its log)")
    entries = json.loads(path.read_text())
    times: dict[float, int] = {}
    n = failures = 0
    total_ms, max_ms, starts, ends = 0.0, 0.0, [], []
    for e in entries:
        n += int(e.get("num_requests", 0))
        failures += int(e.get("num_failures", 0))
        total_ms += float(e.get("total_response_time", 0))
        max_ms = max(max_ms, float(e.get("max_response_time") or 0))
        for ms, count in (e.get("response_times") or {}).items():
            times[float(ms)] = times.get(float(ms), 0) + int(count)
        if e.get("start_time"):
            starts.append(float(e["start_time"]))
        if e.get("last_request_timestamp"):
            ends.append(float(e["last_request_timestamp"]))
    span = (max(ends) - min(starts)) if starts and ends else float("nan")
    return {"requests": n, "failures": failures, "qps": n / span if n and span > 0 else 0.0,
            "p50": _locust_percentile(times, n, 0.50), "p95": _locust_percentile(times, n, 0.95),
            "p99": _locust_percentile(times, n, 0.99), "mean": total_ms / n if n else float("nan"),
            "max": max_ms if n else float("nan")}


def run_locust(url: str, requests_path: str | Path, *, users: int, seconds: float, out_dir: str | Path,
               spawn_rate: float | None = None, label: str | None = None, seed: int = 0,
               timeout: float | None = None) -> LoadResult:
    """Locust, headless, as a subprocess: ``users`` closed-loop users for ``seconds`` against ``url``.

    Users are spawned at ``spawn_rate`` per second (default: all within a tenth of a second);
    statistics are reset once they all run (``--reset-stats``). The subprocess is killed after
    ``timeout`` seconds (default ``seconds + 60``).

    The numbers come from Locust's final statistics (``--json-file``, written at exit). Its CSV files
    (``--csv``) are written too, for a look at the history, but Locust rewrites ``_stats.csv`` once a
    second and not at exit, so a short run's CSV can miss its last second; it is only the fallback.
    """
    check_loopback(url)
    if not 1 <= users <= 1000 or not 0 < seconds <= 3600:
        raise ValueError("users must be in 1..1000 and seconds in (0, 3600]: a load test is bounded")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    label = label or f"{users} users"
    prefix = out_dir / "locust"
    latencies = out_dir / "latencies.csv"
    for stale in [*out_dir.glob("locust_*.csv"), out_dir / "locust.json"]:
        stale.unlink(missing_ok=True)
    latencies.unlink(missing_ok=True)
    run_time = max(1, int(round(seconds)))
    cmd = [sys.executable, "-m", "locust", "--headless", "-f", str(LOCUSTFILE), "--host", url.rstrip("/"),
           "-u", str(users), "-r", str(spawn_rate or 10 * users), "-t", f"{run_time}s", "--csv", str(prefix),
           "--json-file", str(prefix),
           "--reset-stats", "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    env = {**os.environ, "HARNESS_LOCUST_REQUESTS": str(Path(requests_path).resolve()),
           "HARNESS_LOCUST_LATENCIES": str(latencies), "HARNESS_LOCUST_SEED": str(seed), "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout or seconds + 60)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"Locust did not finish within {timeout or seconds + 60:g} s; its output ends with:\n"
                           f"{(err.stdout or '')[-1500:] if isinstance(err.stdout, str) else ''}") from None
    log = (proc.stdout or "") + (proc.stderr or "")
    try:
        stats = parse_locust_json(prefix)
    except (FileNotFoundError, ValueError):
        try:
            stats = parse_locust_stats(prefix)
        except (FileNotFoundError, ValueError) as err:
            raise RuntimeError(f"{err}; Locust exited with code {proc.returncode}, its output ends with:\n"
                               f"{log[-2000:]}") from None
    return LoadResult(label=label, users=users, seconds=run_time, latencies_path=latencies, csv_prefix=prefix,
                      log=log, returncode=proc.returncode, **stats)


def results_table(results: Sequence[LoadResult]) -> str:
    """A markdown table of load-test results."""
    lines = ["| run | users | requests | failures | QPS | p50 ms | p95 ms | p99 ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r.label} | {r.users} | {r.requests:,} | {r.failures} | {r.qps:,.0f} | {r.p50:.1f} | "
                     f"{r.p95:.1f} | {r.p99:.1f} |")
    return "\n".join(lines)


def markdown_table(rows: Sequence[dict], digits: int = 2) -> str:
    """A markdown table of dicts with the same keys (numbers rounded to ``digits``)."""
    if not rows:
        return ""
    keys = list(rows[0])

    def cell(v) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:,.{digits}f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "| " + " | ".join("---" for _ in keys) + " |"]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class FuzzResult:
    """A schemathesis run: its exit code (0 = every check passed), its output, and what it checked."""

    returncode: int
    output: str
    checks: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def summary(self) -> str:
        """schemathesis's report from its failures and summary on, without terminal escape codes."""
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.output)
        lines = [l for l in text.splitlines() if l.strip()]
        start = next((i for i, l in enumerate(lines) if "FAILURES" in l or "SUMMARY" in l), max(0, len(lines) - 25))
        return "\n".join(lines[start:])


FUZZ_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
               "response_schema_conformance")


def run_schemathesis(url: str, *, max_examples: int = 25, seconds: float | None = None, seed: int = 0,
                     checks: Sequence[str] = FUZZ_CHECKS, workers: int = 1, phases: str = "examples,coverage,fuzzing",
                     timeout: float | None = None) -> FuzzResult:
    """schemathesis against the server's ``/openapi.json``, in a subprocess, bounded in examples and time.

    The checks: no 5xx (``not_a_server_error``), every status and content type documented, every
    response body valid against its schema. Invalid requests are generated too (``--mode all``):
    each must get a documented 4xx. ``max_examples`` bounds the generated cases per operation and
    phase; ``seconds``, when given, is schemathesis's time budget (it then keeps fuzzing until the
    budget is spent); the subprocess is killed after ``timeout`` seconds either way.
    """
    check_loopback(url)
    exe = Path(sys.executable).with_name("schemathesis")
    cmd = ([str(exe)] if exe.is_file() else [sys.executable, "-m", "schemathesis.cli"])
    cmd += ["run", f"{url.rstrip('/')}/openapi.json", "--checks", ",".join(checks), "--max-examples", str(max_examples),
            "--seed", str(seed), "--workers", str(workers), "--phases", phases, "--mode", "all",
            "--request-timeout", "10", "--no-color", "--suppress-health-check", "all", "--generation-database", "none"]
    if seconds is not None:
        cmd += ["--max-time", str(max(1, int(seconds)))]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "100"}
    import tempfile

    with tempfile.TemporaryDirectory(prefix="schemathesis-") as scratch:  # its caches (.hypothesis/...) go here
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=scratch,
                                  timeout=timeout or (seconds or 60) + 90)
        except subprocess.TimeoutExpired as err:
            return FuzzResult(124, f"schemathesis did not finish in time\n{err.stdout or ''}", tuple(checks))
    return FuzzResult(proc.returncode, (proc.stdout or "") + (proc.stderr or ""), tuple(checks))


__all__ = ["FUZZ_CHECKS", "FuzzResult", "LOCUSTFILE", "LoadResult", "check_loopback", "markdown_table",
           "parse_locust_json", "parse_locust_stats",
           "results_table", "run_locust", "run_schemathesis", "write_request_corpus"]
