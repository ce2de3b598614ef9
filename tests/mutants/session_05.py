from . import Mutant

_CHECK = (
    "    if not math.isfinite(loss_value):\n"
    "        raise FloatingPointError(\n"
    "            f\"the loss is {loss_value}: training stopped before the update, so the weights are unchanged. \"\n"
    "            \"Try a lower learning rate or a longer warm-up, clipping (max_grad_norm=1.0), fp32 instead of \"\n"
    "            \"mixed precision (amp: false) to see whether fp16 overflowed, and look at this batch \"\n"
    "            \"(an empty mask or log(0) in the loss?).\")\n"
)
_UPDATE = (
    "    optimizer.zero_grad(set_to_none=True)\n"
    "    if scaler is not None:\n"
    "        scaler.scale(loss).backward()\n"
    "        scaler.unscale_(optimizer)  # true gradients from here on: clipping must see their real norm\n"
    "    else:\n"
    "        loss.backward()\n"
    "    params = [p for group in optimizer.param_groups for p in group[\"params\"] if p.grad is not None]\n"
    "    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else math.inf)\n"
    "    lr = optimizer.param_groups[0][\"lr\"]\n"
    "    if scaler is not None:\n"
    "        scaler.step(optimizer)  # skips the update when unscale_ found inf/NaN gradients\n"
    "        scaler.update()\n"
    "    else:\n"
    "        optimizer.step()\n"
)
_STEP_BODY = "    loss_value = loss.item()\n" + _CHECK + _UPDATE
_STEP_BODY_CHECK_LAST = "    loss_value = loss.item()\n" + _UPDATE + _CHECK

