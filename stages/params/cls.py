"""Section ``cls`` (stage train_cls): the classifier and its destruction modules."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, model_validator

from destseg.models.configs import LdmConfig, MdcConfig, feature_size
from stages.params.base import Probability, Section
from stages.params.train import TrainParams


class LdmParams(LdmConfig):
    """Low-Level Destruction Module: region confusion of the input image. Its settings are
    those a classifier's model file stores (destseg.models.configs), plus the switch."""

    enabled: StrictBool


class MdcParams(MdcConfig):
    """Mid-Level Distribution-and-Collection Module: patch-wise convolution of features. Its
    settings are those a classifier's model file stores, plus the switch."""

    enabled: StrictBool


class PuzzleParams(Section):
    """Puzzle-CAM (destseg.models.puzzle): the whole image's CAM asked to match its tiles'."""

    enabled: StrictBool
    tiles: Annotated[int, Field(ge=2)]  # tiles per side (the reference's 4 pieces: 2)
    alpha: Annotated[float, Field(ge=0)]  # the reconstruction loss's final weight
    alpha_ramp: Probability  # share of the training over which that weight grows from 0


class ClsParams(TrainParams):
    ldm: LdmParams
    mdc: MdcParams
    # weight of the mean of each branch's own multi-label loss beside the loss of the stacked
    # logits (0: the stacked loss alone, as the paper writes it)
    branch_loss: Annotated[float, Field(ge=0)]
    puzzle: PuzzleParams

    @model_validator(mode="after")
    def _modules_fit_the_crop(self) -> ClsParams:
        if self.ldm.enabled and self.ldm.grid > self.crop_size:
            raise ValueError(
                f"ldm.grid ({self.ldm.grid}) is larger than crop_size ({self.crop_size}): the "
                "LDM needs cells of at least one pixel"
            )
        if self.mdc.enabled:
            mdc_side = feature_size(self.crop_size, self.output_stride, self.mdc.position)
            if self.mdc.grid > mdc_side:
                raise ValueError(
                    f"mdc.grid ({self.mdc.grid}) is larger than the {mdc_side}x{mdc_side} "
                    f"feature map the MDC sees on a crop of {self.crop_size} px (encoder stage "
                    f"{self.mdc.position}, output_stride {self.output_stride})"
                )
        return self

    @model_validator(mode="after")
    def _tiles_fit_the_crop(self) -> ClsParams:
        if not self.puzzle.enabled:
            return self
        tiles, crop, stride = self.puzzle.tiles, self.crop_size, self.output_stride
        tile = crop // tiles
        if crop % tiles or tiles * feature_size(tile, stride) != feature_size(crop, stride):
            raise ValueError(
                f"puzzle.tiles ({tiles}) does not cut crop_size ({crop}) into tiles whose CAMs "
                f"stitch into the whole crop's: crop_size must be a multiple of tiles x "
                f"output_stride ({tiles * stride})"
            )
        if self.mdc.enabled and self.mdc.grid > feature_size(tile, stride, self.mdc.position):
            raise ValueError(
                f"mdc.grid ({self.mdc.grid}) is larger than the feature map the MDC sees on a "
                f"{tile} px Puzzle-CAM tile (crop_size / puzzle.tiles)"
            )
        return self

    def variant(self) -> dict:
        """The destruction modules as the classifier takes them: settings, or None when off."""
        return {
            "ldm": self.ldm.model_dump(exclude={"enabled"}) if self.ldm.enabled else None,
            "mdc": self.mdc.model_dump(exclude={"enabled"}) if self.mdc.enabled else None,
        }
