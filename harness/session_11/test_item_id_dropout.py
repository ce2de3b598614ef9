"""Exercise 6: ItemIDDropout."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close
from harness.autograder.loader import load_session
from harness.pipeline.features import BagFeature, FeatureSpec, SparseFeature, example_batch

pytestmark = pytest.mark.exercise("ItemIDDropout")

SPEC = FeatureSpec(sparse=(SparseFeature("user_id", 30, "user"), SparseFeature("item_id", 40, "item")),
                   bags=(BagFeature("history", 40, 4, "user"), BagFeature("genres", 6, 2, "item")),
                   dense=("log_item_count", "log_user_count", "log_price"), dense_mean=(2.0, 3.0, 4.0),
                   dense_std=(1.0, 1.0, 1.0))


def _batch(n=64, seed=0):
    batch = example_batch(SPEC, batch_size=n, seed=seed, unknown_share=0.0)
    batch["item"] = torch.randint(1, 40, (n,), generator=torch.Generator().manual_seed(seed))
    batch["dense"] = batch["dense"].abs() + 0.5  # every count is positive, so a dropped one shows
    return batch


def _clone(batch):
    return {k: v.clone() for k, v in batch.items()}


def test_eval_mode_leaves_the_batch_alone(nb):
    module = nb.ItemIDDropout(0.9, count_column=0).eval()
    batch = _batch()
    out = module(_clone(batch))
    for key, value in batch.items():
        expect(torch.equal(out[key], value), f"in eval mode `{key}` passes through unchanged",
               hint="if not self.training: return the batch as it is. ID dropout at evaluation would hide every warm "
                    "item's ID: at test time and in serving, warm items keep their best feature")


def test_probability_zero_and_one(nb):
    module = nb.ItemIDDropout(0.0, count_column=0).train()
    batch = _batch()
    out = module(_clone(batch))
    expect(torch.equal(out["item_id"], batch["item_id"]) and torch.equal(out["dense"], batch["dense"]),
           "p = 0 drops nothing")
    out = nb.ItemIDDropout(1.0, count_column=0).train()(_clone(batch))
    expect(bool((out["item_id"] == 0).all()), "p = 1 sets every item_id code to 0", got=out["item_id"][:8])
    expect(bool((out["dense"][:, 0] == 0).all()), "p = 1 sets every log_item_count to 0", got=out["dense"][:8, 0],
           hint="a cold item has popularity 0 too: dense[:, count_column] = 0 where the ID is dropped")


def test_drops_a_share_p_of_the_rows(nb):
    torch.manual_seed(0)
    batch = _batch(n=20_000)
    for p in (0.2, 0.7):
        out = nb.ItemIDDropout(p, count_column=0).train()(_clone(batch))
        share = float((out["item_id"] == 0).float().mean())
        expect(abs(share - p) < 0.02, f"with p = {p}, a share p of the rows is dropped (20,000 rows)",
               got=f"{share:.3f}", hint="drop = torch.rand(B) < p: True with probability p, one draw per row")


def test_same_rows_for_the_id_and_the_count(nb):
    torch.manual_seed(1)
    batch = _batch(n=2000)
    out = nb.ItemIDDropout(0.5, count_column=0).train()(_clone(batch))
    dropped_id, dropped_count = out["item_id"] == 0, out["dense"][:, 0] == 0
    expect(torch.equal(dropped_id, dropped_count), "the rows whose ID is dropped are the rows whose count is dropped",
           got=f"{int((dropped_id != dropped_count).sum())} rows differ",
           hint="one Bernoulli draw per row, used for both: the row looks like a cold item or like itself")
    kept = ~dropped_id
    expect(torch.equal(out["item_id"][kept], batch["item_id"][kept]) and
           torch.equal(out["dense"][kept], batch["dense"][kept]), "rows not dropped keep their ID and count")


def test_everything_else_is_kept(nb):
    torch.manual_seed(2)
    batch = _batch(n=500)
    out = nb.ItemIDDropout(0.6, count_column=0).train()(_clone(batch))
    expect(set(out) == set(batch), "the output has the batch's keys", got=sorted(set(out) ^ set(batch)))
    for key in ("item", "user", "user_id", "history", "genres"):
        expect(torch.equal(out[key], batch[key]), f"`{key}` is never dropped",
               hint="only the item's ID code and its popularity: batch['item'] is how the text feature finds the "
                    "item, and the user's features and the item's genres are known for a cold item too")
    expect(torch.equal(out["dense"][:, 1:], batch["dense"][:, 1:]), "the other dense columns are never dropped",
           hint="set only column count_column")


def test_other_count_column_and_none(nb):
    torch.manual_seed(3)
    batch = _batch(n=400)
    out = nb.ItemIDDropout(1.0, count_column=2).train()(_clone(batch))
    expect(bool((out["dense"][:, 2] == 0).all()) and torch.equal(out["dense"][:, :2], batch["dense"][:, :2]),
           "count_column=2 drops column 2 only")
    out = nb.ItemIDDropout(1.0, count_column=None).train()(_clone(batch))
    expect(torch.equal(out["dense"], batch["dense"]) and bool((out["item_id"] == 0).all()),
           "count_column=None drops the ID only")


def test_batch_not_modified(nb):
    torch.manual_seed(4)
    batch = _batch(n=300)
    given = _clone(batch)
    keys = list(given)
    nb.ItemIDDropout(0.5, count_column=0).train()(given)
    expect(list(given) == keys, "the caller's dict keeps its keys")
    changed = [k for k in batch if not torch.equal(batch[k], given[k])]
    expect(not changed, "the caller's batch tensors are unchanged (a new dict, new tensors where dropped)",
           got=f"changed: {changed}", hint="masked_fill (not masked_fill_) and dense.clone() before writing a column")


def test_off_in_a_dlrm_at_evaluation(nb):
    s07 = load_session(7, "solutions")
    torch.manual_seed(0)
    dlrm = s07.DLRM(SPEC, dim=4, bottom=(4,), top=(8,))
    dropout = nb.ItemIDDropout(0.8, count_column=0)
    batch = _batch(n=50)

    def score(train: bool):
        dropout.train(train)
        dlrm.eval()
        with torch.no_grad():
            return dlrm(dropout(_clone(batch)))

    expect_close(score(False), dlrm.eval()(_clone(batch)).detach(), "in eval mode, the DLRM behind the dropout scores "
                 "as without it", atol=1e-6)
    expect(not torch.allclose(score(True), score(False)), "in training mode the dropout changes the scores")
