"""Exercise 3: load_checkpoint (checkpoints are written by the reference save_checkpoint)."""
import random

import numpy as np
import pytest
import torch

from harness.autograder.checks import expect, expect_equal

from .conftest import toy_setup, trained_toy

pytestmark = pytest.mark.exercise("load_checkpoint")




def _draws() -> tuple:
    return torch.rand(3), random.random(), float(np.random.rand())


def test_restores_everything(nb, reference, tmp_path):
    model, optimizer, scheduler, scaler = trained_toy(3)
    path = tmp_path / "last.pt"
    reference.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=3,
                              epoch=1, extra={"batches_done": 2})
    after_save = _draws()

    fresh_model, fresh_opt, fresh_sched = toy_setup(seed=123)  # other weights, empty AdamW state, step 0
    fresh_scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    torch.manual_seed(999)
    random.seed(999)
    np.random.seed(999)
    info = nb.load_checkpoint(path, model=fresh_model, optimizer=fresh_opt, scheduler=fresh_sched, scaler=fresh_scaler)
    after_load = _draws()

    expect(isinstance(info, dict), "load_checkpoint returns a dict", got=type(info).__name__)
    expect_equal(info.get("step"), 3, "returned step")
    expect_equal(info.get("epoch"), 1, "returned epoch")
    expect(info.get("extra") == {"batches_done": 2}, "returned extra", got=info.get("extra"))
    for (name, want), got in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        expect(torch.equal(want, got), f"model weights are restored (`{name}`)", hint="model.load_state_dict(state['model'])")
    saved_opt, loaded_opt = optimizer.state_dict(), fresh_opt.state_dict()
    expect(len(loaded_opt["state"]) == len(saved_opt["state"]) > 0, "the optimizer's state (AdamW moments) is restored",
           got=f"{len(loaded_opt['state'])} parameters with state, expected {len(saved_opt['state'])}",
           hint="optimizer.load_state_dict(state['optimizer']): without it Adam restarts with empty moments")
    for idx, want in saved_opt["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            expect(torch.equal(torch.as_tensor(loaded_opt["state"][idx][key]), torch.as_tensor(want[key])),
                   f"optimizer state `{key}` of parameter {idx} is restored")
    expect_equal(fresh_sched.last_epoch, 3, "the scheduler's position (last_epoch) after loading",
                 hint="scheduler.load_state_dict(state['scheduler'])")
    expect(abs(fresh_opt.param_groups[0]["lr"] - optimizer.param_groups[0]["lr"]) < 1e-12,
           "the learning rate is the one of the saved run", got=fresh_opt.param_groups[0]["lr"],
           expected=optimizer.param_groups[0]["lr"])
    expect_equal(fresh_scaler.get_scale(), 2.0**7, "the GradScaler's loss scale after loading",
                 hint="scaler.load_state_dict(state['scaler'])")
    expect(torch.equal(after_load[0], after_save[0]), "the torch RNG continues where the saved run was",
           got=f"torch.rand(3) after loading: {after_load[0].tolist()}", expected=str(after_save[0].tolist()),
           hint="torch.set_rng_state(state['rng']['torch']), and restore RNGs last: draw nothing after")
    expect(after_load[1] == after_save[1], "the Python `random` state is restored", hint="random.setstate(...)")
    expect(after_load[2] == after_save[2], "the NumPy RNG state is restored", hint="np.random.set_state(...)")


def test_model_only(nb, reference, tmp_path):
    model, optimizer, scheduler, scaler = trained_toy(3)
    path = tmp_path / "last.pt"
    reference.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=3, epoch=0)
    fresh, _, _ = toy_setup(seed=5)
    info = nb.load_checkpoint(path, model=fresh)
    expect_equal(info.get("step"), 3, "step returned when only the model is given",
                 hint="optimizer, scheduler and scaler default to None: skip what is not given")
    expect(all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values())),
           "weights restored when only the model is given")


def test_fp32_checkpoint_into_a_run_with_a_scaler(nb, reference, tmp_path):
    model, optimizer, scheduler = toy_setup()
    path = tmp_path / "last.pt"
    reference.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=None, step=0, epoch=0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    nb.load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
    expect_equal(scaler.get_scale(), 2.0**10, "a checkpoint saved without a scaler leaves the given scaler as it is",
                 hint="state['scaler'] is None then: load it only when it is not None")


