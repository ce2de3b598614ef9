"""The performance report (``harness.bench``): the GPU path with CUDA mocked, the report's format, and tiny real runs.

CI has no GPU, so what the CUDA path decides (the AMP dtype, the modes, when to synchronise, when to mark a
CUDA-graph step, when to scale the loss) is tested here with the device faked; the real runs use the CPU.
"""
from __future__ import annotations

import contextlib
import json
import os

import pytest
import torch

from harness.autograder.loader import load_session
from harness.bench import cases as bench_cases
from harness.bench import measure
from harness.bench.cases import Built, Case, Workload


@pytest.fixture(scope="module")
def s13():
    return load_session(13, "solutions")


class FakeCuda:
    def __init__(self):
        self.syncs = 0
        self.marks = 0
        self.autocasts = []

    def synchronize(self, *args, **kwargs):
        self.syncs += 1

    def mark(self):
        self.marks += 1


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch sees one CUDA device; synchronize and the CUDA-graph step marker are counted; autocast is recorded."""
    cuda = FakeCuda()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", cuda.synchronize)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", cuda.mark)

    def fake_autocast(device, dtype):
        cuda.autocasts.append((device.type, dtype))
        return contextlib.nullcontext()

    monkeypatch.setattr(measure, "autocast", fake_autocast)
    return cuda


def no_compile(calls: list):
    def compile_fn(module, **kwargs):
        calls.append(kwargs)
        return module
    return compile_fn


# --- what a device offers ------------------------------------------------------------------------

def test_amp_dtype_on_a_gpu_with_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    dtype, reason = measure.amp_dtype_for("cuda")
    assert dtype is torch.bfloat16 and "bf16" in reason
    assert measure.make_scaler(torch.device("cuda"), dtype) is None  # bf16 needs no loss scaling


def test_amp_dtype_on_an_older_gpu_is_fp16_with_a_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    dtype, reason = measure.amp_dtype_for(torch.device("cuda", 0))
    assert dtype is torch.float16 and "GradScaler" in reason
    with pytest.warns(UserWarning) if not torch.cuda.is_available() else contextlib.nullcontext():
        scaler = measure.make_scaler(torch.device("cuda"), dtype)
    assert isinstance(scaler, torch.amp.GradScaler)


@pytest.mark.parametrize("native", [True, False])
def test_amp_dtype_on_a_cpu_follows_native_bf16(monkeypatch, native):
    monkeypatch.setattr(measure, "cpu_has_native_bf16", lambda: native)
    dtype, reason = measure.amp_dtype_for("cpu")
    assert dtype is (torch.bfloat16 if native else None)
    assert ("native" in reason) if native else ("emulated" in reason)
    assert measure.amp_dtype_for("mps")[0] is None


def test_modes_per_device():
    cuda = dict(measure.modes_for("cuda"))
    assert list(cuda) == ["eager", "default", "reduce-overhead", "max-autotune"]
    assert all(reason is None for reason in cuda.values())
    cpu = dict(measure.modes_for("cpu"))
    assert cpu["eager"] is None and cpu["default"] is None
    assert "CUDA" in cpu["reduce-overhead"] and "--modes" in cpu["max-autotune"]
    asked = dict(measure.modes_for("cpu", ("eager", "default", "max-autotune")))
    assert asked == {"eager": None, "default": None, "max-autotune": None}  # asked for: it runs
    with pytest.raises(ValueError, match="unknown mode"):
        measure.modes_for("cpu", ("fast",))


def test_compile_arguments():
    calls = []
    module = torch.nn.Linear(2, 2)
    assert measure.compile_module(module, "eager", compile_fn=no_compile(calls)) is module and calls == []
    for mode in ("default", "reduce-overhead", "max-autotune"):
        measure.compile_module(module, mode, compile_fn=no_compile(calls))
    measure.compile_module(module, "default", backend="eager", compile_fn=no_compile(calls))
    assert calls == [{"fullgraph": True}, {"fullgraph": True, "mode": "reduce-overhead"},
                     {"fullgraph": True, "mode": "max-autotune"}, {"fullgraph": True, "backend": "eager"}]


def test_plan_puts_fp32_inference_first_and_heavy_modes_last():
    tiers = measure.plan(("inference", "train"), ("fp32", "amp"), ["eager", "default", "reduce-overhead"])
    flat = [(v.phase, v.precision, v.mode) for tier in tiers for v in tier]
    assert flat[:2] == [("inference", "fp32", "eager"), ("inference", "fp32", "default")]
    assert flat.index(("train", "fp32", "eager")) > flat.index(("inference", "amp", "default"))
    assert all(m == "reduce-overhead" for _, _, m in flat[-4:])


# --- the CUDA path, mocked -------------------------------------------------------------------------

def test_inference_on_cuda_synchronises_and_marks_every_cuda_graph_step(fake_cuda, s13):
    workload = Workload(torch.nn.Linear(4, 2), (torch.randn(3, 4),), 3, "3 rows")
    calls = []
    timing, first, out = measure.time_inference(
        workload, "reduce-overhead", torch.bfloat16, device=torch.device("cuda"), benchmark=s13.benchmark,
        synchronize=s13.synchronize, warmup=2, repeats=5, compile_fn=no_compile(calls))
    assert calls == [{"fullgraph": True, "mode": "reduce-overhead"}]
    assert fake_cuda.syncs >= 1 + 1 + 5, "the first call, the end of the warm-up and every timed call wait for the GPU"
    assert fake_cuda.marks == 1 + 2 + 5, "every call of a CUDA-graph model starts a new step"
    assert set(fake_cuda.autocasts) == {("cuda", torch.bfloat16)}
    assert timing["repeats"] == 5 and timing["device"] == "cuda" and out.shape == (3, 2) and first >= 0


def test_default_mode_marks_no_cuda_graph_step(fake_cuda, s13):
    workload = Workload(torch.nn.Linear(4, 2), (torch.randn(3, 4),), 3, "3 rows")
    measure.time_inference(workload, "default", None, device=torch.device("cuda"), benchmark=s13.benchmark,
                           synchronize=s13.synchronize, warmup=1, repeats=2, compile_fn=no_compile([]))
    assert fake_cuda.marks == 0 and fake_cuda.syncs >= 4


class Regression(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x, y):
        return ((self.linear(x).squeeze(-1) - y) ** 2).mean()


def test_fp16_training_on_cuda_scales_the_loss(fake_cuda, s13, monkeypatch):
    events = []

    class FakeScaler:
        def __init__(self, device_type):
            events.append(("new", device_type))

        def scale(self, loss):
            events.append("scale")
            return loss

        def step(self, optimizer):
            events.append("step")
            optimizer.step()

        def update(self):
            events.append("update")

    monkeypatch.setattr(torch.amp, "GradScaler", FakeScaler)
    workload = Workload(Regression(), (torch.randn(8, 4), torch.randn(8)), 8, "8 rows")
    before = workload.module.linear.weight.detach().clone()
    timing, first, loss = measure.time_train_step(
        workload, "default", torch.float16, device=torch.device("cuda"), benchmark=s13.benchmark,
        synchronize=s13.synchronize, warmup=1, repeats=3, compile_fn=no_compile([]))
    assert events[0] == ("new", "cuda")
    assert events[1:].count("scale") == events[1:].count("step") == events[1:].count("update") == 1 + 1 + 3
    assert set(fake_cuda.autocasts) == {("cuda", torch.float16)}
    assert torch.equal(workload.module.linear.weight, before), "each variant trains a copy: the case's weights stay"
    assert fake_cuda.syncs >= 1 + 1 + 3


def test_bf16_training_has_no_scaler(monkeypatch):
    monkeypatch.setattr(torch.amp, "GradScaler", lambda *a, **k: pytest.fail("bf16 needs no GradScaler"))
    assert measure.make_scaler(torch.device("cuda"), torch.bfloat16) is None
    assert measure.make_scaler(torch.device("cpu"), None) is None


# --- the run and the report, on a tiny case -----------------------------------------------------------

def _tiny_case(name="tiny"):
    def build(ctx):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
        return Built(inference=Workload(model, (torch.randn(32, 8),), 32, "32 rows"),
                     train=Workload(Regression(), (torch.randn(32, 4), torch.randn(32)), 32, "32 rows"),
                     weights="random init", notes=["a test case"])
    return Case(name, (13,), "a tiny MLP", build)


@pytest.fixture
def tiny_cases(monkeypatch):
    monkeypatch.setattr(bench_cases, "CASES", [_tiny_case()])


def _run(s13, **kwargs):
    settings = dict(device="cpu", phases=("inference", "train"), precisions=("fp32",), warmup=1, repeats=3,
                    benchmark=s13.benchmark, graph_break_report=s13.graph_break_report, synchronize=s13.synchronize,
                    backend="eager", log=lambda line: None)
    settings.update(kwargs)
    return measure.run_bench(["tiny"], **settings)


def test_report_files(tiny_cases, s13, tmp_path):
    result = _run(s13, output=tmp_path, command="python -m harness bench --cases tiny")
    data = json.loads((tmp_path / "bench.json").read_text())
    machine = data["meta"]["machine"]
    assert machine["device"] == "cpu" and machine["torch"] == torch.__version__
    import faiss

    assert machine["faiss"] == faiss.__version__
    modes = {(r["phase"], r["mode"]): r for r in data["rows"]}
    assert set(modes) == {("inference", "eager"), ("inference", "default"), ("train", "eager"), ("train", "default")}
    for row in data["rows"]:
        assert row["status"] == "ok" and row["median_ms"] > 0 and row["first_call_s"] > 0
        assert row["speedup"] == pytest.approx(modes[(row["phase"], "eager")]["median_ms"] / row["median_ms"])
    assert modes[("inference", "default")]["max_abs_diff"] == 0.0  # backend eager: the same computation
    assert data["headline"] == {"tiny": modes[("inference", "default")]["speedup"]}
    assert [g["fullgraph"] for g in data["graph_breaks"]] == [True, True]
    text = (tmp_path / "bench.md").read_text()
    assert text == result.markdown() + "\n"
    assert "`python -m harness bench --cases tiny`" in text
    assert f"| {torch.__version__} |" in text and f"{faiss.__version__} (cpu)" in text
    assert "| model | phase | one call | precision | mode | median ms | IQR ms | × eager |" in text
    assert "| tiny | inference | 32 rows | fp32 | default |" in text
    assert "mode `reduce-overhead` not run: CUDA graphs" in text


def test_cpu_measures_amp_at_inference_only_unless_asked(tiny_cases, s13, monkeypatch):
    monkeypatch.setattr(measure, "cpu_has_native_bf16", lambda: True)
    result = _run(s13, precisions=None, write=False)
    got = {(r["phase"], r["precision"]) for r in result.rows}
    assert got == {("inference", "fp32"), ("inference", "bf16"), ("train", "fp32")}
    assert "measured at inference only" in result.markdown()
    asked = _run(s13, precisions=("fp32", "amp"), write=False)
    assert ("train", "bf16") in {(r["phase"], r["precision"]) for r in asked.rows}


def test_a_busy_cpu_is_flagged():
    from harness.bench.report import busy_machine

    meta = {"machine": {"device": "cpu", "cpu_count": 2, "torch_threads": 2}, "load_average_start": [5.1, 4, 3]}
    assert "load average 5.1 on 2 CPUs" in busy_machine(meta) and "--threads 1" in busy_machine(meta)
    assert busy_machine({**meta, "load_average_start": [1.5, 1, 1]}) is None
    assert busy_machine({**meta, "machine": {**meta["machine"], "torch_threads": 1}}) is None


def test_budget_skips_what_would_start_late(tiny_cases, s13):
    result = _run(s13, budget_minutes=0, write=False)
    assert result.rows and all(r["status"] == "skipped" and "time budget" in r["reason"] for r in result.rows)
    assert "time budget" in result.markdown()


def test_compile_cost_estimated_from_earlier_variants():
    rows = [{"case": "m", "phase": "train", "precision": "fp32", "mode": "default", "status": "ok",
             "first_call_s": 100.0, "median_ms": 50.0},
            {"case": "m", "phase": "train", "precision": "fp32", "mode": "eager", "status": "ok",
             "first_call_s": 0.1, "median_ms": 200.0}]
    estimate = lambda mode, phase="train": measure._estimate_seconds(rows, "m", measure.Variant(phase, "amp", mode), 4, 5)
    assert estimate("eager") == pytest.approx(10 * 0.2)
    assert estimate("default") == pytest.approx(100 + 10 * 0.2)
    assert estimate("max-autotune") == pytest.approx(500 + 10 * 0.2)
    assert estimate("default", phase="inference") == 0.0  # nothing known yet: no estimate
    other = measure._estimate_seconds(rows, "another model", measure.Variant("train", "fp32", "default"), 4, 5)
    assert other == pytest.approx(100 + 10 * 0.2), "before its own compile, the longest one of the phase"


def test_a_failing_variant_is_reported_not_fatal(tiny_cases, s13):
    def broken_compile(module, **kwargs):
        raise RuntimeError("Inductor failed\nwith a long traceback")

    result = _run(s13, compile_fn=broken_compile, backend="inductor", write=False, phases=("inference",))
    rows = {r["mode"]: r for r in result.rows}
    assert rows["eager"]["status"] == "ok"
    assert rows["default"]["status"] == "error" and rows["default"]["reason"] == "RuntimeError: Inductor failed"


def test_cases_skip_with_the_reason_when_a_session_is_missing(s13, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_SOLUTIONS_DIR", str(tmp_path))  # an empty tree: no notebook at all
    result = measure.run_bench(["dlrm", "two-tower mean", "serving"], device="cpu", benchmark=s13.benchmark,
                               graph_break_report=s13.graph_break_report, synchronize=s13.synchronize,
                               write=False, log=lambda line: None)
    reasons = {c["name"]: c["reason"] for c in result.cases}
    assert all(c["status"] == "skipped" for c in result.cases) and not result.rows
    assert "session 07" in reasons["dlrm"] and "session 02" in reasons["two-tower mean"]
    assert "session 14" in reasons["serving"]
    assert "- dlrm: skipped" in result.markdown()


def test_your_own_timer_must_be_written_first(tmp_path, monkeypatch):
    from harness.autograder import stubs
    from harness.autograder.loader import NotebookError

    solution = stubs.tree_dir("solutions") / "session_13_compile.py"
    (tmp_path / solution.name).write_text(stubs.stub_text(solution))
    monkeypatch.setenv("HARNESS_SESSIONS_DIR", str(tmp_path))
    before = os.environ.get("HARNESS_UPSTREAM")
    with pytest.raises(NotebookError, match="`benchmark`.*not written yet.*--impl solutions"):
        measure.run_bench(["two-tower mean"], device="cpu", impl="sessions", write=False, log=lambda line: None)
    assert os.environ.get("HARNESS_UPSTREAM") == before, "run_bench restores HARNESS_UPSTREAM"


def test_only_finished_pipeline_checkpoints_are_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RUNS_DIR", str(tmp_path))
    ctx = bench_cases.BenchContext(torch.device("cpu"), "ml-100k", "laptop", "solutions")
    folder = tmp_path / "pipeline" / "ml-100k-laptop-solutions"
    folder.mkdir(parents=True)
    model = torch.nn.Linear(3, 2)
    torch.save({"model": model.state_dict()}, folder / "toy.pt")
    assert ctx.pipeline_checkpoint("toy") is None, "no record yet: the pipeline is still training it"
    assert bench_cases.load_pipeline_weights(ctx, torch.nn.Linear(3, 2), "toy").startswith("random init")
    (folder / "toy.json").write_text("{}")
    fresh = torch.nn.Linear(3, 2)
    assert "pipeline checkpoint" in bench_cases.load_pipeline_weights(ctx, fresh, "toy")
    assert torch.equal(fresh.weight, model.weight)
    other = bench_cases.load_pipeline_weights(ctx, torch.nn.Linear(4, 2), "toy")
    assert other.startswith("random init") and "does not fit" in other


def test_unknown_case_names_the_known_ones():
    with pytest.raises(ValueError, match="two-tower mean"):
        bench_cases.find_cases(["two-tower"])
    chosen, planned = bench_cases.find_cases(None)
    assert [c.name for c in chosen][:2] == ["two-tower mean", "two-tower transformer"]
    assert {name for name, _ in planned} == {"serving", "decoder"} - {c.name for c in chosen}


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine --device cuda runs the whole bench")
def test_cli_without_a_gpu_says_so(capsys):
    from harness.cli import main

    assert main(["bench", "--device", "cuda"]) == 2
    assert "torch sees no CUDA GPU" in capsys.readouterr().err


def test_cli_lists_the_cases(capsys):
    from harness.cli import main

    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("two-tower transformer", "faiss", "dlrm", "serving", "decoder")), out


# --- real runs on the CPU ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_data(tmp_path_factory):
    saved = os.environ.get("HARNESS_DATA_DIR")
    os.environ["HARNESS_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    yield
    if saved is None:
        os.environ.pop("HARNESS_DATA_DIR", None)
    else:
        os.environ["HARNESS_DATA_DIR"] = saved


def test_tiny_real_run_of_two_cases(synthetic_data, s13, tmp_path):
    """The real cases, built from the reference at the smoke sizes; Dynamo with the eager backend (seconds)."""
    result = measure.run_bench(["two-tower mean", "faiss"], device="cpu", dataset="synthetic", preset="smoke",
                               phases=("inference",), precisions=("fp32",), warmup=1, repeats=2, backend="eager",
                               output=tmp_path, log=lambda line: None)
    assert [c["status"] for c in result.cases] == ["ok", "ok"], result.cases
    rows = {r["mode"]: r for r in result.rows}
    assert rows["eager"]["batch"] == 256 and rows["eager"]["status"] == "ok"
    assert rows["default"]["status"] == "ok" and rows["default"]["max_abs_diff"] < 1e-5
    search = {(s["index"], s["nprobe"]): s for s in result.search}
    assert search[("flat (exact)", None)]["recall@10"] == 1.0
    assert all(0.0 < s["recall@10"] <= 1.0 and s["qps"] > 0 for s in search.values())
    assert (tmp_path / "bench.md").is_file()


@pytest.mark.slow
def test_tiny_real_run_with_inductor(synthetic_data, s13):
    """The one test here that needs Inductor (C++ code generation: about 15-25 s on a cold cache, 2 cores)."""
    result = measure.run_bench(["two-tower mean"], device="cpu", dataset="synthetic", preset="smoke",
                               phases=("inference",), precisions=("fp32",), warmup=1, repeats=3, write=False,
                               log=lambda line: None)
    rows = {r["mode"]: r for r in result.rows}
    assert rows["default"]["status"] == "ok", rows["default"]
    assert rows["default"]["max_abs_diff"] < 1e-4, "the compiled tower computes what the eager one does"
    assert rows["default"]["first_call_s"] > rows["default"]["median_ms"] / 1000, "the first call compiled"


def test_serving_path_in_process(synthetic_data, s13, tmp_path):
    """The serving case times session 15's rank_batch on the bundle (the test bundle at the smoke preset)."""
    result = measure.run_bench(["serving"], device="cpu", dataset="synthetic", preset="smoke", phases=("inference",),
                               precisions=("fp32",), warmup=1, repeats=2, output=tmp_path, log=lambda line: None)
    assert [c["status"] for c in result.cases] == ["ok"], result.cases
    assert [r["requests"] for r in result.serving] == [1, 8, 32]
    for r in result.serving:
        assert r["median_ms"] > 0 and r["requests_per_s"] == pytest.approx(r["requests"] / r["median_ms"] * 1000)
    assert "| rank_batch x 32 | 32 |" in (tmp_path / "bench.md").read_text()


def test_serving_without_a_bundle_says_which_command_writes_one(s13, tmp_path, monkeypatch):
    from harness.bench import cases

    monkeypatch.setattr("harness.serving.bundle.bundle_dir", lambda *a, **k: tmp_path / "no-bundle")
    ctx = cases.BenchContext(torch.device("cpu"), "ml-100k", "laptop")
    with pytest.raises(cases.CaseSkipped, match="python -m harness pipeline --dataset ml-100k --preset laptop"):
        cases.build_serving(ctx)
