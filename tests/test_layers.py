"""The package's layers: imports point one way, and no stage imports another.

Layers, lowest first: the shared base (errors, family, runtime, render), formats/ (every
file format), body/ (the body model and the deformation transfer), fit/ (the fit), then
settings.py, the stages (stages/), then cli (the commands' flags); the package's face
(__init__.py, api.py) on top. The product never imports the test kit (synthetic_kit/). The
import graph is read from the source with `ast`, so the test sees every import, including
those inside functions.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "smplh2smplx"
RANK = {"errors": 0, "family": 0, "runtime": 0, "render": 0, "cli": 6,
        "formats": 1, "body": 2, "fit": 3, "settings": 4, "stages": 5, "api": 6}


def module_parts(path, root):
    return list(path.relative_to(root).with_suffix("").parts)


def imported_modules(path, root):
    """Dotted names of the modules the file `path` imports, relative ones resolved."""
    package = module_parts(path, root)[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def package_imports(path, root):
    """The package modules among `imported_modules(path, root)`."""
    return {name for name in imported_modules(path, root) if name.split(".")[0] == "smplh2smplx"}


def layer_of(parts):
    """(layer, rank) of a module given as dotted parts, or None (the package itself)."""
    if len(parts) < 2 or parts[1] not in RANK:
        return None
    return parts[1], RANK[parts[1]]


def violations(path, root):
    """What the imports of `path` break: an import of a higher layer, or of another stage."""
    own = layer_of(module_parts(path, root))
    found = []
    for target in sorted(package_imports(path, root)):
        other = layer_of(target.split("."))
        if own is None or other is None:
            continue
        if other[1] > own[1]:
            found.append(f"layer {own[0]} imports {target}")
        elif own[0] == other[0] == "stages" and target.split(".")[2:3] != module_parts(
                path, root)[2:3]:
            found.append(f"a stage imports another stage, {target}")
    return found


def package_files():
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def test_every_module_is_in_a_layer():
    root = PACKAGE.parent
    assert [path for path in package_files()
            if layer_of(module_parts(path, root)) is None and path.name != "__init__.py"] == []


@pytest.mark.parametrize("path", package_files(), ids=lambda path: path.name)
def test_imports_point_down_and_stages_stand_alone(path):
    assert violations(path, PACKAGE.parent) == []


@pytest.mark.parametrize("path", package_files(), ids=lambda path: path.name)
def test_the_product_never_imports_the_test_kit(path):
    assert not any(name.split(".")[0] == "synthetic_kit"
                   for name in imported_modules(path, PACKAGE.parent))


def test_the_checker_catches_both_kinds_of_violation(tmp_path):
    stages = tmp_path / "smplh2smplx" / "stages"
    stages.mkdir(parents=True)
    (stages / "report.py").write_text("from .transfer import run_transfer\n"
                                      "from ..formats.meshes import read_mesh\n")
    formats = tmp_path / "smplh2smplx" / "formats"
    formats.mkdir()
    (formats / "meshes.py").write_text("def load():\n    from ..fit import fitter\n"
                                       "    import synthetic_kit.kit\n")
    assert violations(stages / "report.py", tmp_path) == [
        "a stage imports another stage, smplh2smplx.stages.transfer",
        "a stage imports another stage, smplh2smplx.stages.transfer.run_transfer"]
    assert violations(formats / "meshes.py", tmp_path) == [
        "layer formats imports smplh2smplx.fit", "layer formats imports smplh2smplx.fit.fitter"]
    assert "synthetic_kit.kit" in imported_modules(formats / "meshes.py", tmp_path)
