"""studies/premise_check.py: the regime it trains on is params.yaml with the user's overrides,
read as YAML, and a key that does not exist is refused rather than added."""

import pytest
import typer
import yaml
from conftest import ROOT

from studies import premise_check


def test_overrides_are_read_as_yaml_into_existing_keys():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    changed = premise_check.with_overrides(
        params, ["data.synthetic.part_style=constellation", "cls.ldm.k=2", "cam.flip=false"]
    )
    assert changed["data"]["synthetic"]["part_style"] == "constellation"
    assert changed["cls"]["ldm"]["k"] == 2 and changed["cam"]["flip"] is False


@pytest.mark.bad_input
def test_an_unknown_key_is_refused():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    with pytest.raises(typer.BadParameter, match=r"data\.synthetic\.part_stlye: no such key"):
        premise_check.with_overrides(params, ["data.synthetic.part_stlye=constellation"])
