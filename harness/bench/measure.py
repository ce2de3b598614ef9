"""How ``python -m harness bench`` measures: variants, compilation, timing, and the run itself.

Every model case is timed in *variants*: a phase (``inference``: a forward under ``no_grad``;
``train``: forward, backward and an AdamW step), a precision (``fp32``, or ``amp``: autocast to
the device's mixed-precision dtype, see :func:`amp_dtype_for`) and a mode (``eager``, or
``torch.compile(..., fullgraph=True)`` in ``default``, ``reduce-overhead`` or ``max-autotune``,
see :func:`modes_for`). Times come from session 13's ``benchmark`` (the reference's, or the
learner's with ``--impl sessions``): untimed warm-up calls, the device synchronised, many
repeats, median and IQR. The first call of each variant is timed on its own: it is where a
compiled model compiles. Ratios are measured within one run, variant after variant.

Variants run in priority order (fp32 inference first, max-autotune last), and a variant that
would not finish within the time budget (its compile estimated from this run's earlier compiles
of the same model) is skipped with that reason, so that the command ends in its budget.
"""
from __future__ import annotations

import contextlib
import copy
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from ..paths import runs_dir
from . import MODES, PHASES, PRECISIONS
from .cases import INFERENCE_BATCH, BenchContext, Built, CaseSkipped, Workload, find_cases

CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")  # Inductor's modes that record CUDA graphs
DEFAULT_BUDGET_MINUTES = {"cuda": 9.0, "cpu": 13.0}  # the run must end by then: later variants are skipped


# --- what a device offers ---------------------------------------------------------------------------

def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (AVX-512 BF16 or AMX), not by emulation."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_dtype_for(device: torch.device | str) -> tuple[torch.dtype | None, str]:
    """The autocast dtype the bench measures as ``amp`` on ``device``, or None, with the reason.

    CUDA: bf16 where the GPU supports it (Ampere and newer), else fp16 (trained with a GradScaler).
    CPU: bf16 when the CPU runs it natively; elsewhere autocast would be emulated, slower than fp32,
    and not worth a row. (Training on a CPU stays fp32 in the workbook: ``harness.env.amp_dtype``.)
    """
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "bf16 autocast (the GPU supports bf16)"
        return torch.float16, "fp16 autocast, GradScaler in training (this GPU has no bf16)"
    if device.type == "cpu":
        if cpu_has_native_bf16():
            return torch.bfloat16, "bf16 autocast (native on this CPU: AVX-512 BF16 or AMX)"
        return None, "this CPU has no native bf16: autocast would be emulated, slower than fp32"
    return None, f"no mixed-precision measurement on {device.type}"


def precision_label(dtype: torch.dtype | None) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def modes_for(device: torch.device | str, requested: tuple[str, ...] | None = None) -> list[tuple[str, str | None]]:
    """``(mode, reason it is skipped or None)`` for each mode, on ``device``.

    ``reduce-overhead`` records CUDA graphs: CUDA only. ``max-autotune`` runs on CUDA; on a CPU it
    benchmarks C++ matrix-product templates at a large compile cost, so it runs only when asked for
    (``--modes ... max-autotune``).
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    out = []
    for mode in requested or MODES:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
        reason = None
        if mode == "reduce-overhead" and not cuda:
            reason = "CUDA graphs need a CUDA device (on a CPU this mode is the default mode)"
        elif mode == "max-autotune" and not cuda and not (requested and "max-autotune" in requested):
            reason = ("on a CPU it benchmarks C++ GEMM templates at a large compile cost: run only when asked for "
                      "(--modes eager default max-autotune)")
        out.append((mode, reason))
    return out


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast(device.type, dtype)``, or nothing for fp32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 training (its gradients underflow without one); None for bf16 and fp32."""
    from ..env import needs_grad_scaler

    return torch.amp.GradScaler(device.type) if needs_grad_scaler(dtype) else None


def step_marker(device: torch.device, mode: str) -> Callable[[], None]:
    """What to call before each call of a model compiled in ``mode``.

    With CUDA graphs, a replay overwrites the outputs of the previous one; marking the start of each
    step tells the CUDA-graph trees that the previous outputs are no longer used.
    """
    if device.type == "cuda" and mode in CUDAGRAPH_MODES:
        return torch.compiler.cudagraph_mark_step_begin
    return lambda: None


