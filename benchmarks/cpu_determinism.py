"""Diagnostic: does this machine train bit for bit as another one does?

Runs three AdamW steps of the demo's LDM + MDC classifier on a fixed random batch and prints a
hash of the weights, under each instruction-set setting that can change the arithmetic: the
default, oneDNN limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN's convolution kernels
differ by instruction set, and sum in another order on an AVX-512 machine than on an AVX2 one),
and ATen's vectorised kernels limited to AVX2 (``ATEN_CPU_CAPABILITY=avx2``). Each setting runs
in a fresh process (the variables are read when torch loads). Two machines whose hashes agree
under a setting compute the same training under it, at the same thread count and torch build;
run it on both before comparing experiments run on each.

    OMP_NUM_THREADS=2 python benchmarks/cpu_determinism.py
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import typer

SETTINGS = {
    "default": {},
    "ONEDNN_MAX_CPU_ISA=AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "both": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}


def train_hash() -> str:
    """Three seeded training steps; the md5 of the weights, the loss and the seconds taken."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from destseg.models.classifier import Classifier

    torch.manual_seed(0)
    ldm = {"grid": 4, "k": 1, "probability": 1.0}
    mdc = {"grid": 2, "position": 4, "shared": True, "activation": True}
    model = Classifier("resnet10", 6, False, 16, ldm=ldm, mdc=mdc)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
    x, target = torch.randn(16, 3, 128, 128), (torch.rand(16, 6) > 0.5).float()
    start = time.perf_counter()
    for _ in range(3):
        optimizer.zero_grad()
        loss = F.multilabel_soft_margin_loss(model(x, seeds=torch.arange(16)), target)
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    weights = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    return f"{hashlib.md5(weights).hexdigest()[:12]} loss {loss.item():.8f} {seconds:.1f} s"


def main(child: bool = typer.Option(False, hidden=True)) -> None:
    if child:
        print(train_hash())
        return
    print(f"threads: {os.environ.get('OMP_NUM_THREADS', 'torch default')}")
    for name, variables in SETTINGS.items():
        result = subprocess.run(
            [sys.executable, __file__, "--child"],
            env={**os.environ, **variables},
            capture_output=True,
            text=True,
            check=True,
        )
        print(f"{name:28s} {result.stdout.strip()}")


if __name__ == "__main__":
    typer.run(main)
