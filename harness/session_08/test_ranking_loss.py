"""Exercise 5: ranking_loss (a tiny DLRM from session 07's reference, and fixed logits)."""
import pytest
import torch
import torch.nn.functional as F

from harness.autograder.checks import expect, expect_close, expect_shape

from .conftest import FixedLogits, group_batch, oracle_bce, oracle_bpr, tiny_dlrm

pytestmark = pytest.mark.exercise("ranking_loss")


def _groups(B, G, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn(B * G, generator=g)


def test_bce_over_every_row(nb):
    B, G = 3, 5  # B != G: grouping along the wrong axis gives another number
    logits = _groups(B, G)
    model = FixedLogits(logits)
    loss = nb.ranking_loss(model, {"group_size": G}, loss="bce")
    expect_shape(loss, (), "the loss is a scalar")
    labels = torch.zeros(B, G)
    labels[:, 0] = 1.0
    expect_close(loss, oracle_bce(logits.view(B, G), labels).mean(), "pointwise loss: BCE over all B * G rows, "
                 "label 1 for the first row of each group", rtol=1e-5, atol=1e-6,
                 hint="scores = model(batch).view(-1, G): consecutive rows form a group, its positive in column 0; "
                      "view(G, -1) would mix the groups")
    expect(model.calls == 1, "one forward pass scores the whole batch", got=f"{model.calls} calls")


def test_bpr_within_groups(nb):
    B, G = 4, 3
    logits = _groups(B, G, seed=1)
    loss = nb.ranking_loss(FixedLogits(logits), {"group_size": G}, loss="bpr")
    s = logits.view(B, G)
    expect_close(loss, oracle_bpr(s[:, 0], s[:, 1:]).mean(), "pairwise loss: each positive against its own "
                 "group's negatives", rtol=1e-5, atol=1e-6,
                 hint="bpr_loss(scores[:, 0], scores[:, 1:]): the positive is never its own negative")


def test_logits_not_squashed(nb):
    B, G = 2, 3
    logits = torch.tensor([40.0, -40.0, -30.0, -25.0, 35.0, 30.0])  # group 1's positive is scored below its negatives
    labels = torch.zeros(B, G)
    labels[:, 0] = 1.0
    bce = nb.ranking_loss(FixedLogits(logits), {"group_size": G}, loss="bce")
    expect_close(bce, oracle_bce(logits.view(B, G), labels).mean(), "BCE on logits of ±40", rtol=1e-5, atol=1e-5,
                 hint="the model returns logits and both losses take logits: no sigmoid in between")
    bpr = nb.ranking_loss(FixedLogits(logits), {"group_size": G}, loss="bpr")
    s = logits.view(B, G)
    expect_close(bpr, oracle_bpr(s[:, 0], s[:, 1:]).mean(), "BPR on logits of ±40", rtol=1e-5, atol=1e-5)


def test_half_precision_logits_give_a_float32_loss(nb):
    B, G = 4, 3
    logits = (_groups(B, G, seed=3) * 4).to(torch.bfloat16)  # what a model under bf16 autocast returns
    labels = torch.zeros(B, G)
    labels[:, 0] = 1.0
    for loss_name, want in (("bce", oracle_bce(logits.float().view(B, G), labels).mean()),
                            ("bpr", oracle_bpr(logits.float().view(B, G)[:, 0], logits.float().view(B, G)[:, 1:]).mean())):
        got = nb.ranking_loss(FixedLogits(logits), {"group_size": G}, loss=loss_name)
        expect(got.dtype == torch.float32, f"{loss_name}: bf16 logits give a float32 loss", got=str(got.dtype),
               hint="cast the logits first: model(batch).float(); a bf16 loss keeps 3 significant digits")
        expect_close(got, want, f"{loss_name} on bf16 logits, computed in float32", rtol=1e-5, atol=1e-6)


def test_gradients_reach_the_dlrm(nb):
    B, G = 3, 4
    batch = group_batch(B, G)
    model = tiny_dlrm()
    loss = nb.ranking_loss(model, batch, loss="bce")
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    expect(len(got) == len(list(model.parameters())), "every DLRM parameter gets a gradient",
           got=f"{len(got)} of {len(list(model.parameters()))}", hint="don't detach the logits or call .item()")
    model.zero_grad()
    labels = torch.zeros(B, G)
    labels[:, 0] = 1.0
    F.binary_cross_entropy_with_logits(model(batch).view(B, G), labels).backward()
    for name, p in model.named_parameters():
        expect_close(got[name], p.grad, f"the gradient of `{name}` under the BCE ranking loss", rtol=1e-4, atol=1e-6)


def test_drives_training(nb):
    batch = group_batch(8, 4, seed=2)
    model = tiny_dlrm(seed=1)
    losses = []
    for _ in range(60):  # what session 05's train_step does with a loss_fn, minus the bookkeeping (plain SGD)
        loss = nb.ranking_loss(model, batch, loss="bpr")
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for param in model.parameters():
                if param.grad is not None:
                    param -= 0.5 * param.grad
        losses.append(float(loss))
    expect(losses[-1] < 0.5 * losses[0], "60 gradient steps on one batch drive the BPR loss down",
           got=f"{losses[0]:.3f} -> {losses[-1]:.3f}", hint="the loss must be a differentiable scalar of the model's logits")


def test_unknown_loss(nb):
    nb.ranking_loss(FixedLogits(_groups(2, 3)), {"group_size": 3})
    with pytest.raises(ValueError):
        nb.ranking_loss(FixedLogits(_groups(2, 3)), {"group_size": 3}, loss="listwise")
