"""``dvc plots show`` (or ``diff``) as a page that renders with no network.

DVC's page loads vega, vega-lite and vega-embed from a CDN: offline (a laptop on a train, a
cluster node without internet) its curves, threshold sweep and per-class bars stay blank, and
only the PNG figures show. This runs the same DVC command with DVC's own ``--html-template``,
a template that carries the three libraries inline, as one script that vl-convert-python (on
PyPI, a dependency of the project) bundles for the Vega-Lite version DVC writes (v5). The page
is a single HTML file beside the PNGs DVC copies; nothing in it is fetched from elsewhere.

    python scripts/plots_page.py                        # dvc plots show -> dvc_plots/index.html
    python scripts/plots_page.py --out page diff main   # dvc plots diff main -> page/index.html

Everything after the options goes to ``dvc plots`` as it is (``show`` when nothing is given).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, help=__doc__)

# The Vega-Lite major version of DVC's plot specs ("$schema": ".../vega-lite/v5.json"): the
# bundle takes the newest 5.x that vl-convert carries.
VEGA_LITE = 5
# Where the template is written: DVC's own scratch folder, ignored by git (.dvc/.gitignore).
TEMPLATE = Path(".dvc/tmp/plots_offline.html")
# A resource a page would fetch: a script, stylesheet, image or frame from another address.
EXTERNAL = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//[^>]*>""",
    re.IGNORECASE,
)


def vega_bundle() -> str:
    """vega, vega-lite and vega-embed as one script that sets ``window.vegaEmbed`` (and
    ``vega``, ``vegaLite``), the names DVC's plot elements call."""
    try:
        import vl_convert
    except ImportError:
        raise SystemExit(
            "error: vl-convert-python is not installed (a dependency of destseg): "
            'pip install -e .'
        ) from None
    versions = [
        tuple(int(n) for n in v.split("."))
        for v in vl_convert.get_vegalite_versions()
        if v.split(".")[0] == str(VEGA_LITE)
    ]
    if not versions:
        raise SystemExit(f"error: this vl-convert-python bundles no Vega-Lite {VEGA_LITE}.x")
    return vl_convert.javascript_bundle(vl_version=".".join(map(str, max(versions))))


def template(bundle: str) -> str:
    """DVC's page layout with the libraries inline instead of its ``{scripts}`` (the CDN
    tags): DVC fills ``{plot_divs}`` alone. The bundle runs in a function of its own, so that
    its top-level names cannot clash with the ``var spec`` of DVC's plot scripts (it hands
    ``vegaEmbed``, ``vega`` and ``vegaLite`` to ``window`` itself); ``</script`` inside it
    would end the tag early, so it is escaped the way JavaScript reads it unchanged."""
    inline = bundle.replace("</script", "<\\/script")
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>DVC Plot</title>\n'
        f"<script>\n(() => {{\n{inline}\n}})();\n</script>\n"
        "<style>table { border-spacing: 15px; }</style>\n</head>\n"
        "<body>\n{plot_divs}\n</body>\n</html>\n"
    )


def external_resources(page: str) -> list[str]:
    """The tags of ``page`` that would load something over the network."""
    return [match.group(0) for match in EXTERNAL.finditer(page)]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def main(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder of the page (index.html).")] = Path(
        "dvc_plots"
    ),
) -> None:
    """Write the offline template, then run ``dvc plots <args> --html-template ... -o out``."""
    dvc = shutil.which("dvc") or str(Path(sys.executable).with_name("dvc"))
    args = ctx.args or ["show"]
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(template(vega_bundle()), encoding="utf-8")
    done = subprocess.run(
        [dvc, "plots", *args, "--html-template", str(TEMPLATE), "-o", str(out)], check=False
    )
    if done.returncode != 0:
        raise typer.Exit(done.returncode)
    page = out / "index.html"
    found = external_resources(page.read_text(encoding="utf-8"))
    if found:
        raise SystemExit(f"error: {page} still loads from the network: {found[0]}")
    print(f"{page}: renders offline (vega, vega-lite and vega-embed inline)")


if __name__ == "__main__":
    app()
