"""Exercise 3: maybe_to_gpu (the GPU case runs only where FAISS sees a GPU)."""
import faiss
import numpy as np
import pytest

from harness.autograder.checks import expect

from .conftest import GPU_SKIP_REASON, faiss_gpus

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