def compile_module(module: torch.nn.Module, mode: str, *, backend: str = "inductor",
                   compile_fn: Callable = torch.compile) -> Callable:
    """``torch.compile(module, fullgraph=True, mode=...)``; another ``backend`` (tests) ignores the mode."""
    if mode == "eager":
        return module
    kwargs: dict[str, Any] = {"fullgraph": True}
    if backend == "inductor":
        if mode != "default":
            kwargs["mode"] = mode
    else:
        kwargs["backend"] = backend
    return compile_fn(module, **kwargs)


# --- one variant ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    phase: str
    precision: str  # "fp32" or "amp"
    mode: str


def plan(phases, precisions, modes, amp_phases=PHASES) -> list[list[Variant]]:
    """Variants in tiers, most important first: fp32 inference, AMP inference, training, then the heavy modes.

    ``amp_phases``: the phases AMP is measured in (on a CPU by default only inference, see :func:`run_bench`).
    """
    def wanted(phase, precision):
        return precision in precisions and (precision != "amp" or phase in amp_phases)

    light = [m for m in modes if m in ("eager", "default")]
    heavy = [m for m in modes if m not in ("eager", "default")]
    tiers = []
    for phase in [p for p in PHASES if p in phases]:
        for precision in [p for p in PRECISIONS if wanted(phase, p)]:
            tiers.append([Variant(phase, precision, m) for m in light])
    for mode in heavy:
        for phase in [p for p in PHASES if p in phases]:
            tiers.append([Variant(phase, precision, mode) for precision in PRECISIONS if wanted(phase, precision)])
    return [t for t in tiers if t]


def _first_tensor(out: Any) -> torch.Tensor | None:
    if torch.is_tensor(out):
        return out
    if isinstance(out, (tuple, list)) and out:
        return _first_tensor(out[0])
    if isinstance(out, dict) and out:
        return _first_tensor(next(iter(out.values())))
    return None


@dataclass
class Prepared:
    """A variant ready to time: ``call()`` runs it once; its first call (the compilation) is already done."""

    call: Callable[[], Any]
    first_call_s: float
    output: torch.Tensor | None  # inference: the output (float32 copy); train: the first loss


def prepare_inference(workload: Workload, mode: str, dtype: torch.dtype | None, *, device: torch.device,
                      synchronize: Callable, backend: str = "inductor", compile_fn: Callable = torch.compile) -> Prepared:
    """``workload.module(*inputs)`` under ``no_grad`` (and autocast), compiled in ``mode``, called once."""
    module = workload.module.eval()
    runner = compile_module(module, mode, backend=backend, compile_fn=compile_fn)
    mark = step_marker(device, mode)

    def call():
        mark()
        with torch.no_grad(), autocast(device, dtype):
            return runner(*workload.inputs)

    start = time.perf_counter()
    out = _first_tensor(call())
    out = out.detach().float().clone() if out is not None else None  # a CUDA-graph replay would overwrite it
    synchronize(device)
    return Prepared(call, time.perf_counter() - start, out)


def prepare_train_step(workload: Workload, mode: str, dtype: torch.dtype | None, *, device: torch.device,
                       synchronize: Callable, backend: str = "inductor", compile_fn: Callable = torch.compile) -> Prepared:
    """One training step: loss = module(*inputs) (under autocast), backward (scaled for fp16), AdamW step.

    Each variant trains its own copy of the module, so every variant starts from the same weights.
    """
    model = copy.deepcopy(workload.module).train()  # the case built it on the device
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = make_scaler(device, dtype)
    runner = compile_module(model, mode, backend=backend, compile_fn=compile_fn)
    mark = step_marker(device, mode)

    def step():
        mark()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = runner(*workload.inputs)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss

    start = time.perf_counter()
    loss = step().detach().float().clone()
    synchronize(device)
    return Prepared(step, time.perf_counter() - start, loss)


