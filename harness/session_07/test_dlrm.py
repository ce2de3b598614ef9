"""Exercise 4: DLRM (graded with your own EmbeddingTables, BottomMLP and DotInteraction)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.autograder.checks import expect, expect_close, expect_shape
from harness.autograder.modules import expect_same_function, share_weights
from harness.pipeline.features import FeatureSpec, SparseFeature

from .conftest import DIM, FactorySpy, padded_batch, tiny_spec

pytestmark = pytest.mark.exercise("DLRM")

BOTTOM, TOP = (5,), (7, 4)


class ItemVector(nn.Module):
    """An extra feature vector: a table looked up by the raw item id (as session 11/12 modules do)."""

    def __init__(self, n_items: int = 11, dim: int = DIM):
        super().__init__()
        self.table = nn.Embedding(n_items, dim)

    def forward(self, batch):
        return self.table(batch["item"])


def _model(module, spec=None, extra=None, seed=0):
    torch.manual_seed(seed)
    return module.DLRM(spec or tiny_spec(), dim=DIM, bottom=BOTTOM, top=TOP, extra=extra)


def _pair(nb, reference, extra_factory=None):
    learner = _model(nb, extra={"item_vector": extra_factory()} if extra_factory else None)
    ref = _model(reference, extra={"item_vector": extra_factory()} if extra_factory else None)
    share_weights(learner, ref, "DLRM")
    return learner, ref


def _last_linear(model) -> nn.Linear:
    linears = [m for m in model.top_mlp.modules() if isinstance(m, nn.Linear)]
    expect(bool(linears), "the top MLP `top_mlp` holds nn.Linear layers")
    return linears[-1]


def test_shapes(nb, spec):
    model = _model(nb)
    batch = padded_batch(spec)
    out = model(batch)
    expect_shape(out, (6,), "forward: one logit per row, (B,)",
                 hint="the top MLP ends in Linear(..., 1): squeeze the last dimension")
    expect(out.dtype == torch.float32, "logits are float32", got=str(out.dtype))
    n_features = 1 + len(spec.tables)
    expect_shape(model.feature_vectors(batch), (6, n_features, DIM),
                 f"feature_vectors: (B, 1 + {len(spec.tables)} tables, dim)",
                 hint="stack the bottom MLP's z with the embeddings: torch.cat([z[:, None], embeddings(batch)], 1)")


def test_feature_vectors_in_order(nb, spec):
    model = _model(nb)
    batch = padded_batch(spec)
    T = model.feature_vectors(batch)
    expect_close(T[:, 0], model.bottom_mlp(batch["dense"]), "feature vector 0 is the bottom MLP's output z",
                 atol=1e-6, hint="z = self.bottom_mlp(batch['dense']) comes first, then the tables in spec order")
    expect_close(T[:, 1:], model.embeddings(batch), "feature vectors 1.. are the embeddings, in spec.tables order",
                 atol=1e-6)


def test_top_mlp_sees_z_and_the_pairs(nb, spec):
    model = _model(nb)
    batch = padded_batch(spec)
    seen = []
    handle = model.top_mlp.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        model(batch)
    finally:
        handle.remove()
    expect(len(seen) == 1, "the top MLP runs once per forward", got=f"{len(seen)} calls")
    T = model.feature_vectors(batch)
    want = torch.cat([T[:, 0], model.interaction(T)], dim=1)
    expect_shape(seen[0], tuple(want.shape), "the top MLP's input: [z ; pairwise dots], (B, dim + F(F-1)/2)",
                 hint="torch.cat([z, interaction(T)], dim=1): the dense vector z also goes to the top MLP directly")
    expect_close(seen[0], want, "the top MLP's input is [z ; interaction(T)]", atol=1e-6,
                 hint="z first, then the strict-lower-triangle dot products of T = [z; embeddings]")


def test_output_is_a_logit(nb, reference, spec):
    learner, _ = _pair(nb, reference)
    batch = padded_batch(spec, batch_size=8)
    base = learner(batch).detach()
    last = _last_linear(learner)
    for shift in (-7.0, 5.0):
        with torch.no_grad():
            last.bias += shift
        shifted = learner(batch).detach()
        with torch.no_grad():
            last.bias -= shift
        expect_close(shifted - base, torch.full_like(base, shift),
                     f"adding {shift:+g} to the last layer's bias adds {shift:+g} to every output",
                     rtol=1e-5, atol=1e-4, hint="return the last Linear's output as it is: a logit. No sigmoid (the "
                                                "loss applies it: binary_cross_entropy_with_logits) and no ReLU "
                                                "after the last layer (a logit can be negative)")


def test_extra_feature_vectors(nb, spec):
    extra = ItemVector()
    model = _model(nb, extra={"item_vector": extra})
    batch = padded_batch(spec)
    T = model.feature_vectors(batch)
    expect_shape(T, (6, 2 + len(spec.tables), DIM), "feature_vectors with one extra module: F = 1 + tables + 1",
                 hint="append module(batch)[:, None] for each module of self.extra, after the embeddings")
    expect_close(T[:, -1], extra(batch), "the last feature vector is the extra module's output", atol=1e-6)
    names = [n for n, _ in model.named_parameters()]
    expect("extra.item_vector.table.weight" in names, "the extra modules are registered under `extra`",
           got=[n for n in names if "item_vector" in n], hint="self.extra = nn.ModuleDict(extra or {})")
    before = model(batch).detach()
    with torch.no_grad():
        extra.table.weight.mul_(3.0)
    expect(not torch.allclose(model(batch), before), "the extra vector reaches the logits through the interaction")


def test_no_index_tensors_in_forward(nb, spec):
    model = _model(nb)
    batch = padded_batch(spec)
    with FactorySpy() as spy:
        model(batch)
    made = sorted(set(spy.calls) & {"tril_indices", "triu_indices", "combinations"})
    expect(not made, "the forward pass builds no pair indices (the interaction's buffers hold them)",
           got=f"forward called torch.{', torch.'.join(made)}" if made else None,
           hint="self.interaction = DotInteraction(F) in __init__; forward only calls it")


def test_compiles_without_graph_breaks(nb, spec):
    import torch._dynamo

    torch._dynamo.reset()
    model = _model(nb, extra={"item_vector": ItemVector()}).eval()
    batch = padded_batch(spec)
    try:
        compiled = torch.compile(model, fullgraph=True, backend="eager")(batch)
    except Exception as err:  # noqa: BLE001 - dynamo raises several types
        expect(False, "torch.compile(DLRM, fullgraph=True) traces forward in one graph",
               got=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}",
               hint="no .item(), Python `if` / `assert` on tensor values, or data-dependent shapes in forward; "
                    "session 13 compiles this model")
    expect_close(compiled, model(batch), "the compiled model computes the same logits", rtol=1e-5, atol=1e-6)


def test_batch_not_modified(nb, spec):
    model = _model(nb)
    batch = padded_batch(spec)
    before = {k: v.clone() for k, v in batch.items()}
    model(batch)
    changed = [k for k in before if not torch.equal(before[k], batch[k])]
    expect(not changed, "forward leaves the caller's batch unchanged", got=f"changed: {changed}")


def test_same_function_as_specified(nb, reference, spec):
    batch = padded_batch(spec, batch_size=8, seed=5)
    for label, factory in (("DLRM", None), ("DLRM with an extra feature vector", ItemVector)):
        learner, ref = _pair(nb, reference, factory)
        expect_same_function(learner, ref, (batch,), label, call=lambda m, b: m({k: v.clone() for k, v in b.items()}),
                             hint="logit = top_mlp(cat([z, interaction(T)], 1)).squeeze(-1) with T = [z; embeddings; "
                                  "extra]; ReLU after every top layer but the last")
        expect_same_function(learner, ref, (batch,), f"{label}.feature_vectors",
                             call=lambda m, b: m.feature_vectors({k: v.clone() for k, v in b.items()}))


@pytest.mark.time_limit(30)
def test_learns_a_planted_interaction(nb):
    """Label 1 when the user's and the item's parity agree: only an interaction of the two ids can tell."""
    spec = FeatureSpec(sparse=(SparseFeature("user_id", 9, "user"), SparseFeature("item_id", 9, "item")), bags=(),
                       dense=("log_item_count",), dense_mean=(0.0,), dense_std=(1.0,))
    users, items = torch.meshgrid(torch.arange(1, 9), torch.arange(1, 9), indexing="ij")
    users, items = users.reshape(-1), items.reshape(-1)
    batch = {"user": users, "item": items, "user_id": users, "item_id": items, "dense": torch.zeros(64, 1)}
    labels = (users % 2 == items % 2).float()
    torch.manual_seed(0)
    model = nb.DLRM(spec, dim=8, bottom=(8,), top=(16,))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(150):
        loss = F.binary_cross_entropy_with_logits(model(batch), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = F.binary_cross_entropy_with_logits(model(batch), labels).item()
    expect(final < 0.2, "trained 150 Adam steps with BCE-with-logits, the DLRM fits a planted user x item pattern",
           got=f"final loss {final:.3f} (chance: 0.693)",
           hint="every part must carry gradients: no detach, no sigmoid before the logits loss, the embeddings "
                "in the interaction")
