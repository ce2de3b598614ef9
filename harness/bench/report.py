"""The performance report: ``runs/bench/<device>/bench.json`` and ``bench.md``.

The markdown opens with what the numbers belong to (device, torch, FAISS, threads, the command,
the machine's load) because absolute times count only on the device they name; the ratios in a
row come from the same run. Tables: models (eager vs compiled, fp32 vs AMP), graph breaks, FAISS
exact vs IVF, and what was skipped and why.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path

import torch

from ..paths import display_path, runs_dir


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: torch.device) -> dict:
    """Device, software versions and CPU facts the report's numbers depend on."""
    from ..env import faiss_info
    from .measure import cpu_has_native_bf16

    device = torch.device(device)
    name = cpu_name()
    memory = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device.index or 0)
        name, memory = props.name, round(props.total_memory / 2**30, 1)
    faiss = faiss_info()
    return {"device": device.type, "name": name, "gpu_memory_gib": memory, "torch": torch.__version__,
            "cuda": torch.version.cuda, "faiss": faiss.get("version"), "faiss_build": faiss.get("build"),
            "faiss_gpus": faiss.get("gpus", 0), "python": platform.python_version(), "cpu": cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cpu_native_bf16": cpu_has_native_bf16()}


def to_dict(result) -> dict:
    return {"meta": result.meta, "headline": result.headline(), "cases": result.cases, "rows": result.rows,
            "graph_breaks": result.graph_breaks, "search": result.search, "serving": result.serving}


def _f(x, fmt: str, missing: str = "—") -> str:
    return missing if x is None else format(x, fmt)


def _ratio(x) -> str:
    return "—" if x is None else f"{x:.2f}×"


def to_markdown(result) -> str:
    m = result.meta
    machine = m["machine"]
    load = ""
    if m.get("load_average_start"):
        end = m.get("load_average_end") or ["?"]
        load = f"; load average {m['load_average_start'][0]} at the start, {end[0]} at the end"
    lines = [f"## Performance report: {machine['device']} ({machine['name']})", ""]
    if m.get("command"):
        lines += [f"`{m['command']}`", ""]
    lines += [
        f"{m.get('started_at', '')}, {m.get('seconds', 0):.0f} s in all{load} "
        f"({machine['cpu_count']} CPUs, torch on {machine['torch_threads']} "
        f"thread{'s' if machine['torch_threads'] != 1 else ''}).", "",
        "| device | torch | CUDA | FAISS | AMP | dataset (preset) | code | timed calls per variant |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {machine['device']}: {machine['name']}" + (f", {machine['gpu_memory_gib']} GiB" if machine.get(
            "gpu_memory_gib") else "") + f" | {machine['torch']} | {machine.get('cuda') or '—'} | "
        f"{machine.get('faiss') or 'not installed'} ({machine.get('faiss_build') or '—'}) | "
        f"{m.get('amp') or 'not measured'} | {m['dataset']} ({m['preset']}) | {m['impl']} | {m['repeats']} "
        f"(training steps {max(m.get('rounds', 1), m['repeats'] // 2)}) in {m.get('rounds', 1)} rounds |", ""]

    if result.rows:
        lines += ["Models, eager vs `torch.compile(fullgraph=True)`: median ms per call (IQR), speed-up over eager at "
                  "the same precision and over fp32 eager, in this run (variants of a model timed in interleaved "
                  "rounds). First call: the compilation, or its load from Inductor's cache, and one call.",
                  "", "| model | phase | one call | precision | mode | median ms | IQR ms | × eager | × fp32 eager "
                      "| first call s | max \\|Δ\\| vs eager |",
                  "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in result.rows:
            if r["status"] != "ok":
                lines.append(f"| {r['case']} | {r['phase']} | {r['label']} | {r['precision']} | {r['mode']} | "
                             f"{r['status']}: {r['reason']} | | | | | |")
                continue
            diff = r.get("max_abs_diff")
            lines.append(
                f"| {r['case']} | {r['phase']} | {r['label']} | {r['precision']} | {r['mode']} | {r['median_ms']:.3f} | "
                f"{r['iqr_ms']:.3f} | {_ratio(r['speedup']) if r['mode'] != 'eager' else '1.00×'} | "
                f"{_ratio(r.get('speedup_vs_fp32_eager'))} | {r['first_call_s']:.2f} | "
                f"{'—' if diff is None or r['mode'] == 'eager' else f'{diff:.1e}'} |")
        lines.append("")

    if result.graph_breaks:
        lines += ["Graph breaks in the default mode (`torch._dynamo.explain`: graphs captured, breaks it names), and "
                  "the verdict of `fullgraph=True` (Dynamo only), which the timed variants use.", "",
                  "| model | phase | graphs | named breaks | first reasons | fullgraph=True |",
                  "| --- | --- | ---: | ---: | --- | --- |"]
        for g in result.graph_breaks:
            if "error" in g:
                lines.append(f"| {g['case']} | {g['phase']} | | | report failed: {g['error']} | |")
                continue
            reasons = "; ".join(r.replace("|", "\\|")[:90] for r in g["reasons"][:2]) or "—"
            verdict = "compiles" if g["fullgraph"] else f"fails: {str(g['fullgraph_error'])[:80]}"
            lines.append(f"| {g['case']} | {g['phase']} | {g['graphs']} | {g['breaks']} | {reasons} | {verdict} |")
        lines.append("")

    if result.search:
        k = result.search[0]["k"]
        lines += [f"FAISS: {result.search[0]['label']}; median ms per batch of queries (IQR), queries per second, "
                  f"recall@{k} against the exact index.", "",
                  f"| index | nprobe | median ms | IQR ms | QPS | recall@{k} | build s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for s in result.search:
            lines.append(f"| {s['index']} | {s.get('nprobe') or '—'} | {s['median_ms']:.3f} | {s['iqr_ms']:.3f} | "
                         f"{s['qps']:,.0f} | {s[f'recall@{k}']:.3f} | {s.get('build_s', 0):.2f} |")
        lines.append("")

    if result.serving:
        lines += [f"Serving path ({result.serving[0]['label']}, no HTTP): median ms per `rank_batch` call (IQR), per "
                  "request, and requests per second of model time. Latency over HTTP under load: the pipeline's "
                  "serving stage and session 15.", "",
                  "| path | requests per call | median ms | IQR ms | ms per request | requests/s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for r in result.serving:
            lines.append(f"| {r['path']} | {r['requests']} | {r['median_ms']:.3f} | {r['iqr_ms']:.3f} | "
                         f"{r['ms_per_request']:.3f} | {r['requests_per_s']:,.0f} |")
        lines.append("")

    notes = []
    busy = busy_machine(m)
    if busy:
        notes.append(f"- {busy}")
    notes += [f"- {c['name']}: skipped, {c['reason']}" for c in result.cases if c["status"] != "ok"]
    notes += [f"- mode `{mode}` not run: {why}" for mode, why in m.get("skipped_modes", {}).items()]
    if m.get("amp") is None and "amp" in m.get("precisions", []):
        notes.append(f"- AMP not measured: {m.get('amp_reason')}")
    elif m.get("amp") and set(m.get("phases", [])) - set(m.get("amp_phases", m.get("phases", []))):
        notes.append(f"- AMP ({m['amp']}) measured at inference only: on a CPU the workbook trains in fp32, and bf16 "
                     "training steps cost minutes of compilation here (`--precisions fp32 amp` measures them too)")
    notes += [f"- {c['name']}: {c['weights']}" + (f"; {'; '.join(c['notes'])}" if c.get("notes") else "")
              for c in result.cases if c["status"] == "ok"]
    if notes:
        lines += ["Notes:", ""] + notes + [""]
    return "\n".join(lines)


def busy_machine(meta: dict) -> str | None:
    """A warning when the CPU was oversubscribed while torch ran several threads on it, else None."""
    machine, load = meta["machine"], meta.get("load_average_start")
    if machine["device"] != "cpu" or not load or machine["torch_threads"] < 2:
        return None
    if load[0] <= (machine.get("cpu_count") or 1):
        return None
    return (f"the machine was busy (load average {load[0]} on {machine['cpu_count']} CPUs): with "
            f"{machine['torch_threads']} threads, each parallel operation waits for a core the other jobs hold, "
            "which inflates eager times most; compare with `--threads 1`")


def report_dir(device_type: str) -> Path:
    return runs_dir() / "bench" / device_type


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(result, output: str | os.PathLike | None = None) -> str:
    """Write bench.json and bench.md to ``output`` (default ``runs/bench/<device>/``); returns the folder, for display."""
    folder = Path(output) if output else report_dir(result.meta["machine"]["device"])
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / "bench.json", json.dumps(to_dict(result), indent=2, default=str) + "\n")
    _write_atomic(folder / "bench.md", to_markdown(result) + "\n")
    return display_path(folder)
