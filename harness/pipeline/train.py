"""Train a two-tower retriever with session 05's loop, in one process or under ``torchrun`` (DDP).

    python -m harness train --dataset synthetic --preset smoke --tower mean --out runs/train-smoke
    torchrun --standalone --nproc_per_node 2 -m harness train --dataset synthetic --preset smoke --tower mean --out runs/ddp
    HARNESS_IMPL=sessions python -m harness train ...     # your notebook's loop instead of the reference

Under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` in the environment) the process group is initialised from
torchrun's variables, NCCL on CUDA and Gloo otherwise, and ``fit`` wraps the model in
DistributedDataParallel. Rank 0 prepares the dataset, logs, writes the checkpoint (``OUT/checkpoint.pt``)
and the W&B run (offline unless ``WANDB_MODE`` says otherwise); every rank writes
``OUT/result-rank<r>.json`` with its loss, steps and a checksum of its parameters, which must agree.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path


def parameter_checksum(model) -> tuple[str, float]:
    """SHA-256 of every parameter's bytes (in ``named_parameters`` order) and their float64 sum."""
    digest = hashlib.sha256()
    total = 0.0
    for name, param in model.named_parameters():
        data = param.detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(data.numpy().tobytes())
        total += float(data.double().sum())
    return digest.hexdigest(), total


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k", help="a dataset of `python -m harness data list`")
    parser.add_argument("--preset", default=None, choices=["smoke", "laptop", "gpu"],
                        help="config preset of harness/configs/two_tower.yaml (default: WORKBOOK_PRESET or laptop)")
    parser.add_argument("--dataset-preset", default=None,
                        help="the dataset's own preset (default: --preset when the dataset has it)")
    parser.add_argument("--tower", default="mean", choices=["mean", "transformer"])
    parser.add_argument("--out", required=True, help="folder for checkpoint.pt and result-rank<r>.json")
    parser.add_argument("--impl", choices=["sessions", "solutions"], default=None,
                        help="whose session 05 runs (default: HARNESS_IMPL, else solutions)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: harness.env.pick_device)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None, help="0 removes the preset's cap")
    parser.add_argument("--batch-size", type=int, default=None, help="per process")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--no-wandb", action="store_true", help="do not start a W&B run")
    return parser


def _overrides(args) -> dict:
    out = {}
    if args.epochs is not None:
        out["train.epochs"] = args.epochs
    if args.max_steps is not None:
        out["train.max_steps"] = args.max_steps or None
    if args.batch_size is not None:
        out["train.batch_size"] = args.batch_size
    if args.seed is not None:
        out["train.seed"] = args.seed
    return out


def _dataset_preset(name: str, args) -> str | None:
    from ..data import DATASETS

    if args.dataset_preset:
        return args.dataset_preset
    spec = DATASETS.get(name)
    return args.preset if spec is not None and args.preset in spec.presets else None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    import torch.distributed as dist

    from ..config import as_dict, load_config
    from ..data import load_dataset
    from ..env import pick_device
    from ..autograder.loader import NotebookError, load_session

    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if distributed:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        use_cuda = torch.cuda.is_available() and (args.device or "cuda").startswith("cuda")
        if use_cuda:
            torch.cuda.set_device(local_rank)
            device = torch.device("cuda", local_rank)
        else:
            device = torch.device("cpu")
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")  # env:// from torchrun
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        device, rank, world = pick_device(args.device), 0, 1
    say = print if rank == 0 else (lambda *a, **k: None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        impl = args.impl or os.environ.get("HARNESS_IMPL", "solutions")
        try:
            s05 = load_session(5, impl)
        except NotebookError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        cfg = load_config("two_tower", args.preset, _overrides(args))
        dataset_preset = _dataset_preset(args.dataset, args)
        if rank == 0:  # one process prepares the dataset; the others wait, then read it
            dataset = load_dataset(args.dataset, dataset_preset)
        if distributed:
            dist.barrier()
        if rank != 0:
            dataset = load_dataset(args.dataset, dataset_preset)
        say(f"harness train: {args.dataset} ({dataset.n_users:,} users, {dataset.n_items:,} items), tower "
            f"{args.tower}, preset {cfg.preset}, impl {impl}, {world} process(es) on {device.type}")
        run = None
        if rank == 0 and not args.no_wandb:
            from ..tracking import init_run

            run = init_run(f"train-{args.dataset}-{args.tower}", {**as_dict(cfg), "tower": args.tower,
                                                                  "dataset": args.dataset, "world_size": world},
                           group="harness-train")
        try:
            model, result = s05.train_two_tower(dataset, args.tower, cfg, device=device, run=run,
                                                checkpoint_path=out / "checkpoint.pt", resume=args.resume, log=say)
        finally:
            if run is not None:
                run.finish()
        checksum, total = parameter_checksum(model)
        record = {
            "rank": rank, "world_size": world, "device": device.type, "impl": impl, "dataset": args.dataset,
            "tower": args.tower, "preset": cfg.preset, "steps": result["steps"], "epochs": result["epochs"],
            "loss": result["final_loss"], "seconds": result["seconds"],
            "examples_per_second": result["examples_per_second"],
            "positions_per_second": result.get("positions_per_second"), "stopped_by": result.get("stopped_by"),
            "valid": result.get("valid"), "checksum": checksum, "param_sum": total,
        }
        (out / f"result-rank{rank}.json").write_text(json.dumps(record, indent=2))
        loss = record["loss"]
        say(f"done: {record['steps']} steps, final loss {loss:.4f}" if math.isfinite(loss) else
            f"done: {record['steps']} steps, no loss logged")
        if record["valid"]:
            say("valid: " + ", ".join(f"{k} {v:.4f}" for k, v in record["valid"].items()))
        say(f"results in {out}/result-rank*.json; parameter checksum {checksum[:16]}")
        return 0
    except FloatingPointError as err:
        print(f"error (rank {rank}): training stopped: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:  # --resume without a checkpoint, a dataset not prepared...
        print(f"error (rank {rank}): {err}", file=sys.stderr)
        return 2
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
