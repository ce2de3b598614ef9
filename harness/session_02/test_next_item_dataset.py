"""Exercise 1: NextItemDataset."""
import pickle
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from harness.autograder.checks import expect, expect_dtype, expect_equal

pytestmark = pytest.mark.exercise("NextItemDataset")

# index = user id; user 0 is the padding slot, user 3 has too short a history for min_history=2
SEQUENCES = [np.array([], dtype=np.int64), np.array([5, 3, 9, 7]), np.array([2, 8]), np.array([4]), np.array([6, 1, 5])]
CATEGORIES = torch.tensor([0, 1, 1, 2, 2, 3, 3, 4, 4, 5])  # item id -> category (0 = padding)


def _examples(ds):
    return [(ex["user_id"], ex["history"].tolist(), ex["target"]) for ex in (ds[i] for i in range(len(ds)))]


def test_examples_in_order(nb):
    ds = nb.NextItemDataset(SEQUENCES, max_len=2)
    expected = [(1, [5], 3), (1, [5, 3], 9), (1, [3, 9], 7), (2, [2], 8), (4, [6], 1), (4, [6, 1], 5)]
    expect_equal(len(ds), len(expected), "one example per position after the first, for every user",
                 hint="a user with n items gives n - min_history examples; users with fewer give none")
    got = _examples(ds)
    expect(got == expected, "examples, ordered by user then position, as (user, history, target)",
           expected=str(expected), got=str(got),
           hint="history = seq[max(0, t - max_len):t] and target = seq[t], for t = min_history .. len - 1")


def test_target_never_in_its_own_history(nb):
    rng = np.random.default_rng(0)
    seqs = [np.array([], dtype=np.int64)] + [rng.permutation(np.arange(1, 200))[: rng.integers(2, 40)] for _ in range(30)]
    ds = nb.NextItemDataset(seqs, max_len=10)
    for i in range(len(ds)):
        ex = ds[i]
        if ex["target"] in ex["history"].tolist():
            expect(False, "the target is never part of its own history (it leaks the answer)",
                   got=f"example {i}: history {ex['history'].tolist()} contains target {ex['target']}",
                   hint="the history is the items strictly before position t: slice up to t, not t + 1")


def test_truncation_keeps_the_most_recent(nb):
    ds = nb.NextItemDataset([[], list(range(1, 11))], max_len=3)
    last = ds[len(ds) - 1]
    expect_equal(last["history"], torch.tensor([7, 8, 9]), "history of target 10 with max_len=3",
                 hint="keep the last max_len items before t (seq[t - max_len:t]), not the first ones")
    expect_equal(last["target"], 10, "target of the last example")


def test_min_history(nb):
    ds = nb.NextItemDataset(SEQUENCES, max_len=5, min_history=2)
    got = _examples(ds)
    expected = [(1, [5, 3], 9), (1, [5, 3, 9], 7), (4, [6, 1], 5)]
    expect(got == expected, "with min_history=2 every history has at least two items",
           expected=str(expected), got=str(got), hint="positions start at min_history")


def test_types(nb):
    ds = nb.NextItemDataset(SEQUENCES, max_len=2)
    ex = ds[1]
    expect(isinstance(ex, dict), "an example is a dict", got=type(ex).__name__)
    expect_dtype(ex["history"], torch.int64, "history")
    expect(ex["history"].dim() == 1, "history is a 1-D tensor", got=f"{ex['history'].dim()} dimensions")
    expect(isinstance(ex["target"], int) and isinstance(ex["user_id"], int), "target and user_id are Python ints",
           got=f"{type(ex['target']).__name__}, {type(ex['user_id']).__name__}", hint="convert with int(...)")


def test_category_features(nb):
    ds = nb.NextItemDataset(SEQUENCES, max_len=2, item_categories=CATEGORIES)
    ex = ds[1]  # user 1, history [5, 3], target 9
    expect("history_categories" in ex and "target_category" in ex,
           "with item_categories, examples carry history_categories and target_category", got=sorted(ex))
    expect_equal(ex["history_categories"], torch.tensor([3, 2]), "categories of history [5, 3]",
                 hint="index item_categories with the history tensor")
    expect_equal(ex["target_category"], 5, "category of target 9")
    plain = nb.NextItemDataset(SEQUENCES, max_len=2)[1]
    expect("history_categories" not in plain, "without item_categories there are no category keys", got=sorted(plain))


