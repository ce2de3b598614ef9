"""Arguments of ``python -m harness serve`` (kept free of heavy imports: the CLI builds every parser)."""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", default=None,
                   help="the model bundle folder (default: runs/bundles/ml-100k-laptop, written by `python -m harness "
                        "pipeline`)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; a container needs 0.0.0.0)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--impl", choices=["sessions", "solutions"], default="solutions",
                   help="whose sessions 14-15 serve: the reference (default) or your notebooks")
    p.add_argument("--upstream", choices=["sessions", "solutions"], default=None,
                   help="whose earlier sessions (02, 03, 06, 07) rebuild the models (default: HARNESS_UPSTREAM, "
                        "else the same as --impl)")
    p.add_argument("--batching", choices=["auto", "on", "off"], default="auto",
                   help="micro-batching (session 15): auto = on when session 15's exercises are written")
    p.add_argument("--max-batch", type=int, default=32, help="requests per batch at most (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=1.0,
                   help="a batch closes this long after its first request arrived (default 1 ms)")
    p.add_argument("--threads", type=int, default=1, help="torch and FAISS threads (default 1)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes, each with its own models")
    p.add_argument("--expect-fingerprint", default=None, help="refuse a bundle built from data with another fingerprint")
    p.add_argument("--allow-version-mismatch", action="store_true",
                   help="serve a bundle written with other torch / FAISS versions")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request (slower under load)")


def _unwritten(sessions: tuple[int, ...], tree: str) -> list[str]:
    from ..autograder.exercises import get_session
    from ..autograder.loader import notebook_path
    from ..autograder.stubs import unwritten_exercises
    from ..paths import display_path

    out = []
    for number in sessions:
        session = get_session(number)
        for name, line in unwritten_exercises(number, tree):
            where = f"{display_path(notebook_path(number, tree))}:{line}" if line else f"{tree}/"
            out.append(f"exercise {session.number_of(name)} `{name}` (session {number:02d}) is not implemented "
                       f"yet — {where}")
    return out


def run(args) -> int:
    from ..paths import display_path

    os.environ["HARNESS_UPSTREAM"] = args.upstream or os.environ.get("HARNESS_UPSTREAM") or args.impl
    missing = _unwritten((14,), args.impl)
    if missing:
        print("error: the server runs session 14's endpoint logic from " f"{args.impl}/, and some of it is not "
              "written yet:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    batching = args.batching == "on"
    if args.batching == "auto":
        batching = not _unwritten((15,), args.impl)
        if not batching:
            print(f"note: session 15 (micro-batching) is not written yet in {args.impl}/: serving one request at a "
                  "time", flush=True)
    elif batching:
        missing = _unwritten((15,), args.impl)
        if missing:
            print("error: --batching on needs session 15's micro-batching, not written yet:\n  " + "\n  ".join(missing),
                  file=sys.stderr)
            return 2
    from pathlib import Path

    from ..paths import runs_dir

    bundle = args.bundle or str(runs_dir() / "bundles" / "ml-100k-laptop")
    if not (Path(bundle) / "manifest.json").is_file():  # before the heavy imports: a quick, clear answer
        print(f"error: no model bundle at {display_path(Path(bundle))} (no manifest.json there): write one with "
              "`python -m harness pipeline` (its serving-bundle stage), or pass --bundle with the folder of an "
              "existing bundle", file=sys.stderr)
        return 2
    from .app import ServingSettings
    from .server import serve

    settings = ServingSettings(bundle_path=os.path.abspath(bundle), impl=args.impl, batching=batching,
                               max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                               expect_fingerprint=args.expect_fingerprint,
                               allow_version_mismatch=args.allow_version_mismatch, threads=args.threads)
    try:
        serve(settings, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level,
              access_log=args.access_log)
    except KeyboardInterrupt:
        pass
    print(f"server stopped ({display_path(bundle)})")
    return 0
