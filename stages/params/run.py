"""The top-level keys ``seed``, ``device`` and ``amp``: what every stage that runs a network
reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PlainValidator

from stages.params.base import Section, Seed
from stages.params.reader import read_params

# destseg.runtime.device.AMP_MODES, spelled out so that reading params does not import torch
# (a test keeps the two equal)
AMP_MODES = ("auto", "bf16", "fp16", "off")


def _amp(value: object) -> str:
    if value is False:  # PyYAML (YAML 1.1), which reads params.yaml, takes a bare `off` as false
        return "off"
    if value not in AMP_MODES:
        raise ValueError(f"must be one of {', '.join(AMP_MODES)}, got {value!r}")
    return str(value)


Amp = Annotated[Literal["auto", "bf16", "fp16", "off"], PlainValidator(_amp)]


class RunParams(Section):
    """The top-level keys: the training seed, the device and the precision networks run in."""

    seed: Seed
    device: Annotated[str, Field(pattern=r"^(auto|cpu|cuda(:\d+)?)$")]
    amp: Amp


def read_run(path: Path) -> RunParams:
    """The top-level ``seed``, ``device`` and ``amp``."""
    return read_params(path, None, RunParams)
