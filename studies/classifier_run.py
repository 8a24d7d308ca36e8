"""What the classifier diagnostics share: the options naming a run's params, classifier and
dataset, and loading them (on the CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer
import yaml

from destseg.dataset.layout import VOCLayout
from destseg.models.classifier import Classifier
from destseg.models.model_file import load_model

ParamsOption = Annotated[Path, typer.Option(help="The run's params file.")]
ModelOption = Annotated[Path, typer.Option("--model", help="The run's classifier model file.")]
DatasetOption = Annotated[Path, typer.Option(help="The run's dataset folder.")]


def load_classifier_run(params: Path, model_path: Path, dataset: Path):
    """The params (a dict), the dataset layout, the classifier in eval mode and its recorded
    configuration."""
    config = yaml.safe_load(params.read_text())
    model, stored = load_model(model_path, Classifier, torch.device("cpu"))
    return config, VOCLayout(dataset), model.eval(), stored
