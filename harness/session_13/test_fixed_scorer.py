"""Exercise 3: FixedScorer (graded against the provided BrokenScorer with shared weights)."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from harness.autograder.checks import expect, expect_close, expect_equal, expect_shape
from harness.autograder.modules import expect_same_function, share_weights

pytestmark = pytest.mark.exercise("FixedScorer")

N_ITEMS, DIM, MAX_LEN, CANDIDATES = 40, 8, 24, 5
# Empty, single, on every bucket edge (2, 5, 10, 20), around them, and full histories.
LENGTHS_FULL = [0, 1, 2, 5, 10, 20, 4, 19, 24, 3, 9, 21]
LENGTHS_SHORT = [0, 2, 5, 10, 20, 6, 11, 1]  # the longest row (20) is shorter than L = 24: BrokenScorer trims


def _pair(nb, reference, max_norm=1.0):
    torch.manual_seed(0)
    learner = nb.FixedScorer(N_ITEMS, dim=DIM, max_len=MAX_LEN, max_norm=max_norm)
    broken = reference.BrokenScorer(N_ITEMS, dim=DIM, max_len=MAX_LEN, max_norm=max_norm)
    share_weights(learner, broken, "FixedScorer")
    return learner.eval(), broken.eval()


def _pre_clip_norms(broken, batch) -> torch.Tensor:
    """Norms of BrokenScorer's user vectors before the clip (input + output of its MLP)."""
    seen = {}
    hook = broken.mlp.register_forward_hook(lambda m, args, out: seen.setdefault("u", args[0] + out))
    try:
        with torch.no_grad():
            broken(*batch)
    finally:
        hook.remove()
    return seen["u"].norm(dim=-1)


HINT = ("compare with BrokenScorer step by step: positions = distance from the most recent item over all L columns; "
        "masked mean dividing by the number of real items (at least 1); torch.bucketize(lengths, self.length_edges, "
        "right=True) is np.digitize's rule; the residual MLP; each row's norm clipped to max_norm, never raised")


def test_same_function_as_the_broken_scorer(nb, reference):
    learner, broken = _pair(nb, reference)
    for lengths in (LENGTHS_FULL, LENGTHS_SHORT):
        batch = reference.scorer_batch(N_ITEMS, len(lengths), MAX_LEN, CANDIDATES, seed=len(lengths), lengths=lengths)
        norms = _pre_clip_norms(broken, batch).sort().values
        half = len(norms) // 2  # between two rows' norms: the clip's kink sits on no row
        for max_norm, which in ((float(norms[half - 1] + norms[half]) / 2, "half the rows clipped"), (1e6, "no row clipped"),
                                (float(norms.min()) / 4, "every row clipped")):
            learner.max_norm = broken.max_norm = max_norm
            expect_same_function(learner, broken, batch, f"FixedScorer (history lengths {lengths}, max_norm = "
                                 f"{max_norm:.3g}: {which})", rtol=1e-4, atol=1e-5, hint=HINT)


def test_bucket_edges(nb, reference):
    learner, broken = _pair(nb, reference, max_norm=1e6)
    with torch.no_grad():  # only the length embedding differs between rows of identical items
        learner.mlp[2].weight.zero_()
        learner.mlp[2].bias.zero_()
        broken.load_state_dict(learner.state_dict())
    lengths = [1, 2, 4, 5, 9, 10, 19, 20, 21]
    batch = reference.scorer_batch(N_ITEMS, len(lengths), MAX_LEN, CANDIDATES, seed=3, lengths=lengths)
    with torch.no_grad():
        got, want = learner(*batch), broken(*batch)
    expect_close(got, want, f"scores for history lengths {lengths} (on and next to the bucket edges 2, 5, 10, 20)",
                 rtol=1e-4, atol=1e-5, hint="np.digitize(x, edges) puts x in bucket i when edges[i-1] <= x < edges[i]: "
                 "that is torch.bucketize(x, edges, right=True); the default right=False moves lengths sitting on an "
                 "edge one bucket down")


