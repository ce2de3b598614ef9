"""Fixtures of session 04: a tiny reference two-tower model and a collated batch of windows."""
import pytest
import torch

from harness.autograder.loader import load_session

N_ITEMS, N_CATEGORIES, DIM = 30, 4, 16


@pytest.fixture
def reference3():
    return load_session(3, "solutions")


@pytest.fixture
def model(reference3):
    torch.manual_seed(0)
    categories = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(N_ITEMS) % N_CATEGORIES + 1])
    return reference3.build_two_tower(N_ITEMS, categories, N_CATEGORIES, tower="transformer", dim=DIM,
                                      category_dim=4, dropout=0.0, layers=1, heads=2)


@pytest.fixture
def batch():
    """Three left-padded windows: histories of 2, 4 and 1 items, with their next items."""
    history = torch.tensor([[0, 0, 5, 7], [3, 9, 2, 11], [0, 0, 0, 4]])
    return {"history": history, "mask": history != 0, "target": torch.tensor([8, 6, 12]),
            "lengths": (history != 0).sum(1), "user_id": torch.tensor([1, 2, 3])}
