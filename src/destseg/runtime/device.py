"""Choosing the device and the precision networks run in, and moving batches to the device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available")
    return torch.device(name)


@contextmanager
def deterministic() -> Iterator[None]:
    """torch's deterministic algorithms for the block, then the caller's setting again. On CUDA
    this makes ``index_add_`` (the walk's row sums) add in a fixed order; on the CPU those
    kernels are deterministic already and the results are unchanged. ``warn_only``: an op
    without a deterministic version warns instead of stopping the stage."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def model_device(model: nn.Module) -> torch.device:
    """The device ``model``'s weights are on: where its inputs must go. Under several processes
    that is the process's own GPU, not the device the params name (cuda:1 on rank 0 would put
    the validation images on another GPU than the model)."""
    return next(model.parameters()).device


def to_device(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a batch dict to ``device``; leave the rest (ids) as they are. From
    pinned memory (the loader pins on CUDA) the copies run asynchronously, ordered before any
    kernel that reads them."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


AMP_MODES = ("auto", "bf16", "fp16", "off")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}


@dataclass(frozen=True)
class Precision:
    """How networks run on a device: the autocast dtype (None: float32 throughout) and the
    memory format. Mixed precision and channels_last use the tensor cores of a GPU; on the CPU
    they only slow things down or change results, so ``resolve_precision`` leaves them off
    there unless asked."""

    device: torch.device
    dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def name(self) -> str:
        """``bf16``, ``fp16`` or ``off``: what a fingerprint or a log line records."""
        return next(name for name, dtype in AMP_DTYPES.items() if dtype == self.dtype)

    def autocast(self) -> torch.autocast:
        """The autocast context of this precision (a no-op when off)."""
        return torch.autocast(
            self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None
        )

    def scaler(self) -> torch.amp.GradScaler:
        """A gradient scaler, live only for fp16 (bf16 has float32's range and needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def place(self, model: nn.Module) -> nn.Module:
        """``model`` on the device, in channels_last when asked."""
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model


def resolve_precision(amp: str, device: torch.device) -> Precision:
    """``auto``: bf16 on a CUDA device with native bf16 (compute capability 8.0, Ampere, or
    later), else fp16; float32 on the CPU. ``bf16``/``fp16``/``off`` are taken as asked on any
    device, so the mixed-precision paths can run on a CPU too. channels_last comes with mixed
    precision on CUDA only: ``off`` runs exactly as the code did before it had ``amp``."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp {amp!r}: choose one of {', '.join(AMP_MODES)}")
    cuda = device.type == "cuda"
    if amp == "auto":
        if not cuda:
            return Precision(device)
        # not torch.cuda.is_bf16_supported(): it also says yes where bf16 is only emulated
        amp = "bf16" if torch.cuda.get_device_capability(device) >= (8, 0) else "fp16"
    dtype = AMP_DTYPES[amp]
    return Precision(device, dtype, channels_last=cuda and dtype is not None)