def time_inference(workload: Workload, mode: str, dtype: torch.dtype | None, *, device: torch.device,
                   benchmark: Callable, synchronize: Callable, warmup: int, repeats: int, backend: str = "inductor",
                   compile_fn: Callable = torch.compile) -> tuple[dict, float, torch.Tensor | None]:
    """(benchmark result, seconds of the first call, output) of one inference variant on its own."""
    torch._dynamo.reset()
    p = prepare_inference(workload, mode, dtype, device=device, synchronize=synchronize, backend=backend,
                          compile_fn=compile_fn)
    return benchmark(p.call, device=device, warmup=warmup, repeats=repeats), p.first_call_s, p.output


def time_train_step(workload: Workload, mode: str, dtype: torch.dtype | None, *, device: torch.device,
                    benchmark: Callable, synchronize: Callable, warmup: int, repeats: int, backend: str = "inductor",
                    compile_fn: Callable = torch.compile) -> tuple[dict, float, torch.Tensor | None]:
    """(benchmark result, seconds of the first call, first loss) of one training-step variant on its own."""
    torch._dynamo.reset()
    p = prepare_train_step(workload, mode, dtype, device=device, synchronize=synchronize, backend=backend,
                           compile_fn=compile_fn)
    return benchmark(p.call, device=device, warmup=warmup, repeats=repeats), p.first_call_s, p.output


def summarize(times_ms: list[float]) -> dict:
    """Median, IQR, mean, min and max of samples in ms (rounds of ``benchmark`` pooled)."""
    t = np.asarray(times_ms, dtype=np.float64)
    q25, q50, q75 = np.percentile(t, [25, 50, 75])
    return {"median_ms": float(q50), "iqr_ms": float(q75 - q25), "mean_ms": float(t.mean()),
            "min_ms": float(t.min()), "max_ms": float(t.max())}


