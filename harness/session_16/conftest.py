"""Fixtures of session 16: a small code table with collisions, a tiny dataset with planted splits, decoders.

The exercises that build on earlier ones in this session (the decoder on the block, the beam search on
the decoder and the trie) are graded with the reference's components, so one mistake fails one
exercise, not every exercise after it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from harness.autograder.loader import load_session
from harness.data.schema import RecDataset

# 14 items, two levels (4 and 3 codes) and a disambiguation column (3 values): items 2, 3 share the prefix
# (0, 1); 8, 9, 10 share (2, 0); 5 and 11 share (1, 0); 13 and 14 share (3, 1). Level-0 code 3 belongs to
# items 12, 13 and 14 alone: the tiny dataset holds them out (valid and test items only).
SIZES = (4, 3, 3)
CODES = torch.tensor([
    [0, 0, 0],  # padding
    [0, 0, 0], [0, 1, 0], [0, 1, 1], [0, 2, 0], [1, 0, 0], [1, 1, 0], [1, 2, 0],
    [2, 0, 0], [2, 0, 1], [2, 0, 2], [1, 0, 1], [3, 0, 0], [3, 1, 0], [3, 1, 1],
])
N_ITEMS = CODES.shape[0] - 1
VOCAB = 2 + sum(SIZES)  # PAD, BOS, then 4 + 3 + 3 codes


@pytest.fixture
def reference():
    """Session 16's reference solution (components an exercise builds on, and expected values)."""
    return load_session(16, "solutions")


def reference_table(reference) -> torch.Tensor:
    return reference.item_token_table(CODES, SIZES)


def small_decoder(module, seed: int = 0, dim: int = 16, layers: int = 2, heads: int = 2, dropout: float = 0.0,
                  vocab: int = VOCAB):
    torch.manual_seed(seed)
    return module.GenerativeDecoder(vocab, dim=dim, layers=layers, heads=heads, dropout=dropout).eval()


def peaked_reference_decoder(reference, seed: int = 0):
    """A reference decoder with random, large weights: its next-token distributions are far from uniform."""
    from harness.autograder.modules import perturb

    model = small_decoder(reference, seed=seed)
    perturb(model, seed)
    with torch.no_grad():
        model.token_embedding.weight.mul_(25.0)
    return model


def tiny_dataset() -> RecDataset:
    """Four users whose valid and test items (12, 13, 14) appear in nobody's train part.

    user 1: train 1 2 3 4 5 6 7 8 9, valid 13, test 14   (9 train items)
    user 2: train 5 3,                valid 14, test 13
    user 3: train 8,                  valid 13, test 14
    user 4: train 2 4 6 8 10 1 3 5 7 9 11, valid 12, test 13
    """
    rows = []
    plan = {1: ([1, 2, 3, 4, 5, 6, 7, 8, 9], 13, 14), 2: ([5, 3], 14, 13), 3: ([8], 13, 14),
            4: ([2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11], 12, 13)}
    for user, (train, valid, test) in plan.items():
        items = train + [valid, test]
        splits = ["train"] * len(train) + ["valid", "test"]
        for t, (item, split) in enumerate(zip(items, splits)):
            rows.append({"user_id": user, "item_id": item, "rating": 4.0, "timestamp": 1000 * user + t, "split": split})
    interactions = pd.DataFrame(rows)
    items = pd.DataFrame({"item_id": np.arange(1, N_ITEMS + 1), "title": [f"item {i}" for i in range(1, N_ITEMS + 1)],
                          "text": [""] * N_ITEMS, "category": ["c"] * N_ITEMS})
    users = pd.DataFrame({"user_id": np.arange(1, 5)})
    return RecDataset("tiny", interactions, items, users, {"n_users": 4, "n_items": N_ITEMS, "fingerprint": "tiny"})


HELD_OUT = (12, 13, 14)  # items that appear only as valid or test items; their level-0 token is 2 + 3 = 5
HELD_OUT_TOKEN = 5


def left_padded_prompts(reference, histories, max_items: int = 3) -> torch.Tensor:
    return reference.history_tokens(histories, reference_table(reference), max_items)
