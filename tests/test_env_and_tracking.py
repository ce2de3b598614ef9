"""Provided basics: device and AMP dtype, seeding, W&B without an account."""
from __future__ import annotations

import torch

from harness.env import amp_dtype, environment_report, needs_grad_scaler, pick_device
from harness.seeding import seed_everything


def test_cpu_defaults_to_fp32():
    assert amp_dtype("cpu") is None
    assert needs_grad_scaler(torch.float16) and not needs_grad_scaler(torch.bfloat16)
    assert not needs_grad_scaler(None)


def test_pick_device_can_be_forced(monkeypatch):
    monkeypatch.setenv("HARNESS_DEVICE", "cpu")
    assert pick_device().type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.setenv("HARNESS_DEVICE", "cuda")
        try:
            pick_device()
        except RuntimeError as err:
            assert "no CUDA GPU" in str(err)
        else:
            raise AssertionError("asking for CUDA on a CPU machine should fail clearly")


def test_report_mentions_what_a_learner_needs():
    text = str(environment_report())
    for word in ("torch", "device", "AMP dtype", "FAISS", "sentence-transformers", "W&B"):
        assert word in text


def test_seed_everything_reproduces():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_wandb_offline_run_without_account(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    from harness.tracking import init_run

    run = init_run("offline-check", {"lr": 1e-3}, mode="offline")
    for step in range(3):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.finish()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_wandb_mode_is_validated(monkeypatch):
    from harness.tracking import wandb_mode

    monkeypatch.setenv("WANDB_MODE", "sometimes")
    try:
        wandb_mode()
    except ValueError as err:
        assert "offline" in str(err)
    else:
        raise AssertionError("an unknown WANDB_MODE should be refused")