def max_abs_diff(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    if a is None or b is None or a.shape != b.shape:
        return None
    finite = torch.isfinite(a) & torch.isfinite(b)  # -inf padding columns compare equal
    if not bool((torch.isfinite(a) == torch.isfinite(b)).all()):
        return float("inf")
    return float((a[finite] - b[finite]).abs().max()) if bool(finite.any()) else 0.0


# --- the run ----------------------------------------------------------------------------------------

@dataclass
class BenchResult:
    """Everything a run measured; :mod:`harness.bench.report` turns it into JSON and markdown."""

    meta: dict
    cases: list[dict] = field(default_factory=list)  # name, status, reason, weights, notes, labels
    rows: list[dict] = field(default_factory=list)  # one per model variant
    search: list[dict] = field(default_factory=list)  # one per index
    serving: list[dict] = field(default_factory=list)  # one per batch size of the in-process serving path
    graph_breaks: list[dict] = field(default_factory=list)  # one per (case, phase)

    def headline(self) -> dict[str, float]:
        """Compiled (default mode) vs eager speed-up of each model, inference, fp32, from this run."""
        return {r["case"]: r["speedup"] for r in self.rows
                if r["status"] == "ok" and r["phase"] == "inference" and r["precision"] == "fp32"
                and r["mode"] == "default" and r.get("speedup") is not None}

    def to_dict(self) -> dict:
        from .report import to_dict

        return to_dict(self)

    def markdown(self) -> str:
        from .report import to_markdown

        return to_markdown(self)


def _log_row(log: Callable[[str], None], row: dict) -> None:
    where = f"{row['case']} | {row['phase']} | {row['precision']} | {row['mode']}"
    if row["status"] != "ok":
        log(f"   {where}: {row['status']} ({row['reason']})")
        return
    ratio = f", {row['speedup']:.2f}x eager" if row.get("speedup") is not None and row["mode"] != "eager" else ""
    log(f"   {where}: {row['median_ms']:.3f} ms (IQR {row['iqr_ms']:.3f}){ratio}, first call {row['first_call_s']:.2f} s")


def _checked_report(report_fn: Callable, workload: Workload, phase: str) -> dict:
    module = workload.module
    was = module.training
    try:
        if phase == "inference":
            module.eval()
            with torch.no_grad():
                return report_fn(module, *workload.inputs)
        module.train()
        return report_fn(module, *workload.inputs)
    except Exception as err:  # noqa: BLE001 - the report must not stop the bench
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"}
    finally:
        module.train(was)


def run_bench(cases: list[str] | None = None, *, device: torch.device | str | None = None,
              dataset: str = "ml-100k", preset: str = "laptop", impl: str | None = None,
              phases: tuple[str, ...] = PHASES, precisions: tuple[str, ...] | None = None,
              modes: tuple[str, ...] | None = None, warmup: int = 5, repeats: int = 30, rounds: int = 3,
              inference_batch: int | None = None, budget_minutes: float | None = None,
              benchmark: Callable | None = None, graph_break_report: Callable | None = None,
              synchronize: Callable | None = None, backend: str = "inductor", compile_fn: Callable = torch.compile,
              write: bool = True, output: str | os.PathLike | None = None, command: str | None = None,
              log: Callable[[str], None] = print) -> BenchResult:
    """Build the cases, measure every variant that applies, and (``write=True``) write the report.

    Args:
        cases: case names (``harness.bench.cases.CASES``); None: all.
        device: default ``harness.env.pick_device()``.
        impl: the notebook tree every session's code comes from; None: ``HARNESS_UPSTREAM`` (solutions).
        phases, precisions, modes: what to measure. Modes default: every mode the device runs. Precisions default:
            fp32 and AMP, except that on a CPU AMP is measured at inference only (the workbook trains in fp32 on
            CPUs; bf16 training steps there cost minutes of compilation); given explicitly, they apply to every phase.
        benchmark, graph_break_report, synchronize: the timer, the graph-break report and the device wait;
            default: session 13's, from ``impl`` (``synchronize`` from the reference when only the others are given).
        warmup, repeats, rounds: per variant, ``repeats`` timed calls in ``rounds`` interleaved rounds (each round
            times every variant of a group once, after ``warmup`` untimed calls in the first round, one later);
            a training step, slow, gets half the repeats and at most 3 warm-up calls.
        budget_minutes: the run ends within this: a variant expected to finish later (its compile estimated from
            this run's earlier compiles of the same model) is skipped, with the reason; default 9 on CUDA, 13 elsewhere.
        backend: ``torch.compile`` backend ("inductor"; tests use "eager" to check the plumbing quickly).
        output: the report's folder; default ``runs/bench/<device>/``.

    Returns:
        a :class:`BenchResult`.
    """
    from ..autograder.loader import upstream_tree
    from ..env import pick_device

    started = time.perf_counter()
    device = pick_device(str(device) if device is not None else None)  # a clear error for a missing GPU
    impl = impl or upstream_tree()
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(runs_dir() / "inductor-cache"))  # in the git-ignored runs/
    saved_upstream = os.environ.get("HARNESS_UPSTREAM")
    os.environ["HARNESS_UPSTREAM"] = impl  # every session's components from the same tree, as the pipeline does
    try:
        return _run_bench(cases, device=device, dataset=dataset, preset=preset, impl=impl, phases=phases,
                          precisions=precisions, modes=modes, warmup=warmup, repeats=repeats, rounds=rounds,
                          inference_batch=inference_batch, budget_minutes=budget_minutes, benchmark=benchmark,
                          graph_break_report=graph_break_report, synchronize=synchronize, backend=backend,
                          compile_fn=compile_fn, write=write, output=output, command=command, log=log,
                          started=started)
    finally:
        if saved_upstream is None:
            os.environ.pop("HARNESS_UPSTREAM", None)
        else:
            os.environ["HARNESS_UPSTREAM"] = saved_upstream


def _session_13_timer(impl: str, needed: list[str]):
    """Session 13's export cells from ``impl``, after checking that the exercises the bench calls are written."""
    from ..autograder.loader import NotebookError, load_session

    if impl == "sessions":
        from ..autograder.stubs import unwritten_exercises

        stubs = dict(unwritten_exercises(13, impl))
        missing = [f"`{name}` (sessions/session_13_compile.py:{stubs[name]})" for name in needed if name in stubs]
        if missing:
            raise NotebookError(f"the bench times with your session-13 code, and {', '.join(missing)} is not written "
                                "yet: write it, or run the bench with --impl solutions")
    return load_session(13, impl)


