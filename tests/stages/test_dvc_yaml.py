"""DVC hygiene of dvc.yaml: every stage depends on all the code it runs and on nothing else."""

import ast
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _module_file(name: str) -> Path | None:
    """The file of a module of this project (stages.* or destseg.*), None for third parties."""
    if name.startswith("stages"):
        base = ROOT / Path(*name.split("."))
    elif name.startswith("destseg"):
        base = ROOT / "src" / Path(*name.split("."))
    else:
        return None
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    init = base / "__init__.py"
    return init if init.is_file() else None


def _code_closure(path: Path) -> set[Path]:
    """The project's source files that ``path`` imports, transitively (itself included)."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(current.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                file = _module_file(name)
                if file is not None:
                    todo.append(file)
    return seen


def _covered(file: Path, deps: list[str]) -> bool:
    relative = file.relative_to(ROOT)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


# The package files of src/destseg and stages: no dep of any stage. The top-level ones only set
# the import path and the version; the others must stay empty (next test), so that a stage
# depends on the modules it imports and nothing rides along in a package's __init__.
INITS = {*(ROOT / "src" / "destseg").rglob("__init__.py"), *(ROOT / "stages").rglob("__init__.py")}
TOP_LEVEL = {ROOT / "stages" / "__init__.py", ROOT / "src" / "destseg" / "__init__.py"}


def test_package_files_below_the_top_are_empty():
    assert len(INITS - TOP_LEVEL) >= 10  # dataset, models, cam, affinity, ... and stages.params
    assert [str(f.relative_to(ROOT)) for f in sorted(INITS - TOP_LEVEL) if f.read_text()] == []


@pytest.mark.parametrize("stage", list(DVC))
def test_stage_deps_cover_the_code_it_runs(stage):
    spec = DVC[stage]
    module = ROOT / "stages" / f"{stage}.py"
    assert f"python -m stages.{stage}" in spec["cmd"]
    missing = [
        str(file.relative_to(ROOT))
        for file in sorted(_code_closure(module) - INITS)
        if not _covered(file, spec["deps"])
    ]
    assert not missing, f"{stage} runs code it does not list as deps: {missing}"


@pytest.mark.parametrize("stage", list(DVC))
def test_stage_code_deps_are_all_used(stage):
    spec = DVC[stage]
    closure = _code_closure(ROOT / "stages" / f"{stage}.py")
    for dep in spec["deps"]:
        if dep.startswith(("stages/", "src/")):
            path = ROOT / dep
            files = set(path.rglob("*.py")) if path.is_dir() else {path}
            assert files & closure, f"{stage} lists {dep} but does not use it"


@pytest.mark.parametrize("stage", list(DVC))
def test_stage_params_exist_and_metrics_are_uncached(stage):
    spec = DVC[stage]
    for key in spec.get("params", []):
        node = PARAMS
        for part in key.split("."):  # every level of a dotted key, e.g. splits.score_cams
            assert isinstance(node, dict) and part in node, f"{stage}: {key} not in params.yaml"
            node = node[part]
    for entry in spec.get("metrics", []) + spec.get("plots", []):
        ((_, options),) = entry.items()
        assert options["cache"] is False
