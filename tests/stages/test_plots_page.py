"""scripts/plots_page.py: DVC's plots page with vega, vega-lite and vega-embed inline (its run on
a reproduced pipeline: tests/pipeline/test_e2e.py)."""

import sys

from conftest import ROOT
from dvc_render.html import render_html
from dvc_render.vega import VegaRenderer

sys.path.insert(0, str(ROOT / "scripts"))

import plots_page

# a curve as DVCLive logs one: DVC's linear template over step and value
POINTS = [{"step": s, "loss": 1 / (s + 1), "rev": "workspace"} for s in range(3)]


def _page(tmp_path, template=None) -> str:
    renderer = VegaRenderer(POINTS, "train/loss", x="step", y="loss")
    out = render_html([renderer], tmp_path / "index.html", html_template=template)
    return (tmp_path / "index.html").read_text() if out else ""


def test_dvcs_own_page_loads_from_the_network_and_is_found_to(tmp_path):
    found = plots_page.external_resources(_page(tmp_path))
    assert len(found) == 3 and all("cdn.jsdelivr.net" in tag for tag in found)


def test_the_template_carries_the_bundle_and_dvc_fills_in_its_plots(tmp_path):
    bundle = 'window.vegaEmbed = () => 1; const spec = "</script>";'
    page = _page(tmp_path, plots_page.template(bundle))
    assert plots_page.external_resources(page) == []
    assert "window.vegaEmbed = () => 1;" in page and "vegaEmbed('#" in page
    # the bundle's own names stay in its function; its "</script" cannot end the tag
    assert '(() => {\nwindow.vegaEmbed' in page and '"<\\/script>"' in page


def test_the_bundle_is_vega_lite_5_and_sets_the_names_dvc_calls():
    bundle = plots_page.vega_bundle()
    assert "window.vegaEmbed=" in bundle and "window.vegaLite=" in bundle
    assert plots_page.external_resources(plots_page.template(bundle)) == []
