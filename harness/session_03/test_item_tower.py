"""Exercise 1: ItemTower."""
import pytest
import torch

from harness.autograder.modules import expect_same_function, share_weights
from harness.autograder.checks import expect, expect_close, expect_shape

from .conftest import DIM, N_CATEGORIES, N_ITEMS, categories

pytestmark = pytest.mark.exercise("ItemTower")


def _tower(nb, **kw):
    torch.manual_seed(0)
    return nb.ItemTower(N_ITEMS, categories(), N_CATEGORIES, dim=DIM, category_dim=4, dropout=0.0, **kw).eval()


def test_shapes_for_any_leading_dims(nb):
    tower = _tower(nb)
    expect_shape(tower(torch.tensor([1, 2, 3])), (3, DIM), "forward of 3 ids")
    expect_shape(tower(torch.randint(1, N_ITEMS + 1, (4, 7))), (4, 7, DIM), "forward of a (4, 7) batch",
                 hint="work on the last dimension only, so (B, L) ids give (B, L, dim)")
    expect_shape(tower.encode(torch.randint(1, N_ITEMS + 1, (4, 7))), (4, 7, DIM), "encode of a (4, 7) batch")


def test_output_is_normalised(nb):
    out = _tower(nb)(torch.arange(1, N_ITEMS + 1))
    expect_close(out.norm(dim=-1), torch.ones(N_ITEMS), "norm of every item embedding", atol=1e-5,
                 hint="F.normalize(encode(ids), dim=-1): normalise along the feature dimension, not the batch")


def test_padding_encodes_to_zero(nb):
    tower = _tower(nb)
    h = tower.encode(torch.tensor([[0, 3, 0]]))
    expect(bool((h[0, 0] == 0).all() and (h[0, 2] == 0).all()), "encode(0) is the zero vector",
           got=f"|encode(0)| = {h[0, 0].norm():.4f}",
           hint="padding_idx zeroes the ID embedding, but the MLP adds its bias: multiply by (ids != 0)")
    expect(bool(h[0, 1].abs().sum() > 0), "a real item does not encode to zero")


def test_padding_row_gets_no_gradient(nb):
    tower = _tower(nb)
    tower.train()
    tower.encode(torch.tensor([[0, 3, 5, 0]])).sum().backward()
    tables = [m for m in tower.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings == N_ITEMS + 1]
    expect(len(tables) == 1, "one nn.Embedding of n_items + 1 rows for item ids",
           got=f"{len(tables)} such tables", hint="nn.Embedding(n_items + 1, dim, padding_idx=0)")
    grad = tables[0].weight.grad
    expect(grad is not None and float(grad[0].abs().sum()) == 0.0, "the padding row (id 0) receives no gradient",
           hint="pass padding_idx=0 to nn.Embedding")
    expect(tables[0].padding_idx == 0, "the item table declares padding_idx=0", got=tables[0].padding_idx)


def test_category_feature_is_used(nb):
    tower = _tower(nb)
    ids = torch.arange(1, N_ITEMS + 1)
    before = tower.encode(ids)
    tower.item_categories[1:] = tower.item_categories[1:] % N_CATEGORIES + 1  # every item changes category
    after = tower.encode(ids)
    expect(not torch.allclose(before, after), "an item's encoding depends on its category",
           hint="look the category up in the item_categories buffer and feed its embedding to the MLP")


def test_parameters_registered(nb):
    tower = _tower(nb)
    names = [n for n, _ in tower.named_parameters()]
    expect(len(names) >= 4, "the embeddings and the MLP are registered parameters", got=names,
           hint="assign nn.Embedding / nn.Sequential to self.<name>; layers kept in plain lists or dicts are invisible")
    tower = tower.double()
    out = tower(torch.tensor([1, 2]))
    expect(out.dtype == torch.float64, "after .double() the whole tower computes in float64", got=str(out.dtype),
           hint="a layer that is not registered is not converted by .double() / .to(device)")
    expect("item_categories" in dict(tower.named_buffers()), "item_categories stays a registered buffer")


def test_same_function_as_specified(nb, reference):
    learner, ref = _tower(nb), reference.ItemTower(N_ITEMS, categories(), N_CATEGORIES, dim=DIM, category_dim=4,
                                                   dropout=0.0).eval()
    share_weights(learner, ref, "ItemTower")
    ids = torch.tensor([[0, 3, 7, 3], [12, 0, 40, 1]])
    expect_same_function(learner, ref, (ids,), "ItemTower.encode", call=lambda m, i: m.encode(i))
    expect_same_function(learner, ref, (ids,), "ItemTower.forward",
                         hint="h = e + mlp(cat([e, c], -1)) with mlp = Linear, GELU, Dropout, Linear; zeros at id 0; "
                              "forward L2-normalises encode")
