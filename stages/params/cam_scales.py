"""``cam.scales`` against the classifier: the check that train_cls makes before training and
make_cam before computing CAMs.

Apart from the rest of ``cam`` (make_cam's business), so that train_cls reads and depends on
only the scales: editing the ``cam`` schema must not retrain the classifier.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from destseg.models.configs import feature_size
from stages.params.base import Scales


class CamScalesParams(BaseModel):
    """``cam.scales`` alone (the other keys of ``cam`` are ignored here)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    scales: Scales


def check_mdc_scales(config: dict, scales: list[float], smallest_side: int) -> None:
    """Refuse CAM scales at which the classifier's MDC (``config`` as the model file stores it)
    would get a feature map with fewer cells than its grid on an image whose shorter side is
    ``smallest_side`` (the smallest of the images to get CAMs)."""
    mdc = config.get("mdc")
    if not mdc:
        return
    scaled = max(1, round(smallest_side * min(scales)))
    cells = feature_size(scaled, config["output_stride"], mdc["position"])
    if mdc["grid"] > cells:
        raise ValueError(
            f"cam.scales: at scale {min(scales)} the smallest image ({smallest_side} px) gives the "
            f"MDC a {cells}x{cells} feature map, smaller than cls.mdc.grid ({mdc['grid']}); drop "
            "that scale or lower cls.mdc.grid"
        )
