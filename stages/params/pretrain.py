"""Section ``pretrain`` (stage pretrain): an encoder trained first on another corpus."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool

from stages.params.base import Section, Seed
from stages.params.data import SyntheticParams


class PretrainParams(Section):
    """An encoder trained on a corpus of the embedded generator with other classes and images,
    which then starts train_cls, as ImageNet weights start the references' classifiers. The
    recipe (architecture, crop, augmentation, optimizer, batch) is the classifier's own
    (section ``cls``); only the corpus, its seed and the number of epochs are this section's."""

    enabled: StrictBool
    seed: Seed  # the corpus's images and this training's draws: one encoder for every run
    epochs: Annotated[int, Field(ge=1)]
    synthetic: SyntheticParams
