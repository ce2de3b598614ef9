"""Session 05 — the training loop: the exercise manifest (tests sit beside it)."""
from harness.autograder.exercises import Exercise, Session

SESSION = Session(
    number=5,
    slug="training_loop",
    title="Training loop: warm-up + cosine, atomic checkpoints, AMP and clipping, resumable DDP-ready fit",
    exercises=(
        Exercise(
            "warmup_cosine",
            summary="LR multiplier for LambdaLR: (step + 1) / W during warm-up, cosine from 1 to min_ratio at T, flat after",
            hint="if step < warmup_steps: return (step + 1) / warmup_steps (LambdaLR calls f(0) for the FIRST step, "
                 "so step / W would waste it at lr 0). Else progress = min(1, (step - W) / max(1, T - W)) and "
                 "return min_ratio + (1 - min_ratio) * 0.5 * (1 + cos(pi * progress)). Clamping progress at 1 keeps "
                 "the rate at min_ratio after T instead of rising again."),
        Exercise(
            "save_checkpoint",
            summary="model/optimizer/scheduler/scaler state dicts, step, epoch, extra and RNG states, written atomically",
            hint="Unwrap DDP (model.module). state = {'model': ..state_dict(), 'optimizer': ..., 'scheduler': ..., "
                 "'scaler': ... (None when not given), 'step', 'epoch', 'extra', 'rng': {'python': random.getstate(), "
                 "'numpy': np.random.get_state(), 'torch': torch.get_rng_state(), 'cuda': "
                 "torch.cuda.get_rng_state_all() if available else None}}. fd, tmp = tempfile.mkstemp(dir=path.parent); "
                 "torch.save into it, then os.replace(tmp, path); on any exception delete tmp and re-raise."),
        Exercise(
            "load_checkpoint",
            summary="restore every state (RNG last) and return step/epoch/extra; clear errors for missing or corrupt files",
            hint="Missing file: raise FileNotFoundError naming the checkpoint and saying how to start fresh. Wrap "
                 "torch.load(path, map_location='cpu', weights_only=False) in try/except and raise RuntimeError "
                 "naming the file as corrupt; also when the dict lacks 'model'/'step'/'rng'. Then load_state_dict into "
                 "model (or model.module), optimizer, scheduler, scaler when given; random.setstate, "
                 "np.random.set_state, torch.set_rng_state (and CUDA's) last."),
        Exercise(
            "train_step",
            summary="autocast forward, NaN guard, zero_grad, (scaled) backward, unscale_, clip, (scaler.)step, scheduler.step",
            hint="model.train(); with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None): "
                 "loss = loss_fn(model, batch). If not math.isfinite(loss.item()): raise FloatingPointError (before "
                 "backward and step). zero_grad; with a scaler: scaler.scale(loss).backward(); scaler.unscale_(optimizer) "
                 "BEFORE clip_grad_norm_ (it returns the norm before clipping; max_norm=inf when None); lr = "
                 "param_groups[0]['lr']; scaler.step(optimizer); scaler.update() (else optimizer.step()); scheduler.step()."),
        Exercise(
            "fit",
            summary="the loop: epoch order from (seed, epoch), skip done batches on resume, log/checkpoint/eval, DDP",
            hint="Per epoch e: order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + e)) "
                 "(DistributedSampler + set_epoch under torch.distributed); DataLoader(sampler=order[batches_done * bs:], "
                 "generator=<its own Generator>) so the global RNG is left to dropout. Resume: load_checkpoint, take step, "
                 "epoch and extra['batches_done']. Count steps globally; stop at max_steps / epochs / max_minutes; log "
                 "means every log_every steps; rank 0 checkpoints. Under DDP wrap LossForward(model, loss_fn) in "
                 "DistributedDataParallel and use call_forward as the loss."),
    ),
)
