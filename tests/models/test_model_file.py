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


def test_class_names_travel_with_the_model_file(tmp_path):
    from destseg.models.model_file import stored_classes

    names = ["background", "cat", "dog", "cow"]
    model = build_model(Classifier, CONFIG)  # three foreground classes
    save_model(tmp_path / "named.pt", model, CONFIG, names)
    assert stored_classes(tmp_path / "named.pt") == names
    load_model(tmp_path / "named.pt", Classifier, torch.device("cpu"))  # loads as before
    save_model(tmp_path / "bare.pt", model, CONFIG)
    assert stored_classes(tmp_path / "bare.pt") is None


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["background", "cat"], "2 class names for a network of 4 classes"),
        (["background", "cat", "dog", 4], "its class names are not a list of names"),
    ],
)
def test_class_names_that_do_not_fit_the_network_are_refused(tmp_path, names, expected):
    from destseg.models.model_file import stored_classes

    state = {"kind": "classifier", "config": CONFIG, "state_dict": {}, "classes": names}
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=expected):
        stored_classes(tmp_path / "odd.pt")
