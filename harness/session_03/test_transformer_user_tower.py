"""Exercise 6: TransformerUserTower (graded with the reference ItemTower)."""
import pytest
import torch

from harness.autograder.modules import expect_same_function, share_weights
from harness.autograder.checks import expect, expect_close, expect_shape

from .conftest import DIM, N_CATEGORIES, N_ITEMS, categories, left_padded

pytestmark = pytest.mark.exercise("TransformerUserTower")


def _tower(nb, item_tower, layers=2):
    torch.manual_seed(2)
    return nb.TransformerUserTower(item_tower, dim=DIM, layers=layers, heads=2, dropout=0.0).eval()


def test_shapes_and_norm(nb, item_tower):
    tower = _tower(nb, item_tower)
    history, mask = left_padded([[1, 2, 3, 4], [5, 6], [7]])
    expect_shape(tower.encode(history, mask), (3, 4, DIM), "encode: one embedding per position")
    out = tower(history, mask)
    expect_shape(out, (3, DIM), "forward")
    expect_close(out.norm(dim=-1), torch.ones(3), "norm of the user embeddings", atol=1e-5)


def test_causal(nb, item_tower):
    tower = _tower(nb, item_tower)
    a, m = left_padded([[1, 2, 3, 4, 5]])
    b = a.clone()
    b[0, 3:] = torch.tensor([30, 31])
    expect_close(tower.encode(a, m)[0, :3], tower.encode(b, m)[0, :3], "positions 0..2 do not see items 3..4",
                 atol=1e-5, hint="mask future keys: attention allowed only where key position <= query position")


def test_left_padding_is_invisible(nb, item_tower):
    tower = _tower(nb, item_tower)
    h, m = left_padded([[1, 2, 3]])
    wide_h, wide_m = left_padded([[1, 2, 3]], width=8)
    expect_close(tower.encode(wide_h, wide_m)[0, -3:], tower.encode(h, m)[0], "outputs at real positions with 5 extra pads",
                 atol=1e-4, hint="padded keys must be masked out; RoPE makes the shift itself harmless")


def test_no_nan_with_padding(nb, item_tower):
    tower = _tower(nb, item_tower)
    tower.train()
    h, m = left_padded([[1], [2, 3, 4, 5, 6]])
    out = tower.encode(h, m)
    expect(not torch.isnan(out).any(), "no NaN anywhere, padded positions included",
           hint="a padded query with every key masked has an empty softmax: let each position attend to itself")
    out[m].sum().backward()
    grads = [p.grad for p in tower.parameters() if p.grad is not None]
    expect(all(not torch.isnan(g).any() for g in grads), "no NaN in the gradients")


def test_forward_is_the_last_position(nb, item_tower):
    tower = _tower(nb, item_tower)
    h, m = left_padded([[4, 2, 8], [9, 1]])
    expect_close(tower(h, m), tower.encode(h, m)[:, -1], "forward equals encode at the last column (left padding)",
                 atol=1e-6)


def test_order_matters(nb, item_tower):
    tower = _tower(nb, item_tower)
    a, m = left_padded([[3, 1, 4, 9]])
    b, _ = left_padded([[9, 4, 1, 3]])
    expect(not torch.allclose(tower(a, m), tower(b, m), atol=1e-4), "the Transformer tower sees the order of the history")


def test_blocks_registered(nb, item_tower):
    tower = _tower(nb, item_tower, layers=3)
    names = {n.split(".")[0] + "." + n.split(".")[1] for n, _ in tower.named_parameters()
             if not n.startswith("item_tower.") and n.count(".") >= 2}
    tower = tower.double()
    h, m = left_padded([[1, 2, 3]])
    out = tower(h, m)
    expect(out.dtype == torch.float64, "after .double() every layer computes in float64", got=str(out.dtype),
           hint="keep blocks in nn.ModuleList, not a Python list, so they are registered")
    expect(sum(p.numel() for n, p in tower.named_parameters() if not n.startswith("item_tower.")) > 3 * 8 * DIM * DIM,
           "the parameters of all 3 blocks are registered", got=sorted(names))


def test_same_function_as_specified(nb, reference):
    def build(module):
        torch.manual_seed(2)
        items = reference.ItemTower(N_ITEMS, categories(), N_CATEGORIES, dim=DIM, category_dim=4, dropout=0.0)
        return module.TransformerUserTower(items, dim=DIM, layers=2, heads=2, dropout=0.0).eval()

    learner, ref = build(nb), build(reference)
    share_weights(learner, ref, "TransformerUserTower")
    history, mask = left_padded([[1, 2, 3, 4, 5], [6, 7], [8]], width=6)
    expect_same_function(learner, ref, (history, mask), "TransformerUserTower.encode (padded positions included)",
                         call=lambda m, h, k: m.encode(h, k),
                         hint="mask = (causal AND real key) OR the position itself, shape (B, 1, L, L); blocks; final "
                              "norm; F.normalize. On this torch a query with no key allowed gets zeros, not NaN, so "
                              "only the outputs at padded positions show whether each position attends to itself")
    expect_same_function(learner, ref, (history, mask), "TransformerUserTower.forward")


def test_attention_mask_rule(nb, item_tower):
    tower = _tower(nb, item_tower)
    blocks = getattr(tower, "blocks", None)
    expect(isinstance(blocks, torch.nn.ModuleList) and len(blocks) == 2, "the tower keeps its blocks in `self.blocks`, "
           "an nn.ModuleList", got=type(blocks).__name__, hint="self.blocks = nn.ModuleList(TransformerBlock(...) ...)")
    seen = []
    handle = blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[1].detach().clone()))
    history, mask = left_padded([[1, 2, 3], [4, 5, 6, 7, 8]], width=5)
    try:
        tower.encode(history, mask)
    finally:
        handle.remove()
    expect(len(seen) == 1, "the first block is called once, as block(x, attn_mask)", got=f"{len(seen)} calls")
    got = seen[0]
    expect(got.dtype == torch.bool, "the attention mask is boolean (True = may attend)", got=str(got.dtype))
    L = history.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    want = (causal & mask[:, None, :]) | torch.eye(L, dtype=torch.bool)
    try:
        got = got.expand(len(history), 1, L, L)[:, 0] if got.ndim == 4 else got.expand(len(history), L, L)
    except RuntimeError:
        expect(False, "the mask broadcasts to (B, heads, L, L)", got=tuple(seen[0].shape))
    expect(bool(got.diagonal(dim1=-2, dim2=-1).all()), "every position may attend to itself, padded ones included",
           got=f"row 0 diagonal: {got[0].diagonal().tolist()}",
           hint="OR the mask with torch.eye(L): a padded query then attends to itself (a zero vector) instead of to "
                "nothing. This torch returns zeros for an empty row, other versions and GPU kernels return NaN")
    expect_close(got.to(torch.int8), want.to(torch.int8), "attention mask: (j <= i AND key j is real) OR j == i",
                 atol=0, hint="causal = ones(L, L).tril(); real keys = mask[:, None, :]; then | eye(L)")