def test_accepts_tensors_and_lists(nb):
    as_lists = [list(s) for s in SEQUENCES]
    as_tensors = [torch.as_tensor(s, dtype=torch.long) for s in SEQUENCES]
    ref = _examples(nb.NextItemDataset(SEQUENCES, max_len=2))
    expect(_examples(nb.NextItemDataset(as_lists, max_len=2)) == ref, "lists of ids work like arrays")
    expect(_examples(nb.NextItemDataset(as_tensors, max_len=2)) == ref, "tensors of ids work like arrays")


def test_picklable(nb):
    ds = nb.NextItemDataset(SEQUENCES, max_len=2, item_categories=CATEGORIES)
    try:
        copy = pickle.loads(pickle.dumps(ds))
    except Exception as err:  # noqa: BLE001 - the learner's object may raise anything here
        expect(False, "the dataset can be pickled (DataLoader workers receive a pickled copy)",
               got=f"{type(err).__name__}: {err}",
               hint="keep only arrays, tensors and numbers in self: no lambdas, generators or open files")
    expect(_examples(copy) == _examples(ds), "a pickled copy returns the same examples")


def _first_field(batch):  # module level so that it pickles into workers
    return [(ex["user_id"], tuple(ex["history"].tolist()), ex["target"]) for ex in batch]


@pytest.mark.time_limit(90)
def test_dataloader_workers_see_the_same_examples(nb):
    rng = np.random.default_rng(1)
    seqs = [np.array([], dtype=np.int64)] + [rng.integers(1, 500, size=rng.integers(2, 30)) for _ in range(200)]
    ds = nb.NextItemDataset(seqs, max_len=8)
    single = [x for b in DataLoader(ds, batch_size=32, collate_fn=_first_field) for x in b]
    contexts = ["fork"] if nb.inline else ["fork", "spawn"]  # spawn is the default on macOS and Windows
    for context in contexts:
        # fork: two workers share the work (state kept between calls shows); spawn: one is enough to show that
        # the dataset pickles into a fresh interpreter, and each spawned worker costs seconds of imports
        workers = 2 if context == "fork" else 1
        loader = DataLoader(ds, batch_size=32, collate_fn=_first_field, num_workers=workers,
                            multiprocessing_context=context)
        try:
            multi = [x for b in loader for x in b]
        except Exception as err:  # noqa: BLE001
            expect(False, f"DataLoader(num_workers={workers}, multiprocessing_context='{context}') works",
                   got=f"{type(err).__name__}: {str(err)[:300]}",
                   hint="workers get a copy of the dataset: it must pickle, and __getitem__ must depend only on the index")
        expect(multi == single, f"{workers} worker(s) ({context}) produce exactly the examples of one process, in order",
               got=f"{len(multi)} examples, {sum(a != b for a, b in zip(multi, single))} differ",
               hint="__getitem__ must not keep state between calls (each worker has its own copy)")


def test_vectorised_construction(nb):
    rng = np.random.default_rng(2)
    seqs = [np.array([], dtype=np.int64)] + [rng.integers(1, 5000, size=100) for _ in range(3000)]
    start = time.perf_counter()
    ds = nb.NextItemDataset(seqs, max_len=50)
    built = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, len(ds), 97):
        ds[i]
    per_item = (time.perf_counter() - start) / len(range(0, len(ds), 97))
    expect(len(ds) == 3000 * 99, "297,000 examples from 3,000 users of 100 items", got=len(ds))
    expect(built < 5.0, "building the index for 300K examples takes well under a second", got=f"{built:.1f} s",
           hint="compute users and positions with NumPy (np.repeat, np.arange), not a Python list of tuples")
    expect(per_item < 1e-3, "__getitem__ is O(1)", got=f"{per_item * 1e6:.0f} µs per example",
           hint="index precomputed arrays; do not scan the users on every call")


def test_examples_do_not_share_memory_with_the_dataset(nb):
    ds = nb.NextItemDataset(SEQUENCES, max_len=3)
    first = ds[2]
    expected = first["history"].clone()
    first["history"][:] = 999  # a caller (an augmentation, a masking collate) edits its example in place
    again = ds[2]["history"]
    expect_equal(again, expected, "an example edited in place by the caller leaves the dataset unchanged",
                 hint="torch.from_numpy(array[a:b]) shares memory with the dataset's array: copy the slice "
                      "(.copy(), or torch.tensor(...)), so every __getitem__ returns a fresh tensor")
