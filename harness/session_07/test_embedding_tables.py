"""Exercise 1: EmbeddingTables."""
import math

import pytest
import torch
from torch import nn

from harness.autograder.checks import expect, expect_close, expect_shape
from harness.autograder.modules import expect_same_function, share_weights

from .conftest import DIM, padded_batch, position, tiny_spec

pytestmark = pytest.mark.exercise("EmbeddingTables")


def _pair(nb, reference, spec=None):
    spec = spec or tiny_spec()
    torch.manual_seed(0)
    learner = nb.EmbeddingTables(spec, DIM)
    ref = reference.EmbeddingTables(spec, DIM)
    share_weights(learner, ref, "EmbeddingTables")
    return learner, ref


def _tables(module) -> dict:
    tables = getattr(module, "tables", None)
    expect(isinstance(tables, nn.ModuleDict), "the tables live in `self.tables`, an nn.ModuleDict keyed by feature name",
           got=type(tables).__name__, hint="self.tables = nn.ModuleDict(); self.tables[f.name] = nn.Embedding(...)")
    return dict(tables.items())


def test_one_table_per_feature_with_padding_idx(nb, spec):
    torch.manual_seed(0)
    module = nb.EmbeddingTables(spec, DIM)
    tables = _tables(module)
    expect(list(tables) == [f.name for f in spec.tables], "one table per feature of spec.tables, in that order",
           expected=[f.name for f in spec.tables], got=list(tables))
    for f in spec.tables:
        t = tables[f.name]
        expect(isinstance(t, (nn.Embedding, nn.EmbeddingBag)), f"table `{f.name}` is an nn.Embedding or nn.EmbeddingBag",
               got=type(t).__name__)
        expect(tuple(t.weight.shape) == (f.cardinality, DIM), f"table `{f.name}` has cardinality x dim rows",
               expected=(f.cardinality, DIM), got=tuple(t.weight.shape))
        expect(t.padding_idx == 0, f"table `{f.name}` declares padding_idx=0 (code 0 = unknown / padding)",
               got=t.padding_idx, hint="nn.Embedding(cardinality, dim, padding_idx=0): row 0 stays zero and is "
                                       "never trained, so unknown values and padding add nothing")


def test_initialisation_and_zero_padding_rows(nb, spec):
    torch.manual_seed(0)
    module = nb.EmbeddingTables(spec, DIM)
    for name, t in _tables(module).items():
        weight = t.weight.detach()
        expect(float(weight[0].abs().max()) == 0.0, f"row 0 of table `{name}` is zero right after construction",
               got=f"|row 0| = {float(weight[0].norm()):.4f}",
               hint="padding_idx zeroes row 0 when the table is built; an init you apply afterwards (uniform_) "
                    "overwrites it: zero it again, under torch.no_grad()")
        bound = 1.0 / math.sqrt(t.num_embeddings)
        expect(float(weight.abs().max()) <= bound + 1e-6 and float(weight[1:].abs().max()) > 0,
               f"table `{name}` is initialised uniform(-1/sqrt(n), 1/sqrt(n)), n = {t.num_embeddings}",
               got=f"max |w| = {float(weight.abs().max()):.3f}, bound {bound:.3f}",
               hint="nn.Embedding starts from N(0, 1); DLRM uses uniform_(-1/sqrt(n), 1/sqrt(n)) per table")


def test_shape_order_and_lookups(nb, reference, spec):
    learner, ref = _pair(nb, reference, spec)
    batch = padded_batch(spec)
    out = learner(batch)
    expect_shape(out, (6, len(spec.tables), DIM), "output: (B, number of tables, dim)",
                 hint="torch.stack([...one (B, dim) vector per table...], dim=1)")
    for f in spec.sparse:
        k = position(spec, f.name)
        want = ref.tables[f.name].weight[batch[f.name]]
        expect_close(out[:, k], want, f"slot {k} of the output is the lookup of sparse feature `{f.name}`", atol=1e-6,
                     hint="stack the vectors in spec.tables order: the sparse features, then the bags")


