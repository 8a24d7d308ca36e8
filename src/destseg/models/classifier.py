"""The multi-label classifier whose CAMs seed the pseudo-masks, with destruction learning.

Branches, each a feature map of the same shape (C x h x w), stacked on the channel axis:

* ``ldm`` (optional): F^ = E(LDM(I)), the encoder on the region-confused image (training only;
  at inference the image is not shuffled, so F^ = F);
* the plain branch: F = E(I);
* ``mdc`` (optional): F~, the Mid-Level Distribution-and-Collection Module applied to the output
  of encoder stage ``position`` (3 or 4), followed by the remaining stages with shared weights.

[F^ ; F ; F~] goes through global average pooling and one bias-free linear layer (a 1x1 conv).
With the LDM and MDC off this is the plain IRN-style CAM classifier. Because the classifier is
linear after pooling, the CAM is exact: CAM_c = w^_c . F + w_c . F + w~_c . F~.

Two positive controls from the literature train the same network with more outputs of one
forward pass (one pass, so that DistributedDataParallel sees every use of the weights):
Puzzle-CAM's stitched tile maps (:mod:`destseg.models.puzzle`) and, after a second training
phase adds its head (``recam``), ReCAM's class-pooled scores (:mod:`destseg.models.recam`),
whose head then also reweights the CAM.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from destseg.models.backbone import build_encoder
from destseg.models.destruction import PatchConv, destruct_batch
from destseg.models.puzzle import cut_tiles, stitch_tiles
from destseg.models.recam import recam_logits, recam_weight


def branch_names(ldm: dict | None, mdc: dict | None) -> list[str]:
    """The names of the enabled branches in the order of :meth:`Classifier.branches`."""
    return ["ldm"] * bool(ldm) + ["plain"] + ["mdc"] * bool(mdc)


class Classifier(nn.Module):
    KIND = "classifier"  # what model files call it

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        pretrained: bool,
        output_stride: int,
        ldm: dict | None = None,
        mdc: dict | None = None,
        recam: bool = False,
    ):
        """``ldm``: {grid, k, probability}; ``mdc``: {grid, position, shared, activation};
        None switches a module off. ``recam`` adds ReCAM's head (its second training phase)."""
        super().__init__()
        self.encoder = build_encoder(backbone, pretrained, output_stride)
        self.ldm = dict(ldm) if ldm else None
        self.mdc_position = int(mdc["position"]) if mdc else None
        self.mdc = (
            PatchConv(
                self.encoder.stage_channels[self.mdc_position - 1],
                mdc["grid"],
                shared=mdc["shared"],
                activation=mdc["activation"],
            )
            if mdc
            else None
        )
        branches = 1 + (self.ldm is not None) + (self.mdc is not None)
        self.classifier = nn.Conv2d(
            branches * self.encoder.out_channels, num_classes, 1, bias=False
        )
        # ReCAM's Class_Predictor: a bias-free 1x1 convolution with torch's default init
        self.recam_head = (
            nn.Conv2d(branches * self.encoder.out_channels, num_classes, 1, bias=False)
            if recam
            else None
        )

    def branches(
        self, x: torch.Tensor, destruct: bool, seeds: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """The feature maps [F^, F, F~] of the enabled branches, in that order.

        With ``destruct`` the LDM branch encodes the region-confused image (one encoder pass
        over the original and destructed images together; ``seeds``, one per image, fix each
        image's shuffle, see :func:`destruct_batch`); otherwise it reuses F.
        """
        n = x.shape[0]
        if self.ldm is not None and destruct:
            ldm = self.ldm
            shuffled = destruct_batch(x, ldm["grid"], ldm["k"], ldm["probability"], seeds=seeds)
            x = torch.cat([x, shuffled])
        stages = self.encoder.stage_outputs(x)
        features = stages[-1][:n]
        out = []
        if self.ldm is not None:
            out.append(stages[-1][n:] if destruct else features)
        out.append(features)
        if self.mdc is not None:
            mid = self.mdc(stages[self.mdc_position - 1][:n])
            for stage in self.encoder.stages[self.mdc_position :]:
                mid = stage(mid)
            out.append(mid)
        return out

    def forward(
        self,
        x: torch.Tensor,
        seeds: torch.Tensor | None = None,
        *,
        each_branch: bool = False,
        recam: bool = False,
        tiles: int = 0,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Class logits (N, K); the LDM shuffles only in training mode (with ``seeds``: each
        image as its seed says). Asked for more, a dict of ``logits`` and:

        * ``each_branch``: ``branches`` (N, B, K), each branch's own term of the logits (in
          the order of :meth:`branches`): its slice of the linear layer applied to its pooled
          features alone (the logits are their sum), what a loss per branch asks to classify
          on its own;
        * ``recam``: ``recam`` (N, K, K), ReCAM's head on the features (as the logits see them)
          pooled under each class's map (:func:`~destseg.models.recam.recam_logits`);
        * ``tiles`` (Puzzle-CAM, t > 0): ``cam``, the raw CAM of the intact image (N, K, h, w;
          the LDM branch seeing the image itself, as at inference), and ``tiled_cam``, the
          raw CAMs of its t x t tiles, each through the network alone, stitched back.
        """
        features = self.branches(x, destruct=self.training, seeds=seeds)
        stacked = torch.cat(features, dim=1)
        pooled = F.adaptive_avg_pool2d(stacked, 1)
        logits = self.classifier(pooled).flatten(1)
        if not (each_branch or recam or tiles):
            return logits
        out = {"logits": logits}
        if each_branch:
            weights = self.classifier.weight.split(self.encoder.out_channels, dim=1)
            parts = pooled.split(self.encoder.out_channels, dim=1)
            own = [F.conv2d(part, w).flatten(1) for part, w in zip(parts, weights, strict=True)]
            out["branches"] = torch.stack(own, dim=1)
        if recam:
            if self.recam_head is None:
                raise ValueError("this classifier has no ReCAM head (built without recam)")
            out["recam"] = recam_logits(stacked, self.classifier.weight, self.recam_head.weight)
        if tiles:
            if self.ldm is not None and self.training:  # F^ was the shuffled image's: use F
                features = [features[1], *features[1:]]
            out["cam"] = self.classifier(torch.cat(features, dim=1))
            pieces = self.branches(cut_tiles(x, tiles), destruct=False)
            out["tiled_cam"] = stitch_tiles(self.classifier(torch.cat(pieces, dim=1)), tiles)
        return out

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """Raw class activation maps (N, K, h, w) of the unshuffled image, before ReLU; with
        ReCAM's head, the maps of its weights times the classifier's (ReCAM's make_recam)."""
        stacked = torch.cat(self.branches(x, destruct=False), dim=1)
        if self.recam_head is None:
            return self.classifier(stacked)
        return F.conv2d(stacked, recam_weight(self.classifier.weight, self.recam_head.weight))

    def backbone_parts(self) -> list[nn.Module]:
        """The encoder's stem and four stages, input first (for freezing)."""
        return self.encoder.backbone_parts()

    def param_groups(self, lr: float, head_lr_mult: float, weight_decay: float) -> list[dict]:
        """The network at ``lr`` and the layers new in this training at ``lr * head_lr_mult``
        (IRN's ``newly_added`` group: new layers learn 10x faster): the MDC and the linear
        classifier on top of the encoder; in ReCAM's second phase (a model with its head),
        the head alone, the classifier it starts from joining the encoder (ReCAM's
        train_recam: the network at 0.1 x recam_learning_rate, the head at the full rate)."""
        if self.recam_head is None:
            base = list(self.encoder.parameters())
            new = list(self.classifier.parameters())
            if self.mdc is not None:
                new += list(self.mdc.parameters())
        else:
            new = list(self.recam_head.parameters())
            base = [p for p in self.parameters() if all(p is not q for q in new)]
        return [
            {"params": base, "lr": lr, "weight_decay": weight_decay},
            {"params": new, "lr": lr * head_lr_mult, "weight_decay": weight_decay},
        ]
