"""Exercise 5: fit (the loop), including exact resume, logging, W&B offline and DDP under torchrun."""
import json
import math
import os
import random
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_equal
from harness.autograder.grading import STUB_MESSAGE
from harness.paths import repo_root

from .conftest import ToyData, cpu_fp16_autocast_works, probe_fit, quiet, toy_loss, toy_setup, train_cfg

pytestmark = pytest.mark.exercise("fit")


class FakeRun:
    """Stands in for a W&B run: records what ``fit`` logs."""

    def __init__(self):
        self.calls = []

    def log(self, data, step=None, **kwargs):
        self.calls.append((step, dict(data)))


def _fit(nb, setup, data, cfg, **kwargs):
    model, optimizer, scheduler = setup
    kwargs.setdefault("log", quiet)
    return nb.fit(model, data, loss_fn=kwargs.pop("loss_fn", toy_loss), optimizer=optimizer, cfg=cfg,
                  scheduler=scheduler, **kwargs)


def _read(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_every_example_once_per_epoch_in_a_new_order(nb):
    def recorder(seen):
        def loss_fn(model, batch):
            seen.append(batch["index"].tolist())
            return toy_loss(model, batch)
        return loss_fn

    seen = []
    result = _fit(nb, toy_setup(), ToyData(24), train_cfg(epochs=2), loss_fn=recorder(seen))
    expect(isinstance(result, dict) and result.get("steps") == 12, "2 epochs of 24 examples in batches of 4 are 12 steps",
           got=result.get("steps") if isinstance(result, dict) else type(result).__name__)
    first, second = sum(seen[:6], []), sum(seen[6:], [])
    expect(sorted(first) == list(range(24)) and sorted(second) == list(range(24)),
           "every example is seen exactly once per epoch", got=f"epoch 0 saw {sorted(first)}",
           hint="a permutation of range(len(train_data)) per epoch, cut into batches of cfg.batch_size")
    expect(first != list(range(24)), "the data is shuffled", hint="torch.randperm(n, generator=...) per epoch")
    expect(first != second, "each epoch has a different order",
           hint="seed the epoch's generator with cfg.seed + epoch: one fixed seed repeats the same order")
    again = []
    _fit(nb, toy_setup(), ToyData(24), train_cfg(epochs=2), loss_fn=recorder(again))
    expect(again == seen, "the same seed gives the same order (so a resumed run can replay it)",
           hint="draw the order from a torch.Generator seeded with (cfg.seed, epoch), never from the global RNG")
    other = []
    _fit(nb, toy_setup(), ToyData(24), train_cfg(epochs=1, seed=1), loss_fn=recorder(other))
    expect(sum(other, []) != first, "another cfg.seed gives another order")


def test_stops_at_max_steps_epochs_and_max_minutes(nb):
    result = _fit(nb, toy_setup(), ToyData(24), train_cfg(epochs=3, max_steps=7))
    expect_equal(result["steps"], 7, "steps with max_steps=7 (3 epochs would be 18)")
    expect_equal(result.get("stopped_by"), "max_steps", "stopped_by with max_steps=7")
    result = _fit(nb, toy_setup(), ToyData(24), train_cfg(epochs=2))
    expect_equal(result["steps"], 12, "steps of 2 epochs with max_steps=None")
    expect_equal(result.get("stopped_by"), "epochs", "stopped_by when the epochs run out")
    expect_close(result.get("epochs", -1), 2.0, "epochs done after 2 full epochs")
    result = _fit(nb, toy_setup(), ToyData(24), train_cfg(epochs=1000, max_minutes=1e-6))
    expect(result["steps"] <= 2, "with max_minutes=1e-6 training stops after the first step",
           got=f"{result['steps']} steps", hint="check the wall clock after every step (time.perf_counter())")
    expect_equal(result.get("stopped_by"), "max_minutes", "stopped_by with a tiny max_minutes")
    for key in ("seconds", "examples_per_second", "final_loss", "history", "evals"):
        expect(key in result, f"the result has `{key}`", got=sorted(result))


@pytest.mark.parametrize("interrupt_at", [9, 6], ids=["mid-epoch", "epoch-boundary"])
def test_resume_reproduces_the_uninterrupted_run_exactly(nb, tmp_path, interrupt_at):
    data, total = ToyData(24), 14  # 6 batches per epoch; dropout is on, so RNG state matters
    straight = toy_setup()
    _fit(nb, straight, data, train_cfg(max_steps=total), checkpoint_path=tmp_path / "straight.pt")

    first_part = _fit(nb, toy_setup(), data, train_cfg(max_steps=interrupt_at), checkpoint_path=tmp_path / "run.pt")
    expect((tmp_path / "run.pt").is_file(), "fit writes a checkpoint at the end of training",
           hint="save_checkpoint(checkpoint_path, ...) after the loop (rank 0 only)")
    expect_equal(_read(tmp_path / "run.pt")["step"], interrupt_at, f"step stored in the checkpoint after {interrupt_at} steps")

    resumed = toy_setup(seed=123)  # other weights, fresh optimizer and scheduler...
    torch.manual_seed(4321)  # ...and another RNG state: all of it must come from the checkpoint
    random.seed(4321)
    np.random.seed(4321)
    result = _fit(nb, resumed, data, train_cfg(max_steps=total), checkpoint_path=tmp_path / "run.pt", resume=True)
    expect_equal(result["steps"], total, f"global step after resuming at {interrupt_at} with max_steps={total}",
                 hint="continue counting from the checkpoint's step: max_steps counts the whole run, not this call")
    differ = [name for (name, a), b in zip(straight[0].named_parameters(), resumed[0].parameters())
              if not torch.equal(a, b)]
    expect(not differ, f"{interrupt_at} steps + checkpoint + fresh objects + resume give exactly the weights of "
                       f"{total} uninterrupted steps (torch.equal)",
           got=f"parameters that differ: {differ}",
           hint="restore model, optimizer, scheduler and RNG (load_checkpoint); order epoch e with a Generator seeded "
                "cfg.seed + e; skip the batches_done batches of the current epoch; give the DataLoader its own "
                "generator= (creating an iterator draws from the global RNG otherwise)")
    expect_equal(_read(tmp_path / "run.pt")["step"], total, "step stored in the checkpoint after the resumed run")
    before = [(r["step"], r["loss"]) for r in first_part["history"]]
    got = [(r.get("step"), r.get("loss")) for r in result.get("history", [])]
    expect(got[:len(before)] == before and all(step > interrupt_at for step, _ in got[len(before):])
           and len(got) > len(before), "the resumed run's history continues the interrupted run's: its records "
           f"up to step {interrupt_at}, then the new ones", expected=f"{before} + records after step {interrupt_at}",
           got=got, hint="keep the history in the checkpoint's extra and continue that list on resume: a resumed "
           "run that forgets it has plots and W&B summaries that start halfway")


def test_resume_without_a_checkpoint_is_a_clear_error(nb, tmp_path):
    with pytest.raises(FileNotFoundError):
        _fit(nb, toy_setup(), ToyData(8), train_cfg(max_steps=2), checkpoint_path=tmp_path / "none.pt", resume=True)


def test_logs_history_run_and_lines(nb):
    losses = []

    def recording(model, batch):
        loss = toy_loss(model, batch)
        losses.append(loss.item())
        return loss

    run, lines = FakeRun(), []
    model, optimizer, scheduler = toy_setup(lr=1e-2)
    result = nb.fit(model, ToyData(24), loss_fn=recording, optimizer=optimizer, cfg=train_cfg(epochs=1, log_every=2),
                    scheduler=scheduler, run=run, log=lines.append)
    history = result["history"]
    expect([r.get("step") for r in history] == [2, 4, 6], "history has a record every log_every=2 steps (6 steps)",
           got=[r.get("step") for r in history], hint="log when step % cfg.log_every == 0, counting steps from 1")
    for record in history:
        missing = {"step", "epoch", "loss", "lr", "grad_norm", "examples_per_second"} - set(record)
        expect(not missing, "every record has step, epoch, loss, lr, grad_norm, examples_per_second",
               got=sorted(record))
        s = record["step"]
        expect_close(record["loss"], sum(losses[s - 2:s]) / 2, f"logged loss at step {s}",
                     hint="the mean of the losses of the steps since the previous record, not the last one alone")
        expect_close(record["lr"], 1e-2 / (1 + 0.1 * (s - 1)), f"logged lr at step {s} (the rate its last step used)")
        expect(record["examples_per_second"] > 0, "examples_per_second is positive", got=record["examples_per_second"])
    expect_close(result["final_loss"], history[-1]["loss"], "final_loss is the last logged loss")
    train_calls = [(step, data) for step, data in run.calls if "loss" in data]
    expect([step for step, _ in train_calls] == [2, 4, 6], "run.log(record, step=step) at every logged step",
           got=[step for step, _ in train_calls], hint="pass the step as a keyword: run.log({...}, step=step)")
    for (step, data), record in zip(train_calls, history):
        expect({"loss", "lr", "grad_norm", "examples_per_second"} <= set(data), "W&B gets loss, lr, grad_norm and "
               "examples_per_second", got=sorted(data))
        expect_close(data["loss"], record["loss"], f"loss sent to W&B at step {step}")
    expect(len(lines) >= 3 and all(isinstance(line, str) for line in lines), "a progress line per record goes to `log`",
           got=lines[:3])


def test_eval_callback_every_n_epochs(nb):
    model, optimizer, scheduler = toy_setup()
    calls, run = [], FakeRun()

    def eval_fn(m):
        calls.append(m)
        return {"metric": float(len(calls))}

    result = nb.fit(model, ToyData(24), loss_fn=toy_loss, optimizer=optimizer, cfg=train_cfg(epochs=4, eval_every_epochs=2),
                    scheduler=scheduler, run=run, eval_fn=eval_fn, log=quiet)
    expect_equal(len(calls), 2, "eval_fn calls in 4 epochs with eval_every_epochs=2",
                 hint="after an epoch ends: if (epoch + 1) % cfg.eval_every_epochs == 0")
    expect(all(m is model for m in calls), "eval_fn gets the plain model (not a wrapper)")
    expect(result["evals"] == [{"epoch": 2, "step": 12, "metric": 1.0}, {"epoch": 4, "step": 24, "metric": 2.0}],
           "result['evals'] lists {'epoch', 'step', **metrics} per evaluation (epochs counted from 1 when done)",
           got=result["evals"])
    logged = [step for step, data in run.calls if any(k.endswith("metric") for k in data)]
    expect(logged == [12, 24], "the metrics also go to the W&B run, at the step of the evaluation", got=logged)


def test_nan_loss_stops_training_with_the_step(nb, tmp_path):
    calls = [0]

    def breaks_at_step_3(model, batch):
        calls[0] += 1
        loss = toy_loss(model, batch)
        return loss * math.nan if calls[0] == 3 else loss

    with pytest.raises(FloatingPointError) as info:
        _fit(nb, toy_setup(), ToyData(24), train_cfg(checkpoint_every=2), loss_fn=breaks_at_step_3,
             checkpoint_path=tmp_path / "last.pt")
    message = str(info.value)
    expect(re.search(r"step\W{0,3}3\b", message, re.IGNORECASE) is not None, "the error names the step that failed (step 3)",
           got=message[:300], hint="catch FloatingPointError around train_step and re-raise it with the step and epoch")
    state = _read(tmp_path / "last.pt")
    expect(state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values()),
           "the last checkpoint is the healthy one of step 2", got=f"step {state['step']}")


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # the scaler skipped an overflowing step
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_mixed_precision_on_cpu(nb, tmp_path, dtype):
    probe_fit(nb)
    if dtype == torch.float16 and not cpu_fp16_autocast_works():
        pytest.skip(f"torch {torch.__version__} has no fp16 autocast on CPU")
    result = _fit(nb, toy_setup(), ToyData(16), train_cfg(max_steps=3), amp_dtype=dtype, device="cpu",
                  checkpoint_path=tmp_path / "last.pt")
    expect(math.isfinite(result["final_loss"]), f"{dtype} training on CPU gives a finite loss", got=result["final_loss"])
    scaler = _read(tmp_path / "last.pt")["scaler"]
    if dtype == torch.float16:
        expect(isinstance(scaler, dict) and "scale" in scaler, "fp16 training creates a GradScaler (saved in the checkpoint)",
               got=scaler, hint="scaler = torch.amp.GradScaler(device.type) if needs_grad_scaler(amp_dtype) else None")
    else:
        expect(scaler is None, "bf16 training needs no GradScaler", got=scaler,
               hint="bf16 has fp32's exponent range: nothing underflows, nothing to scale")


