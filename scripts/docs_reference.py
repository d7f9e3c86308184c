"""The reference pages of the docs site, rendered from the code they describe.

``scripts/gen_docs.py`` writes them into the site at build time (mkdocs-gen-files), so a
command, option, config key or file-format key added to elcl appears in the docs without
anyone editing a page: the CLI from the Typer app, the configuration from the pydantic
models of ``elcl/config.py`` (and each method's settings), the file formats from
``elcl/schemas.py``. Each key's meaning is its ``Field(description=...)`` or the docstring
written under it; ``missing_descriptions`` lists the keys that have neither (a test keeps
that list empty for the configuration, so no config key reaches the reference without a
line of meaning).
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Iterator
from enum import Enum
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

# --------------------------------------------------------------------------- helpers


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def cell(text: str) -> str:
    """Text for one Markdown table cell: one line, pipes escaped, ``<run>`` shown rather
    than read as HTML, Sphinx roles (``:mod:`x```) as code."""
    text = _ROLE.sub(r"`\1`", " ".join(str(text).split()))
    return text.replace("|", "\\|").replace("<", "&lt;")


def code(text: str) -> str:
    return f"`{text}`" if text else ""


def attribute_docstrings(cls: type) -> dict[str, str]:
    """``name -> docstring`` of the attributes of ``cls`` and its bases (nearest wins), read
    from the string literal written right under each annotated attribute."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, BaseModel) or klass.__module__.startswith("pydantic"):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        tree = ast.parse(source)
        body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
        for node, after in zip(body, body[1:] + [None]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                out[node.target.id] = inspect.cleandoc(after.value.value)
    return out


def describe(cls: type[BaseModel], name: str, field: FieldInfo) -> str:
    """A field's meaning: its description, else the docstring under it."""
    return field.description or attribute_docstrings(cls).get(name, "")


def type_name(annotation: Any) -> str:
    """An annotation as a reader of a YAML file thinks of it."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} or null" if type(None) in args else text
    if origin in (list, tuple, set):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"mapping {type_name(args[0])} → {type_name(args[1])}" if args else "mapping"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def default_of(field: FieldInfo) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        return "required"
    if isinstance(value, BaseModel):
        return "section"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return f"`[{', '.join(str(v) for v in value)}]`"
    return f"`{value}`"


def is_section(field: FieldInfo) -> bool:
    ann = field.annotation
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def fields(model: type[BaseModel]) -> Iterator[tuple[str, str, FieldInfo]]:
    """(key as written in files, attribute name, field) of ``model``."""
    for name, field in model.model_fields.items():
        yield field.alias or name, name, field


def field_table(model: type[BaseModel], prefix: str, include_sections: bool = False) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, name, field in fields(model):
        if is_section(field) and not include_sections:
            continue
        rows.append(
            f"| `{prefix}{key}` | {type_name(field.annotation)} | {default_of(field)} | {cell(describe(model, name, field))} |"
        )
    return rows


# --------------------------------------------------------------------------- configuration


def config_sections() -> list[tuple[str, type[BaseModel]]]:
    """(dotted path, model) of every section of an experiment config, top level first."""
    from elcl.config import ExperimentConfig

    out: list[tuple[str, type[BaseModel]]] = [("", ExperimentConfig)]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for key, _name, field in fields(model):
            if is_section(field):
                sub = typing.cast(type[BaseModel], field.annotation)
                out.append((prefix + key, sub))
                walk(sub, prefix + key + ".")

    walk(ExperimentConfig, "")
    return out


def render_config() -> str:
    """The configuration reference: every section and key of ``ExperimentConfig``, one
    ``##`` section each (appended to the hand-written ``docs/reference/configuration.md``)."""
    from elcl.config import ExperimentConfig

    lines: list[str] = []
    for path, model in config_sections():
        title = path or "top level"
        lines += [f"## {title}", ""]
        doc = inspect.getdoc(model) if model is not ExperimentConfig else ""
        if doc and model.__doc__ and not model.__module__.startswith("pydantic"):
            lines += [" ".join(doc.split("\n\n")[0].split()), ""]
        if path.startswith("method."):
            summary = describe(
                _parent(path), path.rsplit(".", 1)[1], _parent(path).model_fields[path.rsplit(".", 1)[1]]
            )
            if summary:
                lines += [f"The `{path.split('.')[1]}` method: {summary}.", ""]
        table = field_table(model, f"{path}." if path else "")
        lines += table if len(table) > 2 else ["No keys of its own."]
        lines.append("")
    return "\n".join(lines)


def _parent(path: str) -> type[BaseModel]:
    return dict(config_sections())[path.rsplit(".", 1)[0]]


def missing_descriptions() -> list[str]:
    """Config keys the reference would print without a meaning (sections have their own page heading)."""
    out = []
    for path, model in config_sections():
        for key, name, field in fields(model):
            if not is_section(field) and not describe(model, name, field):
                out.append(f"{path}.{key}" if path else key)
    return out


# --------------------------------------------------------------------------- file formats


def schema_models() -> list[tuple[str, type[BaseModel]]]:
    """The schemas of ``elcl/schemas.py`` in the order they are defined."""
    from elcl import schemas

    found = [
        obj
        for obj in vars(schemas).values()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == schemas.__name__
    ]
    found = [m for m in found if not m.__name__.startswith("_")]
    found.sort(key=lambda m: inspect.getsourcelines(m)[1])
    return [(m.__name__, m) for m in found]


def render_schemas() -> str:
    lines = [
        "## Schema reference",
        "",
        "Generated from `elcl/schemas.py` when the site is built. Keys a newer elcl adds are"
        " kept and ignored by older readers.",
        "",
    ]
    for name, model in schema_models():
        doc = " ".join((inspect.getdoc(model) or "").split("\n\n")[0].split())
        lines += [f"### `{name}`", "", doc, "", *field_table(model, "", include_sections=True), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _is_group(cmd: Any) -> bool:
    return hasattr(cmd, "list_commands")


def _context(cmd: Any, name: str) -> Any:
    # Typer ships its own copy of click: its classes are reached through the command.
    return cmd.context_class(cmd, info_name=name)


def commands(group: Any, prefix: str = "elcl") -> Iterator[tuple[str, Any]]:
    """(full name, command) of every command of ``group``, depth first, in help order."""
    ctx = _context(group, prefix)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        full = f"{prefix} {name}"
        yield full, cmd
        if _is_group(cmd):
            yield from commands(cmd, full)


def render_command(full: str, cmd: Any) -> list[str]:
    ctx = _context(cmd, full)
    usage = f"{full} {' '.join(cmd.collect_usage_pieces(ctx))}".strip()
    help_text = inspect.cleandoc(cmd.help or "").replace("\b\n", "")
    lines = [f"## `{full}`", "", help_text, "", "```text", usage, "```", ""]
    if _is_group(cmd):
        subs = [f"`{full} {n}`" for n in cmd.list_commands(ctx)]
        lines += [f"Commands: {', '.join(subs)}.", ""]
        return lines
    params = [p for p in cmd.params if not getattr(p, "hidden", False)]
    if params:
        lines += ["| argument / option | meaning |", "|---|---|"]
        for p in params:
            # The record `--help` prints: names with the value's type, help with [default: …] / [required].
            record = p.get_help_record(ctx)
            names, meaning = record if record else ((p.human_readable_name or p.name or "").upper(), "")
            lines.append(f"| `{cell(names)}` | {cell(meaning)} |")
        lines.append("")
    return lines


def render_cli() -> str:
    """Every command of the Typer app, one ``##`` section each, with the records ``--help``
    prints (appended to the hand-written ``docs/reference/cli.md``)."""
    import typer.main

    from elcl.cli.app import app

    root = typer.main.get_command(app)
    lines: list[str] = []
    for full, cmd in commands(root):
        lines += render_command(full, cmd)
    return "\n".join(lines)


if __name__ == "__main__":  # print the pages, e.g. to read them without building the site
    print(render_cli(), render_config(), render_schemas(), sep="\n\n")
    missing = missing_descriptions()
    if missing:
        print("keys without a description:", ", ".join(missing))
