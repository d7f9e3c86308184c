"""The layers import one way, without circles, and only the method registry writes a
method's name (scripts/import_graph.py; the map and the rules: CONTRIBUTING.md)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from script_loader import load_script

graph = load_script("import_graph")


def test_elcl_imports_run_down_the_layers_without_circles():
    assert graph.violations() == []


def test_every_module_is_on_a_layer():
    modules = {graph.module_name(p) for p in (graph.ROOT / "elcl").rglob("*.py")}
    assert len(modules) > 50
    for m in modules:
        graph.layer_of(m)  # raises for a module the map does not place


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {
        "elcl/__init__.py": "",
        "elcl/method_settings.py": 'SECTIONS = {"naive": 1, "joint": 2}\n',
        **files,
    }.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def test_an_upward_import_is_named_by_file_and_line(tmp_path):
    root = _package(
        tmp_path,
        {
            "elcl/data/__init__.py": "",
            "elcl/data/reader.py": "import os\n\n\ndef read():\n    from elcl.models.linker import Linker\n",
            "elcl/models/__init__.py": "",
            "elcl/models/linker.py": "from elcl.data import types\n",
            "elcl/data/types.py": "",
        },
    )
    found = graph.violations(root)
    assert found == [
        "elcl/data/reader.py:5: elcl.data.reader (data) imports elcl.models.linker (models), a higher layer"
    ]


def test_a_circle_is_named_with_the_imports_that_close_it(tmp_path):
    root = _package(
        tmp_path,
        {
            "elcl/curvature/__init__.py": "",
            "elcl/curvature/hooks.py": "from elcl.curvature.layers import kind\n",
            "elcl/curvature/layers.py": (
                "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from elcl.curvature import hooks\n"
            ),
        },
    )
    (line,) = graph.violations(root)
    assert line.startswith("import circle of 2 modules (elcl.curvature.hooks, elcl.curvature.layers): ")
    assert "elcl/curvature/hooks.py:1 elcl.curvature.hooks -> elcl.curvature.layers" in line
    assert "elcl/curvature/layers.py:4 elcl.curvature.layers -> elcl.curvature.hooks" in line


def test_relative_imports_resolve(tmp_path):
    root = _package(
        tmp_path,
        {
            "elcl/data/__init__.py": "from . import mesh\n",
            "elcl/data/mesh.py": "from .. import errors\n",
            "elcl/errors.py": "",
        },
    )
    pairs = {(e.src, e.dst) for e in graph.edges(root)}
    assert {("elcl.data", "elcl.data.mesh"), ("elcl.data.mesh", "elcl.errors")} <= pairs


def test_a_method_name_outside_the_registry_is_named(tmp_path):
    root = _package(
        tmp_path,
        {
            "elcl/continual/__init__.py": "",
            "elcl/continual/methods/__init__.py": 'DEFAULT = "naive"\n',
            "elcl/evaluation/__init__.py": "",
            "elcl/evaluation/render.py": 'def f(m):\n    """naive"""\n    return m == "joint" or m == "joints"\n',
        },
    )
    (line,) = graph.violations(root)
    assert line.startswith("elcl/evaluation/render.py:3: the method name 'joint' written out")


def test_the_two_halves_of_the_method_registry_must_agree(monkeypatch):
    from elcl import method_settings
    from elcl.continual import methods

    methods._check_sections()
    swapped = dict(method_settings.SECTIONS)
    swapped["ewc"], swapped["kfac"] = swapped["kfac"], swapped["ewc"]
    monkeypatch.setattr(methods, "SECTIONS", swapped)
    with pytest.raises(
        methods.ElclError, match="method ewc: Settings is PenaltySettings, its config section is KFACSettings"
    ):
        methods._check_sections()
    monkeypatch.setattr(methods, "SECTIONS", {k: v for k, v in method_settings.SECTIONS.items() if k != "joint"})
    with pytest.raises(methods.ElclError, match="must list the same methods in the same order"):
        methods._check_sections()
