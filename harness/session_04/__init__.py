"""Session 04 — contrastive loss and the training step: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=4,
    slug="contrastive_loss",
    title="Contrastive loss and the training step: in-batch softmax, logQ, accidental hits, AdamW",
    exercises=(
        Exercise(
            "item_log_q",
            summary="log of each item's probability of appearing in a batch, from training counts (add-one smoothed)",
            hint="q = (counts[1:] + 1) / (counts[1:] + 1).sum() in float64; log_q = zeros(n_items + 1); "
                 "log_q[1:] = log(q). Slot 0 is padding and is never a candidate: leave it at 0."),
        Exercise(
            "in_batch_softmax_loss",
            summary="softmax over the batch's items: row i's positive is column i; logQ-corrected, duplicates masked",
            hint="logits = user @ item.T / temperature (rows = users, columns = candidate items); subtract "
                 "log_q[item_ids] from every column j (Yi et al.: s - log q); set logits[i, j] = -inf where "
                 "item_ids[j] == item_ids[i] and j != i; F.cross_entropy(logits, arange(B)) (softmax over dim 1)."),
        Exercise(
            "contrastive_batch_loss",
            summary="the loss of a batch of windows: a user embedding at every real position predicts the next item",
            hint="out = model.user_tower.encode(history, mask); targets = cat([history[:, 1:], target[:, None]], 1) "
                 "(the item after each position); keep rows where mask is True; items = model.item_tower(ids); "
                 "return in_batch_softmax_loss(out[mask], items, ids, temperature, log_q)."),
        Exercise(
            "build_optimizer",
            summary="AdamW with weight decay on dense weights only: never embeddings, norm gains or biases",
            hint="Walk model.named_modules(); a parameter decays only if it is the `weight` of an nn.Linear. "
                 "Embedding tables are 2-D too, so `p.ndim >= 2` is the classic trap. Two groups: "
                 "{'params': decay, 'weight_decay': wd}, {'params': no_decay, 'weight_decay': 0.0}."),
        Exercise(
            "training_step",
            summary="one optimisation step: train mode, loss, zero_grad, backward, step; returns the loss as a float",
            hint="model.train(); loss = contrastive_batch_loss(...); optimizer.zero_grad(set_to_none=True); "
                 "loss.backward(); optimizer.step(); return loss.item() (a float, not a tensor holding the graph)."),
    ),
)
