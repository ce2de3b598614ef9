"""Exercise 5: training_step, and the loss falling on planted data."""
import pytest
import torch
from torch.utils.data import DataLoader

from harness.autograder.checks import expect, expect_close

pytestmark = pytest.mark.exercise("training_step")


def test_returns_a_float_and_updates(nb, model, batch):
    model.eval()  # as an evaluation between steps leaves it: the step must switch dropout back on itself
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.item_tower.item_embedding.weight.detach().clone()
    loss = nb.training_step(model, batch, opt, 0.1)
    expect(isinstance(loss, float), "training_step returns a Python float", got=type(loss).__name__,
           hint="return loss.item(): a tensor keeps its autograd graph alive")
    expect(not torch.equal(before, model.item_tower.item_embedding.weight), "the parameters were updated",
           hint="call optimizer.step() after loss.backward()")
    expect(model.training, "the model is in training mode", hint="model.train() at the start of the step")


def test_gradients_do_not_accumulate(nb, model, batch):
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: weights stay, gradients are observable
    nb.training_step(model, batch, opt, 0.1)
    nb.training_step(model, batch, opt, 0.1)
    grad = model.item_tower.item_embedding.weight.grad.clone()
    model.zero_grad()
    ref = load_reference_loss(model, batch)
    ref.backward()
    expect_close(grad, model.item_tower.item_embedding.weight.grad, "gradient after two steps equals one step's gradient",
                 atol=1e-6, hint="optimizer.zero_grad(set_to_none=True) before loss.backward()")


def load_reference_loss(model, batch):
    from harness.autograder.loader import load_session

    return load_session(4, "solutions").contrastive_batch_loss(model, batch, 0.1)


@pytest.mark.time_limit(90)
def test_loss_falls_on_planted_data(nb, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    from harness import upstream
    from harness.data import load_dataset
    from harness.evaluation import evaluate_scores
    from harness.pipeline.retrieval import evaluate_two_tower, windowed_examples

    reference = load_session_4()
    ds = load_dataset("synthetic", "smoke")
    codes, names = ds.category_codes()
    torch.manual_seed(0)
    model = upstream(3).build_two_tower(ds.n_items, torch.from_numpy(codes), len(names), tower="mean", dim=32,
                                        dropout=0.0)
    opt = reference.build_optimizer(model, 3e-3, 0.0)
    log_q = reference.item_log_q(torch.from_numpy(ds.item_counts("valid")))
    loader = DataLoader(windowed_examples(ds.sequences("valid"), 50), batch_size=64, shuffle=True,
                        collate_fn=upstream(2).collate_sequences, generator=torch.Generator().manual_seed(0))
    losses = []
    while len(losses) < 200:
        for b in loader:
            losses.append(nb.training_step(model, b, opt, 0.1, log_q))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    expect(last < first - 0.5, "the loss falls by more than 0.5 nats in 200 steps on the planted synthetic data",
           got=f"{first:.2f} -> {last:.2f}")
    counts = torch.tensor(ds.item_counts("valid"), dtype=torch.float64)
    popularity = evaluate_scores(lambda u: counts.expand(len(u), -1), ds, "valid", ks=(10,))["HR@10"]
    learned = evaluate_two_tower(model, ds, "valid", ks=(10,))["HR@10"]
    expect(learned > popularity + 0.05, "the trained model beats popularity on valid HR@10 by 0.05",
           got=f"model {learned:.3f} vs popularity {popularity:.3f}")


def load_session_4():
    from harness.autograder.loader import load_session

    return load_session(4, "solutions")