class _CPUTensors(TorchDispatchMode):
    """Records every operation that returns a CPU tensor (the model and its inputs are all on meta)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self.ops.append(str(func.overloadpacket.__name__))
        return out


def test_no_tensor_created_on_the_cpu(nb, reference):
    learner, _ = _pair(nb, reference)
    batch = reference.scorer_batch(N_ITEMS, 6, MAX_LEN, CANDIDATES, seed=4)
    model = learner.to("meta")
    watch = _CPUTensors()
    try:
        with watch:
            out = model(*[t.to("meta") for t in batch])
    except NotImplementedError as err:
        if "not implemented yet" in str(err):
            raise
        out, error = None, err
    except Exception as err:  # noqa: BLE001
        out, error = None, err
    hint = ("create tensors on the input's device (torch.arange(..., device=history.device)), use the buffer "
            "self.length_edges, and no .item(), .cpu(), .numpy() or torch.zeros(d) without a device in forward")
    if out is None:
        expect(False, "forward runs on the meta device (a stand-in for a GPU: it fails wherever a tensor is made on "
               "the CPU, copied to the host, or read as a Python number)", got=f"{type(error).__name__}: "
               f"{str(error).splitlines()[0][:200]}", hint=hint)
    expect(not watch.ops, "forward creates no tensor on the CPU when the model and its inputs are on another device "
           "(on a GPU: a host-to-device copy at every call)", got=f"CPU tensors from {sorted(set(watch.ops))}", hint=hint)
    expect_equal(out.device.type, "meta", "device of the output when the model and inputs are on the meta device")
    expect_shape(out, (6, CANDIDATES), "scores")


@pytest.mark.time_limit(60)
def test_compiles_as_one_graph(nb, reference):
    """The one compile test of this exercise: explain, then fullgraph=True with Dynamo only (no Inductor)."""
    learner, _ = _pair(nb, reference)
    first = reference.scorer_batch(N_ITEMS, 8, MAX_LEN, CANDIDATES, seed=5)
    second = reference.scorer_batch(N_ITEMS, 8, MAX_LEN, CANDIDATES, seed=6, lengths=[0, 3, 7, 1, 12, 2, 5, 9])
    torch._dynamo.reset()
    try:
        explained = torch._dynamo.explain(learner)(*first)
        reasons = [f"line {r.user_stack[-1].lineno if r.user_stack else '?'}: {r.reason.splitlines()[0]}"
                   for r in explained.break_reasons]
        expect(not reasons and explained.graph_count == 1, "FixedScorer compiles as one graph with no break "
               "(torch._dynamo.explain, default settings)", got=f"{explained.graph_count} graph(s), breaks: {reasons}",
               hint="no .item(), int(tensor), Python `if` on a tensor, NumPy, or loop over rows in forward: "
                    "masks, torch.where / clamp and batched operations instead")
        torch._dynamo.reset()
        compiles = []

        def counting(gm, example_inputs):
            compiles.append(gm)
            return gm.forward

        compiled = torch.compile(learner, backend=counting, fullgraph=True)
        with torch.no_grad():
            for batch in (first, second):
                try:
                    got = compiled(*batch)
                except Exception as err:  # noqa: BLE001
                    expect(False, "torch.compile(FixedScorer, fullgraph=True) runs", got=f"{type(err).__name__}: "
                           f"{str(err).splitlines()[0][:200]}", hint="fullgraph=True raises at the first graph break")
                expect_close(got, learner(*batch), "compiled and eager FixedScorer outputs", rtol=1e-5, atol=1e-6)
        expect_equal(len(compiles), 1, "compiles for two batches of the same shape (8 x 24) whose longest histories "
                     "differ", hint="do not trim to the longest history: a shape that depends on the data changes "
                     "every batch (and needs .item()); keep all L columns and let the mask do the work")
    finally:
        torch._dynamo.reset()
