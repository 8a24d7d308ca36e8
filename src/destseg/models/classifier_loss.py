"""The classifier's training loss: the multi-label loss of the stacked logits, and the options
that add to it (each branch's own loss, Puzzle-CAM's terms, ReCAM's term).

One function for the classifier's two trainings (train_cls, and ReCAM's second phase in
train_recam), so that an option means the same in both and a loss is computed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from destseg.models.puzzle import alpha_at, puzzle_loss
from destseg.models.recam import recam_loss


@dataclass(frozen=True)
class LossTerms:
    """What the loss adds to the stacked logits' multi-label loss (all off by default).

    ``branches``: the names of the classifier's branches (``branch_names``); with several, each
    one's own loss is logged, and added with weight ``branch_loss``. ``tiles`` > 0: Puzzle-CAM
    with that many tiles per side, its reconstruction weight ramped to ``alpha`` over the first
    ``alpha_ramp`` of training. ``recam`` > 0: ReCAM's loss with that weight (the classifier
    must have ReCAM's head).
    """

    branches: tuple[str, ...] = ("plain",)
    branch_loss: float = 0.0
    tiles: int = 0
    alpha: float = 0.0
    alpha_ramp: float = 0.0
    recam: float = 0.0


def classifier_loss(
    model, batch: dict, progress: float, terms: LossTerms = LossTerms()
) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one batch (``image``, ``seed``, ``target``) at ``progress`` of training, and
    the terms to log beside it (``loss_<branch>``, ``loss_tiled``, ``loss_reconstruction``,
    ``loss_recam``). ``model`` may be the DistributedDataParallel wrapper: every output comes
    from its one forward pass.

    The multi-label losses run on float32 logits (autocast would leave the logsigmoid in
    bf16/fp16); the per-image seeds fix each image's LDM shuffle whatever process or batch it
    lands in.
    """
    several = len(terms.branches) > 1
    extras = {"each_branch": several, "recam": terms.recam > 0, "tiles": terms.tiles}
    if not any(extras.values()):
        logits = model(batch["image"], seeds=batch["seed"]).float()
        return F.multilabel_soft_margin_loss(logits, batch["target"])
    out = model(batch["image"], seeds=batch["seed"], **extras)
    target = batch["target"]
    loss = F.multilabel_soft_margin_loss(out["logits"].float(), target)
    logged: dict[str, torch.Tensor] = {}
    if several:
        own = [
            F.multilabel_soft_margin_loss(out["branches"][:, b].float(), target)
            for b in range(len(terms.branches))
        ]
        logged |= {f"loss_{n}": v.detach() for n, v in zip(terms.branches, own, strict=True)}
        if terms.branch_loss:
            loss = loss + terms.branch_loss * torch.stack(own).mean()
    if terms.tiles:
        alpha = alpha_at(progress, terms.alpha, terms.alpha_ramp)
        puzzle, puzzle_terms = puzzle_loss(out["cam"], out["tiled_cam"], target, alpha)
        loss = loss + puzzle
        logged |= puzzle_terms
    if terms.recam:
        recam = recam_loss(out["recam"], target)
        loss = loss + terms.recam * recam
        logged["loss_recam"] = recam.detach()
    return loss, logged
