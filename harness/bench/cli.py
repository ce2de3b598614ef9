"""``python -m harness bench``: the command line of the performance report (see ``harness.bench``)."""
from __future__ import annotations

import argparse
import shlex
import sys

from . import MODES, PHASES, PRECISIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when a GPU is visible, else cpu)")
    p.add_argument("--cases", nargs="*", help="only these cases (default: all; --list shows them)")
    p.add_argument("--impl", choices=["sessions", "solutions"], default="solutions",
                   help="whose code builds and times the models: the reference (default) or your notebooks")
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--preset", choices=["smoke", "laptop", "gpu"], default="laptop")
    p.add_argument("--phases", nargs="*", choices=PHASES, default=list(PHASES))
    p.add_argument("--precisions", nargs="*", choices=PRECISIONS, default=None,
                   help="fp32 and/or amp (default: both; on a CPU, amp at inference only)")
    p.add_argument("--modes", nargs="*", choices=MODES, default=None,
                   help="torch.compile modes (default: every mode the device runs; eager is the baseline)")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls per variant, after the first (compiling) one")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds: each times every variant of a model once (repeats / rounds calls)")
    p.add_argument("--batch", type=int, default=None, help="inference batch (default 256)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="end within this many minutes: variants expected to finish later are skipped "
                        "(default 9 on CUDA, 13 on CPU)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's own choice, one per core); recorded in the report")
    p.add_argument("--output", default=None, help="folder of bench.json and bench.md (default runs/bench/<device>/)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")


def run(args: argparse.Namespace) -> int:
    from .cases import CASES, PLANNED

    if args.list:
        for case in CASES:
            print(f"{case.name:<24} sessions {', '.join(f'{s:02d}' for s in case.sessions):<12} {case.description}")
        for name, (session, why) in PLANNED.items():
            if name not in {c.name for c in CASES}:
                print(f"{name:<24} session {session:02d}     (planned) {why}")
        return 0
    from ..env import pick_device
    from .measure import run_bench

    try:
        device = pick_device(args.device)
    except RuntimeError as err:  # --device cuda on a machine torch sees no GPU on
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    words = sys.argv[1:] if sys.argv[1:2] == ["bench"] else ["bench"]
    result = run_bench(args.cases or None, device=device, dataset=args.dataset, preset=args.preset, impl=args.impl,
                       phases=tuple(args.phases), precisions=tuple(args.precisions) if args.precisions else None,
                       modes=tuple(args.modes) if args.modes else None, warmup=args.warmup, repeats=args.repeats,
                       rounds=args.rounds, inference_batch=args.batch, budget_minutes=args.budget_minutes,
                       output=args.output, command="python -m harness " + " ".join(shlex.quote(w) for w in words))
    print()
    print(result.markdown())
    return 0
