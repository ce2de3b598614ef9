"""Fixtures of session 03: small reference item towers, so a user tower is graded on its own."""
import pytest
import torch

from harness.autograder.loader import load_session

N_ITEMS, N_CATEGORIES, DIM = 40, 5, 16


def categories() -> torch.Tensor:
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(N_ITEMS) % N_CATEGORIES + 1])


@pytest.fixture
def reference():
    """Session 03's reference solution (for the components an exercise builds on)."""
    return load_session(3, "solutions")


@pytest.fixture
def item_tower(reference):
    torch.manual_seed(0)
    return reference.ItemTower(N_ITEMS, categories(), N_CATEGORIES, dim=DIM, category_dim=4, dropout=0.0).eval()


def left_padded(rows: list[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    width = width or max(len(r) for r in rows)
    history = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        if r:
            history[b, width - len(r):] = torch.tensor(r)
    return history, history != 0