def test_missing_file_says_what_to_do(nb, tmp_path):
    path = tmp_path / "runs" / "last.pt"
    model, _, _ = toy_setup()
    with pytest.raises(FileNotFoundError) as info:
        nb.load_checkpoint(path, model=model)
    message = str(info.value)
    expect("last.pt" in message and "checkpoint" in message.lower(),
           "the FileNotFoundError names the missing checkpoint", got=message[:300],
           hint="raise FileNotFoundError(f'no checkpoint at {path}: ...') before calling torch.load")
    expect(len(message) > len(str(path)) + 40, "the message also says what to do (train first, or resume=False)",
           got=message[:300])


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file_gives_a_clear_error(nb, reference, tmp_path, damage):
    model, optimizer, scheduler, scaler = trained_toy(3)
    path = tmp_path / "last.pt"
    reference.save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, step=3, epoch=0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a checkpoint at all" * 50)
    try:
        nb.load_checkpoint(path, model=model, optimizer=optimizer)
    except NotImplementedError:  # a RuntimeError too: let the stub say so
        raise
    except RuntimeError as err:
        message = str(err)
    except Exception as err:  # noqa: BLE001
        expect(False, f"a {damage} checkpoint raises a RuntimeError that explains itself",
               got=f"{type(err).__name__}: {str(err)[:200]}",
               hint="wrap torch.load in try/except and raise RuntimeError(f'checkpoint {path} is corrupt ...') from err")
    else:
        expect(False, f"loading a {damage} checkpoint raises RuntimeError", got="no error")
    expect("last.pt" in message and "checkpoint" in message.lower(), f"the error for a {damage} file names the checkpoint",
           got=message[:300], hint="say which file is broken and what to do (delete it, resume from an earlier one)")


def test_not_a_training_checkpoint(nb, tmp_path):
    model, _, _ = toy_setup()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)  # weights only: cannot resume a run
    try:
        nb.load_checkpoint(path, model=model)
    except NotImplementedError:
        raise
    except RuntimeError as err:
        message = str(err)
    except Exception as err:  # noqa: BLE001
        message = f"{type(err).__name__}: {str(err)[:200]}"
        expect(False, "loading a bare state_dict (not a training checkpoint) raises RuntimeError", got=message,
               hint="check that the loaded dict has 'model', 'step', 'epoch' and 'rng' before using it")
    else:
        expect(False, "loading a bare state_dict (not a training checkpoint) raises RuntimeError", got="no error",
               hint="check that the loaded dict has 'model', 'step', 'epoch' and 'rng' before using it")
    expect("weights.pt" in message, "the RuntimeError for a bare state_dict names the file", got=message[:300])


def test_a_checkpoint_of_another_model_is_refused(nb, reference, tmp_path):
    other = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 2))  # other output size
    path = tmp_path / "other.pt"
    reference.save_checkpoint(path, model=other, step=1, epoch=0)
    model, _, _ = toy_setup()
    try:
        nb.load_checkpoint(path, model=model)
    except NotImplementedError:  # a subclass of RuntimeError: the stub is not a refusal
        raise
    except RuntimeError:
        return
    expect(False, "loading a checkpoint of another model raises RuntimeError",
           got="it loaded (strict=False?): a model half made of the checkpoint and half of its random "
               "initialisation would resume silently",
           hint="model.load_state_dict(state['model']) is strict by default; keep it that way")


def test_loads_into_a_ddp_wrapped_model(nb, reference, tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend")
    saved, _, _ = toy_setup(seed=3)
    path = tmp_path / "plain.pt"
    reference.save_checkpoint(path, model=saved, step=2, epoch=0)
    started_here = not dist.is_initialized()
    if started_here:  # a one-process group is enough to build a real DDP wrapper
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        fresh, _, _ = toy_setup(seed=11)
        wrapped = DistributedDataParallel(fresh)
        try:
            nb.load_checkpoint(path, model=wrapped)
        except NotImplementedError:
            raise
        except RuntimeError as err:
            expect(False, "a checkpoint of a plain model loads into a DDP-wrapped one",
                   got=f"RuntimeError: {str(err)[:160]}", hint="load into model.module when model is a "
                   "DistributedDataParallel: the wrapper's own keys all start with 'module.'")
        for (name, want), got in zip(saved.state_dict().items(), fresh.state_dict().values()):
            expect(torch.equal(want, got), f"`{name}` of the wrapped model is restored")
    finally:
        if started_here:
            dist.destroy_process_group()
