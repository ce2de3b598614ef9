"""Fixtures of session 05: a tiny regression problem with dropout, a training config, the reference loop."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.autograder.loader import load_session


class ToyData(torch.utils.data.Dataset):
    """n examples {"x": (8,), "y": (), "index": int} of a noisy linear target."""

    def __init__(self, n: int = 24, dim: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.linspace(-1, 1, dim) + 0.1 * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "index": i}


def toy_model(seed: int = 0, dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Dropout(dropout), nn.Linear(16, 1))


def toy_loss(model: nn.Module, batch: dict) -> torch.Tensor:
    return F.mse_loss(model(batch["x"]).squeeze(-1).float(), batch["y"])


def decay(step: int) -> float:
    return 1.0 / (1.0 + 0.1 * step)


def toy_setup(seed: int = 0, lr: float = 1e-2, dropout: float = 0.2):
    """(model, AdamW, LambdaLR) built from ``seed``: the same seed gives the same objects."""
    model = toy_model(seed, dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    return model, optimizer, scheduler


def trained_toy(steps: int = 2, seed: int = 0):
    """Toy model, optimizer, scheduler and a CPU GradScaler after a few steps (every state non-trivial)."""
    model, optimizer, scheduler = toy_setup(seed)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**7)
    data = ToyData(4 * steps)
    for i in range(steps):
        batch = {"x": data.x[4 * i: 4 * i + 4], "y": data.y[4 * i: 4 * i + 4]}
        optimizer.zero_grad()
        scaler.scale(toy_loss(model, batch)).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    return model, optimizer, scheduler, scaler


def train_cfg(**overrides) -> SimpleNamespace:
    """The settings ``fit`` reads, small enough for a test."""
    base = dict(batch_size=4, epochs=3, max_steps=None, max_minutes=None, max_grad_norm=1.0, log_every=2,
                checkpoint_every=5, eval_every_epochs=1, seed=0)
    base.update(overrides)
    return SimpleNamespace(**base)


def quiet(*args, **kwargs) -> None:
    pass


def probe_fit(nb) -> dict:
    """One step of the learner's ``fit`` on toy data: raises NotImplementedError while it is a stub."""
    model, optimizer, scheduler = toy_setup()
    return nb.fit(model, ToyData(8), loss_fn=toy_loss, optimizer=optimizer, cfg=train_cfg(max_steps=1),
                  scheduler=scheduler, log=quiet)


def cpu_fp16_autocast_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.float16):
            out = nn.Linear(4, 4)(torch.randn(2, 4))
        return out.dtype == torch.float16
    except Exception:  # noqa: BLE001 - an older torch raises anything here
        return False


@pytest.fixture
def reference():
    """Session 05's reference solution (to write checkpoints for the loader, and read the saver's)."""
    return load_session(5, "solutions")
