"""Exercise 3: DotInteraction."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_shape
from harness.autograder.modules import expect_same_function, share_weights

from .conftest import FactorySpy

pytestmark = pytest.mark.exercise("DotInteraction")

# functions that create a tensor from nothing (or an index set): none belongs in forward
FACTORIES = {"tril_indices", "triu_indices", "combinations", "tensor", "as_tensor", "arange", "ones", "zeros", "full",
             "eye", "empty", "ones_like", "zeros_like", "full_like", "tril", "triu", "nonzero", "masked_select",
             "cartesian_prod", "meshgrid"}


def _features(B: int = 4, F: int = 5, d: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, F, d, generator=g)


def test_shape(nb):
    for F in (2, 5, 7):
        out = nb.DotInteraction(F)(_features(F=F))
        n_pairs = F * (F - 1) // 2
        shape = tuple(out.shape)
        hint = None
        if shape == (4, F * (F + 1) // 2):
            hint = "the diagonal (each vector with itself) is in: use offset=-1, the strict lower triangle"
        elif shape == (4, F * (F - 1)):
            hint = "every pair is there twice ((i, j) and (j, i)): keep the lower triangle only"
        elif shape in ((4, F * F), (4, F, F)):
            hint = "that is the whole matrix T T^T: keep the entries i > j only"
        expect_shape(out, (4, n_pairs), f"interaction of F = {F} vectors: (B, F(F-1)/2)", hint=hint)


def test_orthonormal_features_do_not_interact(nb):
    F = 4
    out = nb.DotInteraction(F)(torch.eye(F).expand(3, F, F).clone())
    expect_close(out, torch.zeros(3, F * (F - 1) // 2), "orthonormal feature vectors have all pairwise dots 0",
                 atol=1e-6, hint="a 1 here is some vector's dot product with itself: the diagonal must not be kept")


def test_values_in_tril_order(nb):
    T = _features()
    out = nb.DotInteraction(5)(T)
    rows, cols = torch.tril_indices(5, 5, offset=-1)
    want = (T[:, rows] * T[:, cols]).sum(-1)
    hint = "column k is <T[:, i_k], T[:, j_k]> with (i_k, j_k) = torch.tril_indices(F, F, offset=-1)[:, k]"
    if tuple(out.shape) == tuple(want.shape):
        r_up, c_up = torch.triu_indices(5, 5, offset=1)
        if torch.allclose(out, (T[:, r_up] * T[:, c_up]).sum(-1), atol=1e-5):
            hint = ("these are the right pairs in the upper triangle's order (0,1), (0,2), ...: the top MLP's weights "
                    "are tied to positions, so use the lower triangle's order (1,0), (2,0), (2,1), ...")
    expect_close(out, want, "the pairwise dot products, in torch.tril_indices(F, F, offset=-1) order",
                 rtol=1e-5, atol=1e-6, hint=hint)


def test_index_buffers(nb):
    module = nb.DotInteraction(6)
    buffers = dict(module.named_buffers())
    rows, cols = torch.tril_indices(6, 6, offset=-1)
    for name, want in (("rows", rows), ("cols", cols)):
        expect(name in buffers, f"the pair indices are a registered buffer `{name}`", got=sorted(buffers),
               hint=f"in __init__: self.register_buffer('{name}', ...), built once from torch.tril_indices; a plain "
                    "attribute does not move with .to(device)")
        expect(buffers[name].dtype == torch.int64 and torch.equal(buffers[name], want),
               f"buffer `{name}` = torch.tril_indices(F, F, offset=-1)[{0 if name == 'rows' else 1}]",
               expected=want.tolist(), got=buffers[name].tolist())
    expect(not list(module.parameters()), "the dot interaction has no parameters",
           got=[n for n, _ in module.named_parameters()])


def test_no_tensor_created_in_forward(nb):
    module = nb.DotInteraction(5)
    T = _features()
    with FactorySpy() as spy:
        module(T)
    made = sorted(set(spy.calls) & FACTORIES)
    expect(not made, "forward creates no tensor: the pair indices were built once, in __init__",
           got=f"forward called torch.{', torch.'.join(made)}" if made else None,
           hint="compute torch.tril_indices in __init__ and register_buffer it; forward only does bmm and indexing "
                "(index tensors rebuilt per call cost Python time and a host-to-device copy every step)")


def test_compiles_without_graph_breaks(nb):
    import torch._dynamo

    torch._dynamo.reset()
    module = nb.DotInteraction(5)
    T = _features()
    try:
        compiled = torch.compile(module, fullgraph=True, backend="eager")(T)
    except Exception as err:  # noqa: BLE001 - dynamo raises several types
        expect(False, "torch.compile(DotInteraction, fullgraph=True) traces forward in one graph",
               got=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}",
               hint="no .item(), .tolist(), Python loops over tensor values or boolean-mask selection (its size "
                    "depends on the data): index with the stored rows and cols")
    expect_close(compiled, module(T), "the compiled module computes the same values", rtol=1e-5, atol=1e-6)


def test_gradient_and_dtype(nb, reference):
    T = _features(seed=2).double().requires_grad_()
    T_ref = T.detach().clone().requires_grad_()
    learner, ref = nb.DotInteraction(5), reference.DotInteraction(5)
    out = learner(T)
    expect(out.dtype == torch.float64, "a float64 input gives a float64 output", got=str(out.dtype))
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (out * w).sum().backward()
    (ref(T_ref) * w).sum().backward()
    expect_close(T.grad, T_ref.grad, "the gradient with respect to the feature vectors", rtol=1e-6, atol=1e-8,
                 hint="keep forward differentiable: bmm and indexing, no detach")
    padded = _features(B=6, seed=5)
    padded[:, 2] = 0.0  # an all-unknown feature: a zero vector
    expect_same_function(learner, ref, (padded,), "DotInteraction", grads=False)
    share_weights(learner, ref, "DotInteraction", randomize=False)  # the state_dict layout: rows, cols, nothing else
