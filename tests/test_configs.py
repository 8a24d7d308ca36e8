"""configs/voc2012.yaml: the paper's configuration is a valid params file for every stage."""

import pytest
import yaml
from conftest import ROOT

from destseg.voc2012 import CLASSES
from stages.common import read_params, read_run
from stages.params import (
    CamParams,
    ClsParams,
    DataParams,
    EvaluateParams,
    RefineParams,
    SegParams,
    SplitParams,
)

CONFIG = ROOT / "configs" / "voc2012.yaml"
SECTIONS = {
    "data": DataParams,
    "splits": SplitParams,
    "cls": ClsParams,
    "cam": CamParams,
    "refine": RefineParams,
    "seg": SegParams,
    "evaluate": EvaluateParams,
}


def _keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


@pytest.mark.parametrize(("section", "schema"), SECTIONS.items())
def test_every_section_validates(section, schema):
    read_params(CONFIG, section, schema)


def test_it_has_exactly_the_keys_of_params_yaml():
    read_run(CONFIG)
    config = yaml.safe_load(CONFIG.read_text())
    assert _keys(config) == _keys(yaml.safe_load((ROOT / "params.yaml").read_text()))


def test_it_is_the_papers_setting():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["data"]["source"] == "voc2012"
    assert config["splits"] == {"train": "train_aug", "val": "val", "score_cams": "train"}
    cls = config["cls"]
    assert (cls["backbone"], cls["output_stride"], cls["crop_size"]) == ("resnet50", 16, 512)
    assert (cls["batch_size"], cls["epochs"], cls["optimizer"], cls["lr"]) == (16, 5, "sgd", 0.1)
    assert cls["pretrained"] and config["seg"]["pretrained"]
    assert cls["ldm"]["enabled"] and cls["mdc"]["enabled"]
    assert config["cam"]["scales"] == [1.0, 0.5, 1.5, 2.0] and config["cam"]["flip"]
    assert len(CLASSES) == 21
