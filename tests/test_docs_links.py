"""Every relative link of the front page and the docs leads somewhere, and every page the
params files point to exists: a reader who follows one never lands on nothing."""

import re
from pathlib import Path

import pytest
from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PARAMS = [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("*.yaml"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```.*?```", re.S)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but hyphens dropped, spaces to
    hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = CODE.sub("", page.read_text())
    return {anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_leads_to_a_file_and_heading(page):
    broken = []
    for target in LINK.findall(CODE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not followed offline
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (
            fragment and file.suffix == ".md" and fragment not in anchors(file)
        ):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: p.name)
def test_the_pages_the_params_point_to_exist(params):
    named = set(re.findall(r"\b((?:docs/)?[\w.-]+\.md)\b", params.read_text()))
    missing = [name for name in named if not (ROOT / name).exists()]
    assert not missing, f"{params.name} points to {missing}"
    # a section named after a page: docs/gpus.md "Several GPUs", README.md ("Parameters")
    pointers = re.findall(r'(README(?:\.md)?|docs/[\w-]+\.md) \(?"([^"]+)"', params.read_text())
    for page, section in pointers:
        headings = anchors(ROOT / (page if page.endswith(".md") else f"{page}.md"))
        assert any(anchor(section) in h for h in headings), f"{page} has no '{section}'"