def test_unknown_code_is_zero_and_padding_row_gets_no_gradient(nb, reference, spec):
    learner, _ = _pair(nb, reference, spec)
    batch = padded_batch(spec)
    for f in spec.sparse:
        batch[f.name][0] = 0
    out = learner(batch)
    for f in spec.sparse:
        expect(float(out[0, position(spec, f.name)].detach().abs().max()) == 0.0,
               f"code 0 of `{f.name}` gives the zero vector")
    out.sum().backward()
    for name, t in _tables(learner).items():
        grad = t.weight.grad
        expect(grad is not None, f"table `{name}` receives a gradient")
        expect(float(grad[0].abs().max()) == 0.0, f"row 0 (unknown / padding) of table `{name}` gets no gradient",
               hint="padding_idx=0 on every table: padding must never be trained")


def _bag_batch(spec, rows: dict) -> dict:
    batch = padded_batch(spec, batch_size=len(next(iter(rows.values()))))
    for name, values in rows.items():
        batch[name] = torch.tensor(values)
    return batch


def test_bag_is_a_masked_mean(nb, reference, spec):
    learner, ref = _pair(nb, reference, spec)
    W = ref.tables["history"].weight.detach()
    batch = _bag_batch(spec, {"history": [[0, 0, 0, 3, 5], [0, 0, 0, 0, 7], [2, 4, 6, 8, 10], [0, 0, 0, 0, 0]]})
    out = learner(batch)[:, position(spec, "history")].detach()
    expect_close(out[0], (W[3] + W[5]) / 2, "the bag [0, 0, 0, 3, 5] is the mean of rows 3 and 5", atol=1e-6,
                 hint="divide by the number of non-zero entries (2), never by the bag's width L (5): padding is not an item")
    expect_close(out[1], W[7], "the bag [0, 0, 0, 0, 7] is row 7", atol=1e-6)
    expect_close(out[2], W[[2, 4, 6, 8, 10]].mean(0), "a full bag is the mean of its 5 rows", atol=1e-6,
                 hint="a mean, not a sum: nn.EmbeddingBag(..., mode='mean')")
    expect(bool(torch.isfinite(out[3]).all()) and float(out[3].abs().max()) == 0.0,
           "an empty bag (all padding) is the zero vector, not NaN", got=str(out[3].tolist()),
           hint="clamp the count of real entries to at least 1 before dividing")


def test_mean_not_sum_and_order_free(nb, reference, spec):
    learner, ref = _pair(nb, reference, spec)
    W = ref.tables["genres"].weight.detach()
    batch = _bag_batch(spec, {"genres": [[0, 4, 4], [1, 2, 3], [3, 1, 2]]})
    out = learner(batch)[:, position(spec, "genres")].detach()
    expect_close(out[0], W[4], "the bag [0, 4, 4] equals row 4 (a mean), not twice row 4 (a sum)", atol=1e-6,
                 hint="mode='mean', or divide your sum by the number of non-zero entries")
    expect_close(out[1], out[2], "a bag is a set: [1, 2, 3] and [3, 1, 2] give the same vector", atol=1e-6)


def test_features_read_by_name(nb, reference, spec):
    learner, _ = _pair(nb, reference, spec)
    batch = padded_batch(spec)
    shuffled = {key: batch[key] for key in reversed(list(batch))}
    shuffled["unrelated"] = torch.zeros(6, dtype=torch.long)
    expect_close(learner(shuffled), learner(batch), "the output does not depend on the order of the batch's keys",
                 atol=0, hint="loop over the spec's features (self.names) and read batch[name]; the batch also holds "
                              "'user', 'item', 'dense' and maybe more, in any order")


def test_registered_and_converts(nb, spec):
    torch.manual_seed(0)
    module = nb.EmbeddingTables(spec, DIM)
    params = dict(module.named_parameters())
    expect(len(params) == len(spec.tables), "each table's weight is a registered parameter",
           got=sorted(params), hint="keep the tables in an nn.ModuleDict; a plain dict or list hides them from "
                                    ".parameters(), the optimiser and .to(device)")
    out = module.double()(padded_batch(spec))
    expect(out.dtype == torch.float64, "after .double() the output is float64", got=str(out.dtype))


def test_same_function_as_specified(nb, reference, spec):
    learner, ref = _pair(nb, reference, spec)
    batch = padded_batch(spec, batch_size=8, seed=3)
    expect_same_function(learner, ref, (batch,), "EmbeddingTables",
                         call=lambda m, b: m({k: v.clone() for k, v in b.items()}),
                         hint="a lookup per sparse feature, a mean over the non-zero entries per bag, stacked in "
                              "spec.tables order")