def test_logs_to_wandb_offline_without_an_account(nb, tmp_path, monkeypatch):
    probe_fit(nb)
    if nb.inline:
        pytest.skip("the run-it cells of the notebook log to W&B themselves")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HARNESS_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    from harness.tracking import finish_run, init_run

    run = init_run("session05-test", {"lr": 1e-2})
    try:
        result = _fit(nb, toy_setup(), ToyData(24), train_cfg(epochs=1, log_every=2), run=run)
    finally:
        finish_run(run)  # the offline file is complete only once W&B's writer has closed it
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    expect(len(runs) == 1, "one offline W&B run folder", got=[p.name for p in runs])
    data = b"".join(p.read_bytes() for p in runs[0].rglob("*.wandb"))
    for key in (b"loss", b"lr", b"grad_norm", b"examples_per_second"):
        expect(key in data, f"the offline run file holds `{key.decode()}`", hint="run.log({...}, step=step) on rank 0")
    expect(len(result["history"]) == 3, "history of the W&B-logged run", got=len(result["history"]))


@pytest.mark.time_limit(120)
def test_torchrun_two_processes_on_gloo(nb, tmp_path, monkeypatch):
    import torch.distributed as dist

    from harness.config import load_config
    from harness.data import load_dataset
    from harness.pipeline.retrieval import windowed_examples

    probe_fit(nb)
    if nb.inline:
        pytest.skip("torchrun starts new processes that read the notebook file: run `pytest harness/session_05`")
    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend")
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    dataset = load_dataset("synthetic", "smoke")  # prepared here, once, before two processes read it
    n = len(windowed_examples(dataset.sequences(upto="valid"), load_config("two_tower", "smoke").train.max_len))
    out, batch = tmp_path / "out", 32
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "HARNESS_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "harness", "train", "--dataset", "synthetic", "--preset", "smoke", "--tower", "mean", "--epochs", "1",
           "--max-steps", "0", "--batch-size", str(batch), "--device", "cpu", "--no-wandb", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=repo_root(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=100)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        expect(False, "`torchrun --nproc_per_node 2 -m harness train` finishes within 100 s",
               hint="a collective (all_reduce, barrier) that only some ranks reach makes the others wait forever: "
                    "log and checkpoint on rank 0 only, but let every rank take part in every all_reduce")
    if proc.returncode != 0:
        stub = STUB_MESSAGE.search(output)
        if stub:
            raise NotImplementedError(stub.group(0))
        tail = "\n".join(output.strip().splitlines()[-12:])
        expect(False, "`torchrun --nproc_per_node 2 -m harness train` exits with code 0",
               got=f"exit code {proc.returncode}; last lines:\n{tail}")
    results = []
    for rank in (0, 1):
        path = out / f"result-rank{rank}.json"
        expect(path.is_file(), f"rank {rank} wrote {path.name}", got=sorted(p.name for p in out.iterdir()))
        results.append(json.loads(path.read_text()))
    expect(all(r["world_size"] == 2 for r in results), "both processes see a world of 2",
           got=[r["world_size"] for r in results])
    expect(all(math.isfinite(r["loss"]) for r in results), "the loss is finite on both ranks",
           got=[r["loss"] for r in results])
    low, high = (n // 2) // batch, math.ceil(math.ceil(n / 2) / batch)
    expect(all(low <= r["steps"] <= high for r in results),
           f"one epoch of {n} windows split over 2 ranks in batches of {batch} is {high} steps per rank "
           f"(one process alone: {math.ceil(n / batch)})", got=[r["steps"] for r in results],
           hint="under torch.distributed, DistributedSampler(train_data, num_replicas=world, rank=rank, seed=cfg.seed) "
                "with set_epoch(epoch) gives each rank its own share")
    expect(results[0]["checksum"] == results[1]["checksum"], "both ranks end with identical weights",
           got=f"parameter sums {results[0]['param_sum']:.9g} vs {results[1]['param_sum']:.9g}",
           hint="wrap the model (with its loss: LossForward) in DistributedDataParallel so that gradients are averaged "
                "across ranks during backward")


def test_fit_on_cuda(nb, tmp_path):
    probe_fit(nb)
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: the GPU path of fit is checked on a GPU machine")
    dtypes = [torch.float16] + ([torch.bfloat16] if torch.cuda.is_bf16_supported() else [])
    for dtype in dtypes:
        path = tmp_path / f"{str(dtype)[6:]}.pt"
        setup = toy_setup()
        result = _fit(nb, setup, ToyData(24), train_cfg(max_steps=8), amp_dtype=dtype, device="cuda",
                      checkpoint_path=path)
        expect(math.isfinite(result["final_loss"]), f"{dtype} training on CUDA gives a finite loss", got=result)
        expect(all(p.is_cuda and p.dtype == torch.float32 for p in setup[0].parameters()),
               "the model trains on the GPU in float32 master weights")
        resumed = toy_setup(seed=9)
        result = _fit(nb, resumed, ToyData(24), train_cfg(max_steps=12), amp_dtype=dtype, device="cuda",
                      checkpoint_path=path, resume=True)
        expect_equal(result["steps"], 12, f"{dtype}: a CUDA run resumes from its checkpoint")
