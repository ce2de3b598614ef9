"""Exercise 2: save_checkpoint."""
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.autograder.checks import expect, expect_equal

from .conftest import toy_setup, trained_toy

pytestmark = pytest.mark.exercise("save_checkpoint")




def _read(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_contents(nb, tmp_path):
    model, optimizer, scheduler, scaler = trained_toy(2)
    path = tmp_path / "last.pt"
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    torch_state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    nb.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=12, epoch=3,
                       extra={"batches_done": 5})
    expect(path.is_file(), "the checkpoint file exists at `path`", got=_files(tmp_path))
    state = _read(path)
    expect(isinstance(state, dict), "the checkpoint is a dict", got=type(state).__name__)
    wanted = ["model", "optimizer", "scheduler", "scaler", "step", "epoch", "extra", "rng"]
    missing = [k for k in wanted if k not in state]
    expect(not missing, "the checkpoint has every key of the docstring", expected=str(wanted), got=sorted(state),
           hint="model, optimizer, scheduler, scaler (state_dicts), step, epoch, extra, rng")
    for name, value in model.state_dict().items():
        expect(name in state["model"] and torch.equal(state["model"][name], value),
               f"the model's state_dict is saved (`{name}`)", hint="state['model'] = model.state_dict()")
    expect(isinstance(state["optimizer"], dict) and len(state["optimizer"].get("state", {})) > 0,
           "the optimizer's state (AdamW moments) is saved", hint="state['optimizer'] = optimizer.state_dict()")
    expect(isinstance(state["scheduler"], dict) and state["scheduler"].get("last_epoch") == 2,
           "the scheduler's state_dict is saved (last_epoch = 2 after two steps)",
           got=state["scheduler"] if not isinstance(state["scheduler"], dict) else state["scheduler"].get("last_epoch"))
    expect(isinstance(state["scaler"], dict) and state["scaler"].get("scale") == scaler.get_scale(),
           "the GradScaler's state_dict (its current loss scale) is saved", got=state["scaler"],
           hint="state['scaler'] = scaler.state_dict() when a scaler is given, else None")
    expect_equal(state["step"], 12, "saved step")
    expect_equal(state["epoch"], 3, "saved epoch")
    expect(state["extra"] == {"batches_done": 5}, "`extra` is saved as given", got=state["extra"])
    rng = state["rng"]
    expect(isinstance(rng, dict) and {"python", "numpy", "torch"} <= set(rng), "rng holds python, numpy and torch states",
           got=sorted(rng) if isinstance(rng, dict) else type(rng).__name__,
           hint="{'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state(), "
                "'cuda': torch.cuda.get_rng_state_all() or None}")
    expect(torch.equal(torch.as_tensor(rng["torch"]), torch_state), "rng['torch'] is the torch CPU RNG state at save time",
           hint="torch.get_rng_state(); do not draw random numbers before capturing it")
    expect(rng["python"] == py_state, "rng['python'] is random.getstate() at save time")
    expect(np.array_equal(rng["numpy"][1], np_state[1]), "rng['numpy'] is np.random.get_state() at save time")
    if torch.cuda.is_available():
        expect(rng.get("cuda") is not None, "with CUDA, rng['cuda'] holds torch.cuda.get_rng_state_all()")


def test_optional_states_are_none(nb, tmp_path):
    model, _, _ = toy_setup()
    nb.save_checkpoint(tmp_path / "last.pt", model=model, optimizer=None, scheduler=None, scaler=None, step=0, epoch=0)
    state = _read(tmp_path / "last.pt")
    expect(state.get("scaler", "missing") is None and state.get("scheduler", "missing") is None,
           "without a scaler or scheduler their entries are None",
           got={"scaler": state.get("scaler", "missing"), "scheduler": state.get("scheduler", "missing")},
           hint="fp32 and bf16 runs have no GradScaler: save None, not an error")


