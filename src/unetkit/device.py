"""Pick the device at run time and the precision each command runs at; never assume either.

CPU features come from torch's own capability check (what its kernels will use), read once.
`UNETKIT_CPU_BF16=0|1` overrides the bf16 answer, so both precision paths can be forced, and
tested, on any machine.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from pathlib import Path
from typing import Any

import torch

from unetkit.config import PRECISIONS
from unetkit.errors import UsageError

BF16_ENV = "UNETKIT_CPU_BF16"
# what "auto" means per purpose on a CPU with native bf16 (elsewhere "auto" is 32 on CPU):
# training and predicted masks may use bf16; metrics must not depend on the machine
AUTO_BF16 = {"train": True, "predict": True, "evaluate": False, "export": False}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@functools.cache
def cpu_capabilities() -> dict[str, Any]:
    """torch's view of this CPU (instruction sets, name, cores); empty where it has none."""
    get = getattr(torch.cpu, "get_capabilities", None)
    try:
        return dict(get()) if get is not None else {}
    except RuntimeError:
        return {}


def bf16_forced() -> bool | None:
    """UNETKIT_CPU_BF16 read once for everyone: True (=1), False (=0), None (unset)."""
    forced = os.environ.get(BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise UsageError(f"{BF16_ENV}={forced!r} is not understood; set it to 0 or 1, or unset "
                         f"it.")
    return None


def cpu_has_bf16() -> bool:
    """True when the CPU runs bf16 natively (AVX-512 BF16 or AMX), or UNETKIT_CPU_BF16=1."""
    forced = bf16_forced()
    if forced is not None:
        return forced
    caps = cpu_capabilities()
    if caps:
        return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_flags() -> list[str]:
    """The instruction-set extensions that matter for CPU kernels (avx*, amx*, fma, f16c)."""
    return sorted(k for k, v in cpu_capabilities().items()
                  if v is True and k.startswith(("avx", "amx", "fma", "f16c")))


def cpu_model() -> str:
    """The CPU's marketing name and, on Linux, its family and model numbers, for recording
    where a measurement was taken (virtual machines often report one name, "AMD EPYC", for
    generations whose float32 speed differs 2x)."""
    name = cpu_capabilities().get("cpu_name")
    text = str(name) if name else (platform.processor() or platform.machine())
    ids = _cpuinfo_ids()
    return f"{text} (family {ids[0]}, model {ids[1]})" if ids else text


def _cpuinfo_ids(path: Path = Path("/proc/cpuinfo")) -> tuple[str, str] | None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    pairs = (ln.split(":", 1) for ln in lines[:30] if ":" in ln)  # the first processor
    fields = {k.strip(): v.strip() for k, v in pairs}
    family, model = fields.get("cpu family"), fields.get("model")
    return (family, model) if family and model else None


def check_precision(precision: str, flag: str = "--precision") -> str:
    if precision not in PRECISIONS:
        raise UsageError(f"{flag} {precision!r} is unknown; choose one of "
                         f"{', '.join(PRECISIONS)}.")
    return precision


def resolve_precision(precision: str, device: torch.device, purpose: str = "train") -> str:
    """'auto' -> what `purpose` runs at here: bf16-mixed where the hardware runs it natively
    (16-mixed on GPUs without bf16), except that evaluation and export checks stay at 32."""
    check_precision(precision)
    if precision != "auto":
        if precision == "16-mixed" and device.type != "cuda":
            raise UsageError("--precision 16-mixed needs a CUDA GPU; on the CPU use 32 or "
                             "bf16-mixed.")
        return precision
    if not AUTO_BF16[purpose]:
        return "32"
    if device.type == "cuda":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_has_bf16() else "32"


def autocast_context(device: torch.device, precision: str) -> Any:
    """The autocast region for an already resolved precision (32: none)."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
