"""Exercise 5: TextFeature."""
import pytest
import torch

from harness.autograder.checks import expect, expect_close, expect_dtype, expect_shape
from harness.autograder.loader import load_session
from harness.autograder.modules import expect_same_function, share_weights
from harness.pipeline.features import FeatureSpec, SparseFeature, example_batch

pytestmark = pytest.mark.exercise("TextFeature")

N_ITEMS, H, DIM = 9, 12, 5


def _vectors(seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.nn.functional.normalize(torch.randn(N_ITEMS + 1, H, generator=g), dim=1)
    v[0] = 0.0
    return v


def _batch(items, item_codes=None):
    items = torch.as_tensor(items)
    return {"item": items, "item_id": items if item_codes is None else torch.as_tensor(item_codes),
            "user": torch.ones_like(items)}


def _pair(nb, reference):
    torch.manual_seed(0)
    learner, ref = nb.TextFeature(_vectors(), DIM), reference.TextFeature(_vectors(), DIM)
    share_weights(learner, ref, "TextFeature")
    return learner, ref


def test_parameters_as_specified(nb, reference):
    _pair(nb, reference)


def test_projection_of_the_item_text_vector(nb, reference):
    learner, _ = _pair(nb, reference)
    items = torch.tensor([3, 1, 9, 3])
    out = learner(_batch(items))
    expect_shape(out, (4, DIM), "forward: (B, dim)")
    expect_dtype(out, torch.float32, "text feature vectors")
    expect_close(out, _vectors()[items] @ learner.proj.weight.T, "W t_item for each row", rtol=1e-5,
                 hint="self.proj(self.vectors[batch['item']]), a Linear without bias")


def test_cold_items_found_by_their_raw_id(nb, reference):
    learner, _ = _pair(nb, reference)
    items = torch.tensor([2, 7])
    out = learner(_batch(items, item_codes=[0, 0]))  # cold items: the feature builder gives them item_id code 0
    expect_close(out, _vectors()[items] @ learner.proj.weight.T,
                 "cold items (item_id code 0) still get their own text vector", rtol=1e-5,
                 hint="look the text up by batch['item'] (the raw id), never by batch['item_id'] (a vocabulary code, "
                      "0 for every item the training data has not seen)")


def test_padding_item_is_zero(nb, reference):
    learner, _ = _pair(nb, reference)
    expect_close(learner(_batch([0]))[0], torch.zeros(DIM), "the padding item 0 (a zero text vector) gives zeros",
                 atol=1e-7, hint="nn.Linear(H, dim, bias=False): a bias would give every padding row the bias")


def test_vectors_are_a_frozen_copy(nb):
    vectors = _vectors()
    module = nb.TextFeature(vectors, DIM)
    expect("vectors" in dict(module.named_buffers()), "the text vectors are a buffer named `vectors`",
           got=sorted(dict(module.named_buffers())), hint="self.register_buffer('vectors', vectors.float().clone())")
    expect(all(p.shape != vectors.shape for p in module.parameters()), "the text vectors are not trained "
           "(no parameter of their shape)", hint="a buffer, not an nn.Parameter: the encoder's output stays fixed")
    before = module(_batch([4])).detach().clone()
    vectors.mul_(-3.0)
    expect_close(module(_batch([4])), before, "the module keeps its own copy (the caller's tensor changed after)",
                 atol=1e-7, hint="clone the vectors when registering them")


def test_same_function_as_specified(nb, reference):
    learner, ref = _pair(nb, reference)
    expect_same_function(learner, ref, (_batch(torch.tensor([1, 0, 5, 9, 2, 2])),), "TextFeature")


def test_as_a_dlrm_feature(nb):
    s07 = load_session(7, "solutions")
    spec = FeatureSpec(sparse=(SparseFeature("user_id", 5, "user"), SparseFeature("item_id", N_ITEMS + 1, "item")),
                       bags=(), dense=("log_item_count",), dense_mean=(0.0,), dense_std=(1.0,))
    torch.manual_seed(0)
    module = nb.TextFeature(_vectors(), DIM)
    model = s07.DLRM(spec, dim=DIM, bottom=(4,), top=(8,), extra={"text": module})
    batch = example_batch(spec, batch_size=6)
    batch["item"] = torch.tensor([1, 2, 3, 4, 5, 6])
    model(batch).sum().backward()
    expect(module.proj.weight.grad is not None and float(module.proj.weight.grad.abs().sum()) > 0,
           "the projection learns through the DLRM's interaction")
