"""Exercise 3: maybe_to_gpu (the GPU case runs only where FAISS sees a GPU)."""
import faiss
import numpy as np
import pytest

from harness.autograder.checks import expect

from .conftest import GPU_SKIP_REASON, FakeGpuFaiss, GpuIndexStandIn, faiss_gpus

pytestmark = pytest.mark.exercise("maybe_to_gpu")


def _index():
    index = faiss.IndexFlatIP(8)
    index.add(np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32))
    return index


def test_cpu_when_asked(nb):
    index = _index()
    out = nb.maybe_to_gpu(index, use_gpu=False)
    expect(out is index, "use_gpu=False returns the very same CPU index", got=type(out).__name__,
           hint="if not use_gpu: return index")


def test_auto_follows_faiss(nb):
    index = _index()
    try:
        out = nb.maybe_to_gpu(index)
    except (AttributeError, RuntimeError) as err:
        if isinstance(err, NotImplementedError) or faiss_gpus() > 0:
            raise
        expect(False, "with no GPU visible to FAISS, use_gpu=None returns the CPU index without touching GPU code",
               got=f"{type(err).__name__}: {str(err)[:160]}",
               hint="if use_gpu is None: use_gpu = faiss_gpu_available(); if not use_gpu: return index. "
                    "faiss-cpu has no StandardGpuResources or index_cpu_to_gpu at all")
    if faiss_gpus() == 0:
        expect(out is index, "with no GPU visible to FAISS, use_gpu=None keeps the CPU index",
               got=type(out).__name__,
               hint="decide with faiss_gpu_available() (faiss.get_num_gpus() > 0 on a GPU build); never call "
                    "GPU functions unconditionally: faiss-cpu has no StandardGpuResources")
    else:
        expect("Gpu" in type(out).__name__, "with a GPU visible to FAISS, use_gpu=None moves the index to it",
               got=type(out).__name__, hint="faiss.index_cpu_to_gpu(gpu_resources(), 0, index)")


def test_gpu_copy_searches_like_the_cpu_index(nb):
    index = _index()
    nb.maybe_to_gpu(index, use_gpu=False)
    if faiss_gpus() == 0:
        pytest.skip(GPU_SKIP_REASON)
    gpu = nb.maybe_to_gpu(index, use_gpu=True)
    expect("Gpu" in type(gpu).__name__, "use_gpu=True gives a GPU index", got=type(gpu).__name__)
    q = np.random.default_rng(1).standard_normal((5, 8)).astype(np.float32)
    _, cpu_labels = index.search(q, 5)
    _, gpu_labels = gpu.search(q, 5)
    expect(bool((cpu_labels == gpu_labels).all()), "the GPU copy returns the CPU index's labels",
           got=f"{gpu_labels[0].tolist()} vs {cpu_labels[0].tolist()}")


def test_a_gpu_request_is_honoured(nb, monkeypatch):
    fake = FakeGpuFaiss(monkeypatch, nb)  # FAISS's GPU calls mocked: this runs on any machine
    index = _index()
    out = nb.maybe_to_gpu(index, use_gpu=True)
    expect(len(fake.copies) == 1 and fake.copies[0][1:] == (0, index) and fake.copies[0][0] is fake.resources,
           "use_gpu=True copies the index to GPU 0 with the shared resources",
           got=f"{len(fake.copies)} calls of faiss.index_cpu_to_gpu",
           hint="use_gpu=True is a request, not a preference: faiss.index_cpu_to_gpu(gpu_resources(), 0, index); "
                "never fall back to the CPU silently, the caller asked for the GPU's speed")
    expect(isinstance(out, GpuIndexStandIn), "use_gpu=True returns the GPU copy", got=type(out).__name__)


def test_a_gpu_request_without_a_gpu_fails_clearly(nb):
    if faiss_gpus() > 0:
        pytest.skip("FAISS sees a GPU here: there is nothing to refuse")
    try:
        nb.maybe_to_gpu(_index(), use_gpu=True)
    except NotImplementedError:  # a subclass of RuntimeError: the stub is not a refusal
        raise
    except RuntimeError as err:
        expect("GPU" in str(err) or "gpu" in str(err), "the error says the GPU is missing", got=str(err)[:200])
        return
    except AttributeError as err:
        expect(False, "use_gpu=True on a machine without GPU FAISS raises gpu_resources()'s RuntimeError",
               got=f"AttributeError: {str(err)[:160]}",
               hint="call gpu_resources() first (it raises a clear RuntimeError on faiss-cpu); looking up "
                    "faiss.index_cpu_to_gpu first fails with an AttributeError that says nothing useful")
    expect(False, "use_gpu=True on a machine without GPU FAISS raises RuntimeError", got="no error")
