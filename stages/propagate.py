"""Stage propagate: the CAMs spread by a random walk over AffinityNet's affinities.

Writes an empty folder when train_aff trained no model (refine.method needs no affinity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from destseg.dataset.layout import VOCLayout
from destseg.runtime.files import empty_directory
from stages.cli import (
    AFFINITY_MODEL_FILE,
    CamsOption,
    DatasetOption,
    ParamsOption,
    check_outputs,
    reported,
    require,
    run_stage,
)
from stages.params.dist import read_dist
from stages.params.propagate import PropagateParams
from stages.params.reader import read_params
from stages.params.run import read_run
from stages.params.splits import read_splits
from stages.torchrun import run_in_workers

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
@reported
def main(
    params: ParamsOption = Path("params.yaml"),
    dataset: DatasetOption = Path("data/dataset"),
    cams: CamsOption = Path("data/cam"),
    model_dir: Annotated[Path, typer.Option("--model-dir", help="train_aff's folder.")] = Path(
        "data/train_aff"
    ),
    out: Annotated[Path, typer.Option(help="Folder of propagated CAM files to write.")] = Path(
        "data/propagated_cam"
    ),
) -> None:
    """One propagated CAM file per image of splits.train (the format of the CAM files)."""
    check_outputs("propagate", folders=[out])
    p = read_params(params, "propagate", PropagateParams)
    run = read_run(params)
    splits = read_splits(params)
    dist = read_dist(params)
    layout = VOCLayout(require(dataset, "dataset (run the prepare stage)"))
    require(model_dir, "affinity model folder (run the train_aff stage)")
    require(cams, "CAM folder (run the make_cam stage)")
    model_path = model_dir / AFFINITY_MODEL_FILE
    if not model_path.is_file():
        print(f"propagate: no {model_path} (no affinity needed): nothing propagated")
        empty_directory(out, "propagate")
        return
    # torch and the network load only for a walk (seconds at every start)
    from destseg.affinity.propagation import propagate_cams
    from destseg.models.affinity_net import AffinityNet
    from destseg.models.model_file import load_model
    from destseg.runtime.device import resolve_device, resolve_precision
    from destseg.runtime.distributed import process_group, shared_directory

    device = resolve_device(run.device)
    if run_in_workers(dist.nproc, __spec__.name, device):
        return
    with process_group(device) as world:
        device = world.local_device(device)
        model, _ = load_model(model_path, AffinityNet, device)
        amp = resolve_precision(run.amp, device)
        amp.place(model)
        ids = world.shard(layout.ids(splits.train))
        # autocast for the network only: the walk itself runs in float32
        with shared_directory(out, world, "propagate") as tmp, amp.autocast():
            propagate_cams(
                model,
                layout,
                ids,
                cam_dir=cams,
                out_dir=tmp,
                beta=p.beta,
                exp_times=p.exp_times,
                normalize=p.normalize,
                device=device,
                progress=world.main,
            )


if __name__ == "__main__":
    run_stage(app)
