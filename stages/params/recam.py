"""Section ``recam`` (stage train_recam): ReCAM's second training phase of the classifier."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool

from stages.params.base import Positive, Section


class RecamParams(Section):
    """ReCAM (destseg.models.recam): the trained classifier, with a new head, trained again.

    Everything else of the phase (data, augmentation, batch, optimizer, weight decay, freezing)
    is the classifier's own (section ``cls``), as ReCAM's train_recam reuses train_cam's.
    """

    enabled: StrictBool
    epochs: Annotated[int, Field(ge=1)]
    lr: Positive  # the classifier's layers (encoder, MDC, linear classifier)
    head_lr_mult: Positive  # ReCAM's new head at lr * head_lr_mult
    loss_weight: Positive  # ReCAM's loss beside the multi-label loss