def _run_bench(cases, *, device, dataset, preset, impl, phases, precisions, modes, warmup, repeats, rounds,
               inference_batch, budget_minutes, benchmark, graph_break_report, synchronize, backend, compile_fn,
               write, output, command, log, started) -> BenchResult:
    from ..autograder.loader import load_session

    s13 = None
    needed = [name for name, given in (("benchmark", benchmark), ("graph_break_report", graph_break_report)) if not given]
    if needed:
        s13 = _session_13_timer(impl, needed)
    benchmark = benchmark or s13.benchmark
    graph_break_report = graph_break_report or s13.graph_break_report
    synchronize = synchronize or (s13 or load_session(13, "solutions")).synchronize
    chosen, planned = find_cases(cases)
    amp_phases = PHASES
    if precisions is None:
        precisions = PRECISIONS
        if device.type != "cuda":
            amp_phases = ("inference",)
    modes_all = modes_for(device, tuple(modes) if modes else None)
    amp, amp_reason = amp_dtype_for(device)
    budget = budget_minutes if budget_minutes is not None else DEFAULT_BUDGET_MINUTES.get(device.type, 13.0)
    deadline = started + 60.0 * budget

    from .report import describe_machine

    result = BenchResult(meta={
        "machine": describe_machine(device), "dataset": dataset, "preset": preset, "impl": impl,
        "phases": list(phases), "precisions": list(precisions), "amp_phases": [p for p in phases if p in amp_phases],
        "modes": [m for m, r in modes_all if r is None],
        "skipped_modes": {m: r for m, r in modes_all if r is not None}, "amp": precision_label(amp) if amp else None,
        "amp_reason": amp_reason, "warmup": warmup, "repeats": repeats, "rounds": rounds, "backend": backend,
        "budget_minutes": budget, "command": command, "load_average_start": _loadavg(),
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    })
    from .report import busy_machine

    if busy_machine(result.meta):
        log(f"warning: {busy_machine(result.meta)}")
    log(f"bench: device {device.type} ({result.meta['machine']['name']}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; code from {impl}/; dataset {dataset} ({preset}); "
        f"AMP: {precision_label(amp) if amp else 'none'} ({amp_reason})")

    ctx = BenchContext(device, dataset, preset, impl, inference_batch or INFERENCE_BATCH, seed=0)
    built: dict[str, Built] = {}
    for case in chosen:
        start = time.perf_counter()
        try:
            b = case.build(ctx)
        except (CaseSkipped, NotImplementedError) as err:
            result.cases.append({"name": case.name, "status": "skipped", "reason": str(err)})
            log(f"== {case.name}: skipped ({err})")
            continue
        built[case.name] = b
        labels = {phase: getattr(b, phase).label for phase in ("inference", "train") if getattr(b, phase) is not None}
        if b.search is not None:
            labels["search"] = b.search.label
        if b.serving is not None:
            labels["serving"] = b.serving.label
        result.cases.append({"name": case.name, "status": "ok", "reason": None, "weights": b.weights,
                             "notes": b.notes, "labels": labels, "description": case.description,
                             "build_s": time.perf_counter() - start})
        log(f"== {case.name}: {case.description}; {b.weights}")
        for phase in ("inference", "train"):
            workload = getattr(b, phase)
            if workload is None or phase not in phases:
                continue
            report = _checked_report(graph_break_report, workload, phase)
            result.graph_breaks.append({"case": case.name, "phase": phase, **report})
            if "error" in report:
                log(f"   graph-break report ({phase}) failed: {report['error']}")
            else:
                log(f"   default mode ({phase}): {report['graphs']} graph(s), {report['breaks']} named break(s); fullgraph=True "
                    f"{'compiles' if report['fullgraph'] else 'fails: ' + str(report['fullgraph_error'])[:100]}")
    for name, reason in planned:
        result.cases.append({"name": name, "status": "skipped", "reason": reason})

    for case_name, b in built.items():  # searches first: cheap, and they need no compiler
        if b.search is not None:
            result.search.extend(_time_search(case_name, b.search, device, benchmark, warmup, repeats, log))
        if b.serving is not None:
            result.serving.extend(_time_serving(case_name, b.serving, device, benchmark, warmup, repeats, log))

    references: dict[tuple, torch.Tensor | None] = {}
    runnable = [m for m, reason in modes_all if reason is None]
    measured_precisions = [p for p in precisions if p != "amp" or amp is not None]
    for tier in plan(phases, measured_precisions, runnable, amp_phases):
        for case_name, b in built.items():
            _run_group(result, case_name, b, tier, amp=amp, device=device, benchmark=benchmark,
                       synchronize=synchronize, warmup=warmup, repeats=repeats, rounds=rounds, backend=backend,
                       compile_fn=compile_fn, deadline=deadline, budget=budget, references=references, log=log)

    result.meta["seconds"] = time.perf_counter() - started
    result.meta["load_average_end"] = _loadavg()
    if write:
        from .report import write_report

        folder = write_report(result, output)
        log(f"\nreport written to {folder}/bench.json and {folder}/bench.md ({result.meta['seconds']:.0f} s in all)")
    return result


