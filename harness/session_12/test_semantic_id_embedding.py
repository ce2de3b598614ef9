"""Exercise 5: SemanticIDEmbedding."""
import math

import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_shape
from harness.autograder.loader import load_session
from harness.autograder.modules import expect_same_function, share_weights
from harness.pipeline.features import FeatureSpec, SparseFeature, example_batch

pytestmark = pytest.mark.exercise("SemanticIDEmbedding")

DIM = 6
SIZES = (4, 3, 2)
# items 1..7; item 3 has code 0 at every level (0 is a real code); items 1 and 5 share level 1
CODES = torch.tensor([[0, 0, 0], [1, 2, 0], [2, 0, 1], [0, 0, 0], [3, 1, 1], [1, 1, 0], [2, 2, 1], [0, 1, 0]])
SHIFT_HINT = "code c of level l is row c + 1 of tables[l] (row 0 is the padding item's): rows = codes[item] + 1"


def _pair(nb, reference, mode="sum"):
    torch.manual_seed(0)
    learner = nb.SemanticIDEmbedding(CODES.clone(), SIZES, dim=DIM, mode=mode)
    ref = reference.SemanticIDEmbedding(CODES, SIZES, dim=DIM, mode=mode)
    share_weights(learner, ref, f"SemanticIDEmbedding(mode={mode!r})")
    return learner, ref


def _batch(items):
    items = torch.as_tensor(items)
    return {"item": items, "item_id": torch.zeros_like(items), "user": torch.ones_like(items)}


def test_parameters_as_specified(nb, reference):
    for mode in ("sum", "concat"):
        _pair(nb, reference, mode)


def test_shape_dtype_and_padding(nb, reference):
    learner, _ = _pair(nb, reference)
    out = learner(_batch([1, 0, 3, 7]))
    expect_shape(out, (4, DIM), "forward: one d-vector per row, (B, dim)")
    expect_dtype(out, torch.float32, "semantic-ID vectors")
    expect_close(out[1], torch.zeros(DIM), "item 0 (padding) gets the zero vector", atol=1e-7,
                 hint="rows = (codes[item] + 1) * (item != 0)[:, None]: the padding item reads row 0 of every table")


def test_code_zero_is_a_real_code(nb, reference):
    learner, _ = _pair(nb, reference)
    out = learner(_batch([3]))
    want = sum(learner.tables[level].weight[1] for level in range(3))
    expect(float(out.abs().sum()) > 0, "item 3 has code 0 at every level, and still a non-zero vector",
           got=out, hint=SHIFT_HINT)
    expect_close(out[0], want, "item 3 (codes 0, 0, 0): the sum of row 1 of each level's table", rtol=1e-5,
                 hint=SHIFT_HINT)


def test_sum_of_per_level_rows(nb, reference):
    learner, _ = _pair(nb, reference)
    items = torch.tensor([1, 2, 4, 5, 6, 7])
    out = learner(_batch(items))
    want = sum(learner.tables[level].weight[CODES[items, level] + 1] for level in range(3))
    expect_close(out, want, "mode='sum': the sum over levels of tables[l].weight[codes[item, l] + 1]", rtol=1e-5,
                 hint="one table per level (nn.ModuleList), looked up with that level's column; a sum, not a mean")


def test_levels_have_their_own_tables(nb, reference):
    learner, _ = _pair(nb, reference)
    expect(len(learner.tables) == 3, "one table per level: tables is a ModuleList of 3", got=len(learner.tables))
    shapes = [tuple(t.weight.shape) for t in learner.tables]
    expect(shapes == [(5, DIM), (4, DIM), (3, DIM)], "table l has codebook_sizes[l] + 1 rows",
           got=shapes, hint="nn.Embedding(size + 1, dim, padding_idx=0) for each size: row 0 is padding")


def test_looks_up_by_the_raw_item_id(nb, reference):
    learner, _ = _pair(nb, reference)
    out = learner(_batch([2, 5]))  # item_id codes are all 0 in this batch (unknown to a vocabulary)
    expect(bool((out.abs().sum(1) > 0).all()), "the codes are found by batch['item'], the raw item id",
           got=out, hint="batch['item_id'] is a vocabulary code (0 for a cold item); use batch['item']")


def test_init_and_padding_rows(nb):
    torch.manual_seed(1)
    module = nb.SemanticIDEmbedding(CODES.clone(), (50, 3, 2), dim=DIM)
    for level, table in enumerate(module.tables):
        n = table.weight.shape[0]
        expect(float(table.weight[0].abs().max()) == 0.0, f"row 0 (padding) of table {level} is zero",
               hint="zero it again after initialising: table.weight[0].zero_() under torch.no_grad()")
        expect(getattr(table, "padding_idx", None) == 0, f"table {level} has padding_idx=0")
        bound = 1.0 / math.sqrt(n)
        expect(float(table.weight[1:].abs().max()) <= bound + 1e-6,
               f"table {level} initialised in U(-1/sqrt(n), 1/sqrt(n)) with n = {n} rows",
               got=f"max |w| = {float(table.weight[1:].abs().max()):.3f}, bound {bound:.3f}")


def test_codes_are_a_buffer(nb):
    module = nb.SemanticIDEmbedding(CODES.clone(), SIZES, dim=DIM)
    buffers = dict(module.named_buffers())
    expect("codes" in buffers, "the codes are a buffer named `codes` (saved and moved with the model)",
           got=sorted(buffers), hint="self.register_buffer('codes', codes.long().clone())")
    expect(all("codes" not in name for name, _ in module.named_parameters()), "the codes are not trained")
    expect(buffers["codes"].dtype == torch.int64 and torch.equal(buffers["codes"], CODES), "the buffer holds the codes")


def test_same_function_as_specified(nb, reference):
    items = torch.tensor([1, 0, 2, 3, 4, 5, 6, 7, 3, 1])
    for mode in ("sum", "concat"):
        learner, ref = _pair(nb, reference, mode)
        expect_same_function(learner, ref, (_batch(items),), f"SemanticIDEmbedding(mode={mode!r})",
                             hint="sum: sum_l tables[l](rows[:, l]); concat: proj(torch.cat([...], dim=-1)) with the "
                                  "levels in order; rows = (codes[item] + 1) * (item != 0)")


def test_as_a_dlrm_feature(nb):
    s07 = load_session(7, "solutions")
    spec = FeatureSpec(sparse=(SparseFeature("user_id", 5, "user"), SparseFeature("item_id", 8, "item")), bags=(),
                       dense=("log_item_count",), dense_mean=(0.0,), dense_std=(1.0,))
    torch.manual_seed(0)
    module = nb.SemanticIDEmbedding(CODES.clone(), SIZES, dim=DIM)
    model = s07.DLRM(spec, dim=DIM, bottom=(4,), top=(8,), extra={"semantic_id": module})
    batch = example_batch(spec, batch_size=6)
    batch["item"] = torch.tensor([1, 2, 3, 4, 5, 6])
    out = model(batch)
    expect_shape(out, (6,), "DLRM logits with the semantic ID as an extra feature vector")
    out.sum().backward()
    grads = [t.weight.grad for t in module.tables]
    expect(all(g is not None and float(g.abs().sum()) > 0 for g in grads),
           "every level's table gets a gradient through the DLRM", hint="use every table in forward")
