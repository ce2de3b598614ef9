"""Exercise 7: score_all_items (graded with reference towers)."""

import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_shape

from .conftest import DIM, N_ITEMS, left_padded

pytestmark = pytest.mark.exercise("score_all_items")


@pytest.fixture
def model(reference, item_tower):
    torch.manual_seed(3)
    users = reference.MeanPoolUserTower(item_tower, dim=DIM, dropout=0.0)
    return reference.TwoTower(item_tower, users).eval()


def test_shape_and_padding_column(nb, model):
    h, m = left_padded([[1, 2], [3, 4, 5]])
    scores = nb.score_all_items(model, h, m)
    expect_shape(scores, (2, N_ITEMS + 1), "scores against every item id")
    expect(bool(torch.isneginf(scores[:, 0]).all()), "column 0 (padding) is -inf", got=scores[:, 0].tolist(),
           hint="scores[:, 0] = -math.inf")


def test_scores_are_cosine_similarities(nb, model):
    h, m = left_padded([[1, 2], [3, 4, 5]])
    scores = nb.score_all_items(model, h, m)
    users = model.user_tower(h, m)
    items = model.item_tower(torch.arange(N_ITEMS + 1))
    expected = users @ items.T
    expect_close(scores[:, 1:], expected[:, 1:], "scores are user · item of the normalised towers", atol=1e-5,
                 hint="use model.item_tower(...) (normalised), not item_tower.encode(...)")
    expect(bool((scores[:, 1:].abs() <= 1 + 1e-5).all()), "cosine similarities lie in [-1, 1]")
