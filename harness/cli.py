"""Command line of the workbook: ``python -m harness <command>``.

    env                         what this machine offers (device, AMP dtype, FAISS, text encoders)
    pipeline                    the main job: every stage built so far, ending in a metrics table
    data prepare NAME           download (where needed) and preprocess a dataset
    progress                    which exercises pass, per session
    hint NN [EXERCISE]          the hint of an exercise
    restore NN                  the pristine notebook of session NN (yours is kept in sessions/backup/)
    sync [--check]              (authors) regenerate sessions/ from solutions/
    train                       train a two-tower retriever (works under torchrun: DDP)
    lab                         JupyterLab with .py notebooks opening as notebooks
    bench [--device cuda]       the performance report: every model eager vs compiled, fp32 vs AMP, FAISS
    serve [--bundle PATH]       the recommender over HTTP (uvicorn, loopback by default): POST /recommend, GET /health
"""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_env(args) -> int:
    from .env import environment_report

    report = environment_report()
    print(json.dumps(report.as_dict(), indent=2) if args.json else report)
    return 0


def _cmd_sync(args) -> int:
    from .autograder import stubs

    if args.check:
        problems = stubs.check()
        if problems:
            print("sessions/ is not what `python -m harness sync` generates from solutions/:")
            for problem in problems:
                print(f"  {problem}")
            print("Edit solutions/ only, then run `python -m harness sync`.")
            return 1
        print(f"sessions/ is in sync with solutions/ ({len(stubs.solution_notebooks())} notebooks)")
        return 0
    result = stubs.sync(backup=not args.no_backup)
    from .paths import display_path

    for path in result.written:
        print(f"wrote {display_path(path)}")
    for path in result.backups:
        print(f"  (the previous version is kept as {display_path(path)})")
    print(f"{len(result.written)} written, {len(result.unchanged)} unchanged")
    return 0


def _cmd_restore(args) -> int:
    from .paths import display_path
    from .autograder.stubs import restore

    target, kept = restore(args.session)
    print(f"restored {display_path(target)} to its pristine state")
    if kept:
        print(f"your previous version is kept as {display_path(kept)}")
    return 0


def _cmd_hint(args) -> int:
    from .autograder.exercises import get_session

    session = get_session(args.session)
    chosen = [session.exercise(args.exercise)] if args.exercise else list(session.exercises)
    print(f"session {session.number:02d} — {session.title}")
    for ex in chosen:
        n = session.number_of(ex.name)
        print(f"\nexercise {n} `{ex.name}`" + (f": {ex.summary}" if ex.summary else ""))
        print(f"  hint: {ex.hint}")
    return 0


def _cmd_progress(args) -> int:
    from .autograder.progress import collect, render

    chosen = [int(s) for s in args.sessions] if args.sessions else None
    print(render(collect(args.impl, chosen), args.impl, chosen))
    return 0


def _cmd_pipeline(args) -> int:
    from .pipeline import run_pipeline

    run_pipeline(dataset=args.dataset, impl=args.impl, preset=args.preset, stages=args.stages,
                 output=args.output, retrain=args.retrain)
    return 0


def _cmd_data(args) -> int:
    from . import data

    if args.action == "benchmark":
        from .data.benchmark import run_benchmark

        run_benchmark(rows=args.rows, users=args.users, items=args.items)
        return 0
    if args.action == "list":
        for name, spec in data.DATASETS.items():
            presets = ", ".join(spec.presets)
            print(f"{name:<18} {spec.description} (presets: {presets})")
        return 0
    data.prepare(args.name, preset=args.preset, force=args.force)
    return 0


def _cmd_lab(args) -> int:
    from .autograder.lab import configure_lab, launch_lab

    configure_lab()
    if args.setup_only:
        return 0
    return launch_lab(args.extra)


def _cmd_train(args) -> int:
    from .pipeline.train import main as train_main

    return train_main(args.extra)


def _cmd_bench(args) -> int:
    from .bench.cli import run

    return run(args)


def _cmd_serve(args) -> int:
    from .serving.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("env", help="environment report")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("sync", help="(authors) regenerate sessions/ from solutions/")
    p.add_argument("--check", action="store_true", help="exit 1 and list the files when sessions/ is out of sync")
    p.add_argument("--no-backup", action="store_true", help="do not keep overwritten files in sessions/backup/")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("restore", help="pristine notebook of one session; yours is kept in sessions/backup/")
    p.add_argument("session", help="session number, e.g. 07")
    p.set_defaults(func=_cmd_restore)

    p = sub.add_parser("hint", help="hint of an exercise")
    p.add_argument("session")
    p.add_argument("exercise", nargs="?")
    p.set_defaults(func=_cmd_hint)

    p = sub.add_parser("progress", help="which exercises pass")
    p.add_argument("sessions", nargs="*", help="only these sessions")
    p.add_argument("--impl", choices=["sessions", "solutions"], default="sessions")
    p.set_defaults(func=_cmd_progress)

    p = sub.add_parser("pipeline", help="the main job: run every stage built so far and print the metrics table")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--impl", choices=["sessions", "solutions"], default="solutions",
                   help="whose code runs every stage: the reference (default) or your notebooks")
    p.add_argument("--preset", choices=["smoke", "laptop", "gpu"], default="laptop")
    p.add_argument("--stages", nargs="*", help="run only these stages")
    p.add_argument("--output", help="also write the metrics table (markdown) and JSON here")
    p.add_argument("--retrain", action="store_true",
                   help="train every model again, even where a cached one is still valid (same data, config and code)")
    p.set_defaults(func=_cmd_pipeline)

    p = sub.add_parser("data", help="datasets: list, prepare")
    dsub = p.add_subparsers(dest="action", required=True)
    dp = dsub.add_parser("prepare", help="download (if needed) and preprocess")
    dp.add_argument("name")
    dp.add_argument("--preset", default=None)
    dp.add_argument("--force", action="store_true", help="prepare again even if nothing changed")
    dsub.add_parser("list", help="known datasets")
    db = dsub.add_parser("benchmark", help="prepare a synthetic file the size of Amazon Electronics 5-core: time, peak memory")
    db.add_argument("--rows", type=int, default=15_500_000)
    db.add_argument("--users", type=int, default=1_600_000)
    db.add_argument("--items", type=int, default=368_000)
    p.set_defaults(func=_cmd_data)

    p = sub.add_parser("train", help="train a two-tower retriever (python -m harness train --help for its options)",
                       add_help=False)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("bench", help="performance report: models eager vs torch.compile, fp32 vs AMP, FAISS exact vs IVF")
    from .bench.cli import add_arguments as bench_arguments

    bench_arguments(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("serve", help="serve recommendations over HTTP (uvicorn; loopback unless --host says otherwise)")
    from .serving.cli import add_arguments as serve_arguments

    serve_arguments(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("lab", help="JupyterLab on the workbook, .py notebooks open as notebooks")
    p.add_argument("--setup-only", action="store_true", help="write the JupyterLab settings and exit")
    p.epilog = "Other arguments (--no-browser, --port 8890, ...) are passed to jupyter lab."
    p.set_defaults(func=_cmd_lab)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("lab", "train"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Exception as err:
        # Errors whose message already says what to do next: no traceback.
        if type(err).__name__ in ("DownloadError", "CorruptFileError", "NotebookError", "StubError", "BundleError"):
            print(f"error: {err}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
