"""Exercise 2: MeanPoolUserTower (graded with the reference ItemTower)."""
import pytest
import torch

from harness.autograder.modules import expect_same_function, share_weights
from harness.autograder.checks import expect, expect_close, expect_shape

from .conftest import DIM, N_CATEGORIES, N_ITEMS, categories, left_padded

pytestmark = pytest.mark.exercise("MeanPoolUserTower")


def _tower(nb, item_tower):
    torch.manual_seed(1)
    return nb.MeanPoolUserTower(item_tower, dim=DIM, dropout=0.0).eval()


def test_shapes_and_norm(nb, item_tower):
    tower = _tower(nb, item_tower)
    history, mask = left_padded([[1, 2, 3], [4, 5], [6]])
    expect_shape(tower.encode(history, mask), (3, 3, DIM), "encode: one embedding per position")
    out = tower(history, mask)
    expect_shape(out, (3, DIM), "forward: one embedding per user")
    expect_close(out.norm(dim=-1), torch.ones(3), "norm of the user embeddings", atol=1e-5,
                 hint="F.normalize(..., dim=-1) as the last step")


def test_extra_padding_changes_nothing(nb, item_tower):
    tower = _tower(nb, item_tower)
    history, mask = left_padded([[1, 2, 3], [7, 8]])
    wide_h, wide_m = left_padded([[1, 2, 3], [7, 8]], width=9)
    expect_close(tower(wide_h, wide_m), tower(history, mask), "user embedding with 6 extra padded positions",
                 atol=1e-5, hint="average over the real positions only: divide by mask.sum(), never by L")


def test_padded_positions_are_ignored(nb, item_tower):
    tower = _tower(nb, item_tower)
    history, mask = left_padded([[1, 2, 3]], width=5)
    garbage = history.clone()
    garbage[0, :2] = torch.tensor([9, 11])  # ids at masked positions must not matter
    expect_close(tower(garbage, mask), tower(history, mask), "user embedding when masked positions hold other ids",
                 atol=1e-5, hint="multiply the item encodings by the mask before summing")


def test_prefix_positions_are_causal(nb, item_tower):
    tower = _tower(nb, item_tower)
    history, mask = left_padded([[3, 1, 4, 1, 5]])
    per_position = tower.encode(history, mask)
    for j in range(1, 5):
        prefix_h, prefix_m = left_padded([history[0, : j + 1].tolist()])
        expect_close(per_position[0, j], tower(prefix_h, prefix_m)[0], f"position {j} equals the tower on items 0..{j}",
                     atol=1e-5, hint="prefix means: cumsum of the masked encodings over cumsum of the mask")


def test_last_position_is_order_free(nb, item_tower):
    tower = _tower(nb, item_tower)
    a, m = left_padded([[3, 1, 4, 9]])
    b, _ = left_padded([[9, 4, 1, 3]])
    expect_close(tower(a, m), tower(b, m), "the mean of a history does not depend on its order", atol=1e-5)


def test_shares_the_item_tower(nb, item_tower):
    tower = _tower(nb, item_tower)
    ids = {id(p) for p in tower.parameters()}
    expect(all(id(p) in ids for p in item_tower.parameters()), "the item tower's parameters are part of the user tower",
           hint="keep the item tower as self.item_tower and encode the history with it")
    own = [n for n, _ in tower.named_parameters() if not n.startswith("item_tower.")]
    expect(len(own) >= 2, "the tower's own MLP is registered", got=own)


def test_one_call_per_batch(nb, item_tower):
    tower = _tower(nb, item_tower)
    calls = []
    handle = item_tower.item_embedding.register_forward_hook(lambda *a: calls.append(1))
    history = torch.randint(1, N_ITEMS + 1, (64, 12))
    tower(history, history != 0)
    handle.remove()
    expect(len(calls) <= 2, "the batch is encoded in one go, not row by row", got=f"{len(calls)} embedding calls",
           hint="no Python loop over the batch: tensor operations work on (B, L) at once")


def test_same_function_as_specified(nb, reference):
    def build(module):
        torch.manual_seed(1)
        items = reference.ItemTower(N_ITEMS, categories(), N_CATEGORIES, dim=DIM, category_dim=4, dropout=0.0)
        return module.MeanPoolUserTower(items, dim=DIM, dropout=0.0).eval()

    learner, ref = build(nb), build(reference)
    share_weights(learner, ref, "MeanPoolUserTower")
    history, mask = left_padded([[1, 2, 3, 4], [5, 6], [], [7]], width=6)  # row 2: nothing but padding
    expect_same_function(learner, ref, (history, mask), "MeanPoolUserTower.encode (padded positions included)",
                         call=lambda m, h, k: m.encode(h, k),
                         hint="p_j = sum_{t<=j} m_t h_t / max(1, sum_{t<=j} m_t), then normalize(p + mlp(p)) with "
                              "mlp = Linear(dim, 2 dim), GELU, Dropout, Linear(2 dim, dim); the max(1, .) keeps "
                              "all-padding prefixes at 0 instead of 0/0 = NaN")
    expect_same_function(learner, ref, (history, mask), "MeanPoolUserTower.forward")
