"""The workbook's performance report: ``python -m harness bench [--device cuda]``.

Every model of the pipeline, eager vs ``torch.compile`` and fp32 vs AMP, FAISS exact vs IVF, at
the pipeline's sizes, timed with session 13's ``benchmark``; trains nothing. Laid out by role:

    cases.py     what is measured: one Case per model or search, built from a session's code
    measure.py   how: variants (phase x precision x mode), compilation, timing, the time budget
    report.py    the result: runs/bench/<device>/bench.json and bench.md
    cli.py       the command line

From a notebook: ``run_bench(cases=["two-tower mean"], benchmark=benchmark, write=False)``.
Importing this package is cheap (no torch): the names below load their module on first use.
"""
MODES = ("eager", "default", "reduce-overhead", "max-autotune")
PHASES = ("inference", "train")
PRECISIONS = ("fp32", "amp")

_LAZY = {"CASES": "cases", "PLANNED": "cases", "Case": "cases", "CaseSkipped": "cases",
         "BenchResult": "measure", "amp_dtype_for": "measure", "modes_for": "measure", "run_bench": "measure"}

__all__ = ["MODES", "PHASES", "PRECISIONS", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