def test_previous_checkpoint_survives_a_failed_save(nb, tmp_path, monkeypatch):
    model, optimizer, scheduler, scaler = trained_toy(2)
    path = tmp_path / "last.pt"
    nb.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=1, epoch=0)
    real_save = torch.save

    def dies_midway(obj, f, *args, **kwargs):  # a full disk, a killed process...
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as handle:
                handle.write(b"PK\x03\x04 half a checkpoint")
        else:
            f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device (simulated by the test)")

    monkeypatch.setattr(torch, "save", dies_midway)
    try:
        nb.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=2, epoch=0)
    except Exception:  # noqa: BLE001 - the error must propagate; its type is the saver's business
        raised = True
    else:
        raised = False
    monkeypatch.setattr(torch, "save", real_save)
    expect(raised, "a save that fails midway raises (the caller must know the checkpoint was not written)",
           hint="clean up the temporary file in an except block, then `raise` again")
    try:
        state = _read(path)
    except Exception as err:  # noqa: BLE001
        expect(False, "after a failed save, the previous checkpoint is intact",
               got=f"reading it raises {type(err).__name__}: {str(err)[:100]}",
               hint="torch.save(state, path) truncates `path` first: write to a temporary file in the same folder "
                    "and os.replace(tmp, path) only once it is complete")
    expect_equal(state["step"], 1, "step of the checkpoint still on disk after a failed save")
    expect(_files(tmp_path) == ["last.pt"], "no temporary file is left behind after a failed save",
           expected="['last.pt']", got=str(_files(tmp_path)),
           hint="in the except block, delete the temporary file before re-raising")


def test_unpicklable_extra_leaves_previous_checkpoint(nb, tmp_path):
    model, optimizer, scheduler, scaler = trained_toy(2)
    path = tmp_path / "last.pt"
    nb.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=1, epoch=0)
    with pytest.raises(Exception):
        nb.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=2,
                           epoch=0, extra={"callback": lambda: None})  # a lambda cannot be pickled
    try:
        step = _read(path)["step"]
    except Exception as err:  # noqa: BLE001
        expect(False, "a save that fails while pickling leaves the previous checkpoint intact",
               got=f"reading it raises {type(err).__name__}",
               hint="torch.save opens (and truncates) its target before pickling: give it a temporary file")
    expect_equal(step, 1, "step of the checkpoint on disk after a save that failed while pickling")
    expect(_files(tmp_path) == ["last.pt"], "no temporary file is left behind", got=str(_files(tmp_path)))


def test_renames_a_temporary_file_from_the_same_folder(nb, tmp_path, monkeypatch):
    model, optimizer, scheduler, scaler = trained_toy(2)
    path = tmp_path / "ckpts" / "last.pt"
    moves = []
    real_replace, real_rename = os.replace, os.rename

    def spy_replace(src, dst, *args, **kwargs):
        moves.append((Path(src), Path(dst)))
        return real_replace(src, dst, *args, **kwargs)

    def spy_rename(src, dst, *args, **kwargs):
        moves.append((Path(src), Path(dst)))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", spy_replace)
    monkeypatch.setattr(os, "rename", spy_rename)
    nb.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=3, epoch=1)
    monkeypatch.undo()
    expect(path.is_file(), "missing parent folders are created", got=_files(tmp_path),
           hint="path.parent.mkdir(parents=True, exist_ok=True)")
    final = [(src, dst) for src, dst in moves if dst.resolve() == path.resolve()]
    expect(bool(final), "the checkpoint arrives by os.replace(tmp, path) (an atomic rename)",
           got=f"renames seen: {[(s.name, d.name) for s, d in moves]}",
           hint="write the whole file under a temporary name, then os.replace(tmp, path)")
    expect(final[-1][0].resolve().parent == path.resolve().parent,
           "the temporary file sits in the checkpoint's own folder",
           got=str(final[-1][0]), hint="tempfile.mkstemp(dir=path.parent): a rename is atomic only within one file "
                                       "system; /tmp may be another one")
    expect(_files(path.parent) == ["last.pt"], "only the checkpoint is left in its folder", got=str(_files(path.parent)))


@pytest.mark.time_limit(30)
def test_ddp_wrapped_model_is_saved_unwrapped(nb, tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    model, _, _ = toy_setup()
    path = tmp_path / "last.pt"
    nb.save_checkpoint(path, model=model, step=0, epoch=0)  # a stub fails here, before any process group
    if dist.is_initialized() or not dist.is_gloo_available():
        pytest.skip("needs a fresh single-process gloo group")
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(model)
        nb.save_checkpoint(path, model=wrapped, optimizer=None, scheduler=None, scaler=None, step=4, epoch=0)
    finally:
        dist.destroy_process_group()
    keys = list(_read(path)["model"])
    expect(not any(k.startswith("module.") for k in keys), "a DDP-wrapped model is saved without the `module.` prefix",
           got=keys[:3], hint="save model.module.state_dict() when model is a DistributedDataParallel, so that the "
                              "checkpoint loads into a plain model")
    plain, _, _ = toy_setup(seed=1)
    plain.load_state_dict(_read(path)["model"])