def _run_group(result: BenchResult, case_name: str, built: Built, tier: list[Variant], *, amp, device, benchmark,
               synchronize, warmup, repeats, rounds, backend, compile_fn, deadline, budget, references, log) -> None:
    """Prepare the variants of one tier for one case (compile, first call), then time them in interleaved rounds.

    Round r times every variant once (``repeats / rounds`` calls each), so a change in the machine's load
    during the group hits all of them alike, and the ratios between them stay honest.
    """
    prepared: list[tuple[Variant, dict, Prepared]] = []
    torch._dynamo.reset()  # a clean slate per group: no cache entries, no recompile limit carried over
    variants = [v for v in tier if getattr(built, v.phase) is not None]
    if variants and variants[0].phase == "train":  # a training step is slow: fewer samples
        warmup, repeats = min(warmup, 3), max(rounds, repeats // 2)
    expected = sum(_estimate_seconds(result.rows, case_name, v, warmup + rounds, repeats) for v in variants)
    late = time.perf_counter() + expected > deadline
    for variant in variants:
        workload = getattr(built, variant.phase)
        dtype = amp if variant.precision == "amp" else None
        row = {"case": case_name, "phase": variant.phase, "mode": variant.mode, "label": workload.label,
               "batch": workload.batch, "precision": precision_label(dtype), "status": "ok", "reason": None}
        if late:
            row.update(status="skipped", reason=f"would not finish within the time budget of {budget:g} min "
                                                f"(this model's variants: about {expected:.0f} s expected; "
                                                "--budget-minutes)")
            result.rows.append(row)
            continue
        make = prepare_inference if variant.phase == "inference" else prepare_train_step
        try:
            p = make(workload, variant.mode, dtype, device=device, synchronize=synchronize, backend=backend,
                     compile_fn=compile_fn)
        except Exception as err:  # noqa: BLE001 - one failing variant must not stop the report
            message = str(err).strip().splitlines()
            row.update(status="error", reason=f"{type(err).__name__}: {message[0][:240] if message else ''}")
            result.rows.append(row)
            _log_row(log, row)
            continue
        prepared.append((variant, row, p))
    samples: dict[int, list[float]] = {i: [] for i in range(len(prepared))}
    per_round = max(1, -(-repeats // max(1, rounds)))
    failed: set[int] = set()
    for r in range(max(1, rounds)):
        for i, (variant, row, p) in enumerate(prepared):
            if i in failed:
                continue
            try:
                timing = benchmark(p.call, device=device, warmup=warmup if r == 0 else 1, repeats=per_round)
            except Exception as err:  # noqa: BLE001
                message = str(err).strip().splitlines()
                row.update(status="error", reason=f"{type(err).__name__}: {message[0][:240] if message else ''}")
                failed.add(i)
                continue
            samples[i].extend(timing["times_ms"])
    for i, (variant, row, p) in enumerate(prepared):
        if i not in failed:
            key = (case_name, variant.phase, variant.precision)
            if variant.mode == "eager":
                references[key] = p.output
            row.update(summarize(samples[i]))
            row.update(repeats=len(samples[i]), rounds=max(1, rounds), first_call_s=p.first_call_s,
                       examples_per_s=row["batch"] / (row["median_ms"] / 1000.0))
            if variant.phase == "inference":
                row["max_abs_diff"] = max_abs_diff(p.output, references.get(key))
            else:
                row["loss"] = float(p.output) if p.output is not None else None
        result.rows.append(row)
    for _, row, _ in prepared:
        if row["status"] == "ok":
            _add_ratios(result.rows, row)
        _log_row(log, row)
    torch._dynamo.reset()


COMPILE_COST = {"eager": 0.0, "default": 1.0, "reduce-overhead": 1.5, "max-autotune": 5.0}  # x a default compile


def _estimate_seconds(rows: list[dict], case: str, variant: Variant, warmup: int, repeats: int) -> float:
    """Seconds a variant should take, from this run's rows, on the safe side.

    Compile: the longest default-mode first call of this model and phase, or, before there is one, of any
    model in this phase (a cached compile is fast, a cold one is not), scaled by the mode. Calls: the
    eager median of this model and phase, else the slowest of the phase. 0 where nothing is known yet.
    """
    done = [r for r in rows if r["phase"] == variant.phase and r["status"] == "ok"]
    own = [r for r in done if r["case"] == case]

    def longest(pool, mode, key):
        values = [r[key] for r in pool if r["mode"] == mode]
        return max(values) if values else None

    compile_s = longest(own, "default", "first_call_s") or longest(done, "default", "first_call_s") or 0.0
    median_ms = longest(own, "eager", "median_ms") or longest(done, "eager", "median_ms") or 0.0
    return COMPILE_COST[variant.mode] * compile_s + (warmup + repeats + 1) * median_ms / 1000.0


def _add_ratios(rows: list[dict], row: dict) -> None:
    """Speed-ups of ``row`` over eager at its precision and over fp32 eager, from rows of this run."""
    def median_of(precision: str, mode: str) -> float | None:
        for r in rows:
            if (r["case"], r["phase"], r["precision"], r["mode"], r["status"]) == (
                    row["case"], row["phase"], precision, mode, "ok"):
                return r["median_ms"]
        return None

    eager = median_of(row["precision"], "eager")
    fp32 = median_of("fp32", "eager")
    row["speedup"] = eager / row["median_ms"] if eager else None
    row["speedup_vs_fp32_eager"] = fp32 / row["median_ms"] if fp32 else None


def _time_search(case_name: str, search, device, benchmark, warmup, repeats, log) -> Iterator[dict]:
    exact = search.search_ids(search.indexes[0][1], search.queries, search.k)
    for name, index, info in search.indexes:
        try:
            timing = benchmark(lambda index=index: index.search(search.queries, search.k), device=device,
                               warmup=max(1, min(warmup, 3)), repeats=repeats)
            ids = search.search_ids(index, search.queries, search.k)
        except Exception as err:  # noqa: BLE001 - the report goes on without this index
            log(f"   {case_name} | {name}: error ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})")
            continue
        row = {"case": case_name, "index": name, **info, "queries": len(search.queries), "k": search.k,
               "median_ms": timing["median_ms"], "iqr_ms": timing["iqr_ms"],
               "qps": len(search.queries) / (timing["median_ms"] / 1000.0),
               f"recall@{search.k}": search.ann_recall(ids, exact), "label": search.label}
        log(f"   {case_name} | {name}" + (f" nprobe={info['nprobe']}" if info.get("nprobe") else "")
            + f": {row['median_ms']:.3f} ms per batch (IQR {row['iqr_ms']:.3f}), {row['qps']:,.0f} QPS, "
              f"recall@{search.k} {row[f'recall@{search.k}']:.3f}")
        yield row


def _time_serving(case_name: str, serving, device, benchmark, warmup, repeats, log) -> Iterator[dict]:
    for name, call, requests in serving.paths:
        try:
            timing = benchmark(call, device=device, warmup=max(1, min(warmup, 3)), repeats=repeats)
        except Exception as err:  # noqa: BLE001 - the report goes on without this path
            log(f"   {case_name} | {name}: error ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''})")
            continue
        row = {"case": case_name, "path": name, "requests": requests, "median_ms": timing["median_ms"],
               "iqr_ms": timing["iqr_ms"], "ms_per_request": timing["median_ms"] / requests,
               "requests_per_s": requests / (timing["median_ms"] / 1000.0), "label": serving.label}
        log(f"   {case_name} | {name}: {row['median_ms']:.3f} ms per call (IQR {row['iqr_ms']:.3f}), "
            f"{row['ms_per_request']:.3f} ms per request, {row['requests_per_s']:,.0f} requests/s")
        yield row


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None
