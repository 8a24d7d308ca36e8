"""Which images a stage labels, scores and tunes on, and the rules between those lists.

The CAM and refinement stages label every image of the training list (``splits.train``),
score those of the reported list (``splits.score_cams``; none without one: a dataset whose
training images have tags and no masks) and choose their ``auto`` thresholds on the tuning
list (``splits.tune``). Both lists must lie inside the training list (the classifier saw their
images as it saw the rest), and they must not meet: a threshold chosen on the reported images
is an oracle, not a result. Messages name the params that hold the lists.
"""

from __future__ import annotations

from destseg.dataset.layout import VOCLayout


class SplitError(ValueError):
    """Lists that break the rules above; the message names the param and an image."""


def cam_ids(
    layout: VOCLayout, train: str, score_cams: str | None
) -> tuple[list[str], set[str]]:
    """The images that get CAMs and pseudo-masks (list ``train``), and those of them that are
    scored (list ``score_cams``, which must lie inside ``train``; None: none)."""
    ids = layout.ids(train)
    if score_cams is None:
        return ids, set()
    scored = layout.ids(score_cams)
    _inside_train("score_cams", layout, score_cams, scored, train, ids)
    return ids, set(scored)


def tuning_ids(
    layout: VOCLayout,
    train: str,
    score_cams: str | None,
    tune: str | None,
    wanted_by: str | None,
) -> list[str]:
    """The images of list ``tune`` (inside ``train``, outside ``score_cams``), or none without
    a tuning list. ``wanted_by`` names a param set to ``auto``, which needs a non-empty list."""
    if tune is None:
        if wanted_by:
            raise SplitError(
                f"{wanted_by}: auto needs splits.tune, a list of images with masks inside "
                f"splits.train and outside splits.score_cams; name one or give a number"
            )
        return []
    ids = layout.ids(tune)
    if wanted_by and not ids:
        raise SplitError(f"{wanted_by}: auto needs images, and {layout.split_path(tune)} is empty")
    _inside_train("tune", layout, tune, ids, train, layout.ids(train))
    reported = sorted(set(ids) & set(layout.ids(score_cams) if score_cams else ()))
    if reported:
        raise SplitError(
            f"splits.tune: {len(reported)} images of {layout.split_path(tune)} are also in "
            f"splits.score_cams ({score_cams}), e.g. {reported[0]}: a threshold tuned on the "
            "reported images is an oracle, not a result"
        )
    return ids


def _inside_train(
    key: str, layout: VOCLayout, name: str, ids: list[str], train: str, train_ids: list[str]
) -> None:
    outside = sorted(set(ids) - set(train_ids))
    if outside:
        raise SplitError(
            f"splits.{key}: {len(outside)} images of {layout.split_path(name)} are not in "
            f"splits.train ({train}), e.g. {outside[0]}"
        )


def check_lists(
    layout: VOCLayout, train: str, val: str, score_cams: str | None, tune: str | None
) -> None:
    """Every rule between the lists, checked at once, before the first training: that each
    named list exists, that ``score_cams`` and ``tune`` lie inside ``train`` without meeting,
    and that the images scored or tuned on (``val``, ``score_cams``, ``tune``) have masks.
    The stages that read a list check it again; this only makes them fail in seconds instead
    of after the classifier's hours."""
    for key, name in (("train", train), ("val", val), ("score_cams", score_cams), ("tune", tune)):
        if name is not None:
            try:
                ids = layout.ids(name)
            except (FileNotFoundError, ValueError) as err:
                raise SplitError(f"splits.{key}: {err}") from None
            if key != "train":
                _masked(key, layout, name, ids)
    cam_ids(layout, train, score_cams)
    tuning_ids(layout, train, score_cams, tune, None)


def _masked(key: str, layout: VOCLayout, name: str, ids: list[str]) -> None:
    """Refuse list ``name`` (param ``splits.<key>``) unless every image of it has a mask."""
    unmasked = [i for i in ids if not layout.mask_path(i).is_file()]
    if unmasked:
        raise SplitError(
            f"splits.{key}: {len(unmasked)} of the {len(ids)} images of list {name!r} have no "
            f"mask (first: {layout.mask_path(unmasked[0])}), and its images are scored or tuned "
            "on against masks; name a list of images with masks"
        )
