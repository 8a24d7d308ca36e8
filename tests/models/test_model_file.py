"""Model files that cannot be used are one error naming the file."""

import pytest
import torch

from destseg.models.classifier import Classifier
from destseg.models.model_file import build_model, load_model, save_model

CONFIG = {"backbone": "resnet10", "num_classes": 3, "output_stride": 16}


@pytest.mark.bad_input
def test_a_folder_is_not_a_model_file(tmp_path):
    with pytest.raises(ValueError, match="a folder, not a model file"):
        load_model(tmp_path, Classifier, torch.device("cpu"))


@pytest.mark.bad_input
def test_weights_with_nan_are_refused(tmp_path):
    model = build_model(Classifier, CONFIG)
    save_model(tmp_path / "ok.pt", model, CONFIG)
    load_model(tmp_path / "ok.pt", Classifier, torch.device("cpu"))
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    save_model(tmp_path / "nan.pt", model, CONFIG)
    with pytest.raises(ValueError, match=r"nan.pt: the weights hold NaN"):
        load_model(tmp_path / "nan.pt", Classifier, torch.device("cpu"))
