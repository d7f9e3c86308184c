"""The docs site follows the code: the generated references name every command, option and
key there is, every config key has a line of meaning, and the README stays a short entry
point whose links lead somewhere.

``mkdocs build --strict`` itself (broken links and anchors, mkdocstrings) runs in
``.ci/run``; these checks are the part of it that needs no mkdocs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main
import yaml
from script_loader import load_script

from elcl.cli.app import app
from elcl.config import ExperimentConfig
from elcl.continual.methods import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
ref = load_script("docs_reference")


def _dotted(d: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _dotted(value, path + ".") if value else [path + "/"]  # a section without keys
        else:
            out.append(path)
    return out


def test_the_configuration_reference_lists_every_key_with_a_meaning() -> None:
    page = ref.render_config()
    # every key a resolved config holds, for every method (the dump holds only the named one)
    keys = set()
    for name in REGISTRY:
        keys |= set(_dotted(ExperimentConfig.model_validate({"method": {"name": name}}).to_dict()))
    documented = set(re.findall(r"^\| `([^`]+)` \|", page, flags=re.M))
    documented |= {f"{s}/" for s in re.findall(r"^## (\S+)$", page, flags=re.M)}
    assert keys - documented == set(), "config keys missing from the reference"
    assert ref.missing_descriptions() == [], "config keys without a docstring or Field(description=...)"
    # the defaults are the models' own
    assert "| `candidates.k` | int | `20` |" in page
    assert "| `method.kfac.lambda` | float or `auto` | `1.0` |" in page


def _commands(group: Any, prefix: str = "elcl") -> dict[str, Any]:
    out = {}
    for name, cmd in group.commands.items():
        out[f"{prefix} {name}"] = cmd
        if hasattr(cmd, "commands"):
            out.update(_commands(cmd, f"{prefix} {name}"))
    return out


def test_the_cli_reference_lists_every_command_and_option() -> None:
    page = ref.render_cli()
    commands = _commands(typer.main.get_command(app))
    assert {"elcl train", "elcl evaluate", "elcl data candidates"} <= set(commands)
    for full, cmd in commands.items():
        assert f"## `{full}`" in page, full
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("-"):
                    assert re.search(rf"`[^`]*{re.escape(opt)}\b", page), f"{full} {opt}"


def test_the_file_format_reference_lists_every_schema_key() -> None:
    from elcl import schemas

    page = ref.render_schemas()
    for model in (
        schemas.RunRecord,
        schemas.MetricRow,
        schemas.PredictionRow,
        schemas.CurvatureMeta,
        schemas.PruneRecord,
    ):
        assert f"### `{model.__name__}`" in page
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in page, f"{model.__name__}.{name}"


def test_a_key_without_a_docstring_is_reported() -> None:
    from pydantic import BaseModel

    class Section(BaseModel):
        documented: int = 1
        """What it means."""
        bare: int = 2

    assert ref.describe(Section, "documented", Section.model_fields["documented"]) == "What it means."
    assert ref.describe(Section, "bare", Section.model_fields["bare"]) == ""


README = ROOT / "README.md"


def test_the_readme_is_a_short_entry_point_whose_links_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    # .ci/run runs the README's test command
    assert "python -m pytest -q" in text and "make install" in text
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert links, "the README links to the docs"
    for link in links:
        if "://" not in link:
            assert (ROOT / link).is_file(), f"README links to missing {link}"


def _nav_pages(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [p for item in node for p in _nav_pages(item)]
    if isinstance(node, dict):
        return [p for value in node.values() for p in _nav_pages(value)]
    return []


def test_every_nav_page_is_written_or_generated() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    generated = {f"experiments/reports/{name}.md" for name in _report_pages()}
    for page in _nav_pages(config["nav"]):
        assert (ROOT / "docs" / page).is_file() or page in generated, f"mkdocs.yml nav: {page} does not exist"


def _report_pages() -> list[str]:
    source = (ROOT / "scripts" / "gen_docs.py").read_text(encoding="utf-8")
    block = source[source.index("REPORTS = {") : source.index("}\n", source.index("REPORTS = {"))]
    pages = re.findall(r'^\s+"(\w+)": \("(results/[^"]+)"', block, flags=re.M)
    for _page, folder in pages:
        assert (ROOT / folder / "report.md").is_file(), folder
    return [page for page, _ in pages]