MUTANTS = [
    # warmup_cosine
    Mutant("warmup_cosine", "warm-up off by one (step / W: the first step at lr 0)",
           "return (step + 1) / warmup_steps", "return step / warmup_steps"),
    Mutant("warmup_cosine", "cosine decays to 0, ignoring min_ratio",
           "return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))",
           "return 0.5 * (1.0 + math.cos(math.pi * progress))"),
    Mutant("warmup_cosine", "floor added on top of a full cosine (exceeds 1)",
           "return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))",
           "return min(1.0 + min_ratio, min_ratio + 0.5 * (1.0 + math.cos(math.pi * progress)))"),
    Mutant("warmup_cosine", "cosine progress over total_steps, not over the steps after warm-up",
           "progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))",
           "progress = min(1.0, step / max(1, total_steps))"),
    Mutant("warmup_cosine", "no clamp after total_steps: the rate climbs back up",
           "progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))",
           "progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)"),
    # save_checkpoint
    Mutant("save_checkpoint", "not atomic: torch.save straight onto the checkpoint",
           "    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f\".{path.name}.\", suffix=\".tmp\")\n"
           "    try:\n        with os.fdopen(fd, \"wb\") as f:\n            torch.save(state, f)\n",
           "    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f\".{path.name}.\", suffix=\".tmp\")\n"
           "    torch.save(state, path)\n    try:\n        with os.fdopen(fd, \"wb\") as f:\n            torch.save(state, f)\n"),
    Mutant("save_checkpoint", "temporary file left behind when the save fails",
           "    except BaseException:\n        Path(tmp).unlink(missing_ok=True)\n        raise\n",
           "    except BaseException:\n        raise\n"),
    Mutant("save_checkpoint", "temporary file in the system temp folder (rename may cross file systems)",
           "fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f\".{path.name}.\", suffix=\".tmp\")",
           "fd, tmp = tempfile.mkstemp(prefix=f\".{path.name}.\", suffix=\".tmp\")"),
    Mutant("save_checkpoint", "torch RNG state not saved",
           "            \"torch\": torch.get_rng_state(),\n", ""),
    Mutant("save_checkpoint", "RNG captured after drawing a random number",
           "            \"torch\": torch.get_rng_state(),\n",
           "            \"torch\": (torch.rand(1), torch.get_rng_state())[1],\n"),
    Mutant("save_checkpoint", "DDP wrapper saved as is (module. prefix)",
           "    module = model.module if isinstance(model, (DistributedDataParallel, nn.DataParallel)) else model\n"
           "    module = getattr(module, \"_orig_mod\", module)  # a torch.compile'd model (session 13)\n",
           "    module = model\n"),
    Mutant("save_checkpoint", "GradScaler state not saved",
           "        \"scaler\": scaler.state_dict() if scaler is not None else None,\n", "        \"scaler\": None,\n"),
    Mutant("save_checkpoint", "optimizer state not saved",
           "        \"optimizer\": optimizer.state_dict() if optimizer is not None else None,\n",
           "        \"optimizer\": None,\n"),
    # load_checkpoint
    Mutant("load_checkpoint", "torch RNG state not restored",
           "    torch.set_rng_state(rng[\"torch\"])\n", ""),
    Mutant("load_checkpoint", "NumPy and Python RNG states not restored",
           "    random.setstate(rng[\"python\"])\n    np.random.set_state(rng[\"numpy\"])\n", ""),
    Mutant("load_checkpoint", "optimizer state not restored",
           "    if optimizer is not None and state.get(\"optimizer\") is not None:\n"
           "        optimizer.load_state_dict(state[\"optimizer\"])\n", ""),
    Mutant("load_checkpoint", "scheduler state not restored",
           "    if scheduler is not None and state.get(\"scheduler\") is not None:\n"
           "        scheduler.load_state_dict(state[\"scheduler\"])\n", ""),
    Mutant("load_checkpoint", "a scaler state of None is loaded anyway",
           "    if scaler is not None and state.get(\"scaler\") is not None:\n",
           "    if scaler is not None:\n"),
    Mutant("load_checkpoint", "torch.load's raw error for a corrupt file",
           "        state = torch.load(path, map_location=\"cpu\", weights_only=False)  # our own file: RNG states are pickles\n"
           "    except Exception as err:\n",
           "        state = torch.load(path, map_location=\"cpu\", weights_only=False)\n"
           "    except ZeroDivisionError as err:\n"),
    Mutant("load_checkpoint", "missing file reported as corrupt",
           "    if not path.is_file():\n        raise FileNotFoundError(", "    if False:\n        raise FileNotFoundError("),
    Mutant("load_checkpoint", "no check that the file is a training checkpoint",
           "    if not isinstance(state, dict) or not {\"model\", \"step\", \"epoch\", \"rng\"} <= set(state):\n",
           "    if not isinstance(state, dict):\n"),
    # train_step
    Mutant("train_step", "clips the scaled gradients (unscale_ after clipping)",
           "        scaler.unscale_(optimizer)  # true gradients from here on: clipping must see their real norm\n"
           "    else:\n        loss.backward()\n"
           "    params = [p for group in optimizer.param_groups for p in group[\"params\"] if p.grad is not None]\n"
           "    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else math.inf)\n",
           "    else:\n        loss.backward()\n"
           "    params = [p for group in optimizer.param_groups for p in group[\"params\"] if p.grad is not None]\n"
           "    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm else math.inf)\n"
           "    if scaler is not None:\n        scaler.unscale_(optimizer)\n"),
    Mutant("train_step", "NaN check after optimizer.step (the weights are already poisoned)",
           _STEP_BODY, _STEP_BODY_CHECK_LAST),
    Mutant("train_step", "no NaN guard at all",
           "    loss_value = loss.item()\n    if not math.isfinite(loss_value):\n",
           "    loss_value = loss.item()\n    if False:\n"),
    Mutant("train_step", "scheduler not stepped",
           "    if scheduler is not None:\n        scheduler.step()\n", ""),
    Mutant("train_step", "optimizer.step() instead of scaler.step(optimizer)",
           "        scaler.step(optimizer)  # skips the update when unscale_ found inf/NaN gradients\n",
           "        optimizer.step()\n"),
    Mutant("train_step", "scaler.update() forgotten",
           "        scaler.update()\n", ""),
    Mutant("train_step", "no autocast",
           "enabled=amp_dtype is not None):", "enabled=False):"),
    Mutant("train_step", "zero_grad forgotten: gradients accumulate",
           "    optimizer.zero_grad(set_to_none=True)\n", ""),
    Mutant("train_step", "no clipping", "clip_grad_norm_(params, max_grad_norm if max_grad_norm else math.inf)",
           "clip_grad_norm_(params, math.inf)"),
    Mutant("train_step", "lr read after scheduler.step (the next step's rate)",
           "    return {\"loss\": loss_value, \"grad_norm\": float(grad_norm), \"lr\": float(lr)}\n",
           "    return {\"loss\": loss_value, \"grad_norm\": float(grad_norm), "
           "\"lr\": float(optimizer.param_groups[0][\"lr\"])}\n"),
    Mutant("train_step", "returns the loss tensor",
           "    return {\"loss\": loss_value,", "    return {\"loss\": loss,"),
    Mutant("train_step", "model left in eval mode", "    model.train()\n    with torch.autocast(",
           "    with torch.autocast("),
    # fit
    Mutant("fit", "one generator for the whole run: a resumed process replays epoch 0's order",
           "            order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()\n",
           "            shuffler = locals().get(\"shuffler\") or torch.Generator().manual_seed(cfg.seed)\n"
           "            order = torch.randperm(len(train_data), generator=shuffler).tolist()\n"),
    Mutant("fit", "same order every epoch (seed not combined with the epoch)",
           "generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()",
           "generator=torch.Generator().manual_seed(cfg.seed)).tolist()"),
    Mutant("fit", "resume restarts the epoch from its first batch",
           "sampler=order[batches_done * cfg.batch_size:],", "sampler=order,"),
    Mutant("fit", "DataLoader without its own generator (draws from the global RNG)",
           "collate_fn=collate_fn, generator=torch.Generator().manual_seed(cfg.seed + epoch),",
           "collate_fn=collate_fn,"),
    Mutant("fit", "step counter not restored on resume",
           "        step, epoch = state[\"step\"], state[\"epoch\"]\n", "        epoch = state[\"epoch\"]\n"),
    Mutant("fit", "no final checkpoint", "    if last_saved != step:\n        save()\n", ""),
    Mutant("fit", "logs the last step's loss instead of the window's mean",
           "loss = sum(window[\"loss\"]) / len(window[\"loss\"])", "loss = window[\"loss\"][-1]"),
    Mutant("fit", "run.log without the step",
           "run.log({k: v for k, v in record.items() if k != \"step\"}, step=step)", "run.log(record)"),
    Mutant("fit", "max_minutes ignored", "            elif out_of_time():\n", "            elif False:\n"),
    Mutant("fit", "evaluates after every epoch, ignoring eval_every_epochs",
           "cfg.eval_every_epochs and epoch % cfg.eval_every_epochs == 0 and main:", "main:"),
    Mutant("fit", "NaN error re-raised without the step",
           "                raise FloatingPointError(f\"step {step + 1} (epoch {epoch}): {err}\") from err\n",
           "                raise\n"),
    Mutant("fit", "fp16 without a GradScaler",
           "    scaler = torch.amp.GradScaler(device.type) if needs_grad_scaler(amp_dtype) else None\n",
           "    scaler = None\n"),
    Mutant("fit", "no DistributedSampler: every rank trains on all the data",
           "            sampler.set_epoch(epoch)\n            order = list(sampler)\n",
           "            order = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()\n"),
    Mutant("fit", "no DistributedDataParallel: ranks drift apart",
           "        trainee = DistributedDataParallel(LossForward(model, loss_fn), device_ids=gpu)\n"
           "        step_loss = call_forward\n",
           "        trainee, step_loss = model, loss_fn\n"),
]

# Held-out classes of mistakes (train mode, strictness of loading, DDP key names, the logged history).
MUTANTS += [
    Mutant("train_step", "never calls model.train()",
           "    model.train()\n    with torch.autocast(device_type=device_type", "    with torch.autocast(device_type=device_type"),
    Mutant("load_checkpoint", "weights loaded with strict=False",
           "    module.load_state_dict(state[\"model\"])\n", "    module.load_state_dict(state[\"model\"], strict=False)\n"),
    Mutant("load_checkpoint", "loaded into the DDP wrapper's key names (module.*)",
           "    module = model.module if isinstance(model, (DistributedDataParallel, nn.DataParallel)) else model\n"
           "    module = getattr(module, \"_orig_mod\", module)\n    module.load_state_dict(state[\"model\"])\n",
           "    module = model\n    module.load_state_dict(state[\"model\"])\n"),
    Mutant("fit", "a resume starts a new logged history",
           "        history, evals = list(extra.get(\"history\", [])), list(extra.get(\"evals\", []))\n",
           "        evals = list(extra.get(\"evals\", []))\n"),
]
