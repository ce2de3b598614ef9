"""Exercise 3: contrastive_batch_loss (graded with reference towers and a spy on the loss)."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_equal

pytestmark = pytest.mark.exercise("contrastive_batch_loss")


@pytest.fixture
def spy(nb, monkeypatch):
    """Replace in_batch_softmax_loss in the notebook by a recorder, so this exercise is graded alone."""
    calls = []

    def record(user_emb, item_emb, item_ids, temperature, log_q=None):
        calls.append({"user_emb": user_emb, "item_emb": item_emb, "item_ids": item_ids,
                      "temperature": temperature, "log_q": log_q})
        return (user_emb * item_emb).sum()

    monkeypatch.setitem(nb._globals(), "in_batch_softmax_loss", record)
    return calls


def test_targets_are_the_next_items(nb, model, batch, spy):
    nb.contrastive_batch_loss(model, batch, 0.1)
    expect(len(spy) == 1, "in_batch_softmax_loss is called once per batch", got=f"{len(spy)} calls")
    # real positions in row order: row 0 [5, 7] -> [7, 8]; row 1 [3, 9, 2, 11] -> [9, 2, 11, 6]; row 2 [4] -> [12]
    expect_equal(spy[0]["item_ids"], torch.tensor([7, 8, 9, 2, 11, 6, 12]),
                 "the positive of each real position is the item AFTER it (the window's target after the last)",
                 hint="targets = cat([history[:, 1:], target[:, None]], dim=1), then keep targets[mask]")


def test_user_rows_are_the_real_positions(nb, model, batch, spy):
    model.eval()
    nb.contrastive_batch_loss(model, batch, 0.1)
    expected = model.user_tower.encode(batch["history"], batch["mask"])[batch["mask"]]
    expect_close(spy[0]["user_emb"], expected, "user embeddings passed to the loss: one per real position",
                 atol=1e-5, hint="user_tower.encode(history, mask) gives (B, L, d); index it with the boolean mask")


def test_item_side_uses_the_item_tower(nb, model, batch, spy):
    model.eval()
    nb.contrastive_batch_loss(model, batch, 0.1)
    expect_close(spy[0]["item_emb"], model.item_tower(spy[0]["item_ids"]), "item embeddings of the positives",
                 atol=1e-5, hint="model.item_tower(item_ids): normalised embeddings of the target items")


def test_temperature_and_log_q_are_passed_on(nb, model, batch, spy):
    log_q = torch.zeros(31)
    nb.contrastive_batch_loss(model, batch, 0.25, log_q)
    expect(spy[0]["temperature"] == 0.25 and spy[0]["log_q"] is log_q, "temperature and log_q reach the loss")


def test_real_loss_is_finite_and_trains(nb, model, batch):
    loss = nb.contrastive_batch_loss(model, batch, 0.1)
    expect(loss.dim() == 0 and bool(torch.isfinite(loss)), "the batch loss is a finite scalar", got=loss)
    loss.backward()
    expect(model.item_tower.item_embedding.weight.grad is not None, "the loss back-propagates into the item table")
