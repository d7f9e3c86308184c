"""The import graph of ``elcl/``: circles, arrows that run up the layer map, and method
names written out outside the method registry.

    python scripts/import_graph.py            # violations, one per line (exit 1 when any)
    python scripts/import_graph.py --edges    # every module-to-module arrow, file:line

Why: the layers (CONTRIBUTING.md) are meant to import one way; an arrow up the map or a
circle is the first step of a tangle nobody can take apart later. Read from the source
with ``ast`` rather than by importing, so function-local imports (the usual way a circle
is hidden) count as well, and ``if TYPE_CHECKING:`` imports too (a circle for the type
checker is a circle for the reader). ``tests/test_layers.py`` runs the same check.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "elcl"

# Bottom to top. A module may import from its own layer's modules and from any layer
# below it, never from one above. Names are module prefixes: the longest match wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "elcl",  # the package's __init__
            "elcl.errors",
            "elcl.fileio",
            "elcl.schemas",
            "elcl.hardware",
            "elcl.runtime",
            "elcl.provenance",
            "elcl.interrupt",
            "elcl.method_settings",
        ),
    ),
    ("data", ("elcl.data",)),
    ("candidates", ("elcl.candidates",)),
    # The experiment config names the tasks and candidate settings of the two layers
    # below it and holds the settings of everything above (method sections included,
    # from the foundation's method_settings).
    ("config", ("elcl.config",)),
    ("models", ("elcl.models",)),
    ("training", ("elcl.training", "elcl.pretraining")),
    ("curvature", ("elcl.curvature",)),
    ("continual", ("elcl.continual",)),
    ("evaluation", ("elcl.evaluation", "elcl.linking")),
    ("sweep", ("elcl.sweep",)),  # grids of runs: drives continual/, ranks by evaluation/
    ("cli", ("elcl.cli", "elcl.__main__")),
]


class Edge(NamedTuple):
    """One import statement's arrow from a module to an elcl module it names."""

    src: str
    dst: str
    path: str  # relative to the repository root
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(modules: set[str], name: str) -> str | None:
    """The longest prefix of ``name`` that is a module of the package (``a.b.func`` → ``a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def edges(root: Path = ROOT) -> list[Edge]:
    """Every arrow of the package: ``import x``, ``from x import y`` (y a submodule or a
    name in x), relative imports, wherever they sit in the file."""
    files = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    out: list[Edge] = []
    seen: set[Edge] = set()
    for f in files:
        src = module_name(f, root)
        is_pkg = f.name == "__init__.py"
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        rel = str(f.relative_to(root))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = src.split(".") if is_pkg else src.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # `from a import b` names submodule a.b when there is one, else a name of a.
                targets = [f"{mod}.{a.name}" for a in node.names] or [mod]
            else:
                continue
            for t in targets:
                if t != PACKAGE and not t.startswith(PACKAGE + "."):
                    continue
                dst = _resolve(modules, t)
                if dst is None or dst == src:
                    continue
                edge = Edge(src, dst, rel, node.lineno)
                if edge not in seen:
                    seen.add(edge)
                    out.append(edge)
    return out


def layer_of(module: str) -> int:
    """Index of the module's layer in ``LAYERS`` (longest prefix wins)."""
    best, best_len = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best < 0:
        raise ValueError(f"module {module} is on no layer of scripts/import_graph.py's LAYERS")
    return best


def upward(all_edges: list[Edge]) -> list[Edge]:
    """Arrows from a module to one on a higher layer."""
    return [e for e in all_edges if layer_of(e.dst) > layer_of(e.src)]


def circles(all_edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    graph: dict[str, set[str]] = {}
    for e in all_edges:
        graph.setdefault(e.src, set()).add(e.dst)
        graph.setdefault(e.dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def circle_edges(all_edges: list[Edge], circle: list[str]) -> list[Edge]:
    """The arrows inside one circle (to name the imports that close it)."""
    members = set(circle)
    return [e for e in all_edges if e.src in members and e.dst in members]


# The method registry: the only place a method's name may be written as a string.
REGISTRY_FILES = ("elcl/continual/methods/", "elcl/method_settings.py")
# Names that are also another vocabulary's words, with where and why they may appear.
OTHER_VOCABULARY: dict[str, tuple[str, str]] = {
    "kfac": ("", "also the K-FAC curvature approximation (curvature.approx: kfac)"),
    "ewc": ("elcl/curvature/penalty.py", "the EWC penalty names itself in its errors"),
    "online_ewc": ("elcl/curvature/penalty.py", "the online EWC penalty names itself in its errors"),
}


def method_names(root: Path = ROOT) -> set[str]:
    """The registered methods, read from ``SECTIONS`` in ``elcl/method_settings.py``."""
    tree = ast.parse((root / "elcl" / "method_settings.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign | ast.Assign) and isinstance(node.value, ast.Dict):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "SECTIONS" for t in targets):
                return {k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    raise ValueError("elcl/method_settings.py: no SECTIONS dict of method names")


def name_literals(root: Path = ROOT) -> list[str]:
    """String constants equal to a registered method's name outside the registry: code that
    asks a method's name instead of the method (a new method would be missed there)."""
    names = method_names(root)
    out = []
    for f in sorted((root / PACKAGE).rglob("*.py")):
        rel = str(f.relative_to(root))
        if rel.startswith(REGISTRY_FILES):
            continue
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names):
                continue
            if id(node) in prose:
                continue
            where, _ = OTHER_VOCABULARY.get(node.value, (None, ""))
            if where is not None and rel.startswith(where):
                continue
            out.append(
                f"{rel}:{node.lineno}: the method name {node.value!r} written out; ask the method registry "
                "(elcl.continual.methods: a class attribute or role) instead"
            )
    return sorted(out, key=lambda line: (line.split(":")[0], int(line.split(":")[1])))


def violations(root: Path = ROOT) -> list[str]:
    """One line per problem, each naming the import statement(s) by file:line."""
    all_edges = edges(root)
    lines = []
    for e in upward(all_edges):
        lines.append(
            f"{e.where()}: {e.src} ({LAYERS[layer_of(e.src)][0]}) imports {e.dst} "
            f"({LAYERS[layer_of(e.dst)][0]}), a higher layer"
        )
    for c in circles(all_edges):
        inside = "; ".join(f"{e.where()} {e.src} -> {e.dst}" for e in circle_edges(all_edges, c))
        lines.append(f"import circle of {len(c)} modules ({', '.join(c)}): {inside}")
    return lines + name_literals(root)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edges", action="store_true", help="print every arrow instead of the violations")
    args = ap.parse_args(argv)
    all_edges = edges()
    if args.edges:
        for e in all_edges:
            print(f"{e.where()}: {e.src} -> {e.dst}")
        return 0
    found = violations()
    for line in found:
        print(line)
    ups = upward(all_edges)
    cs = circles(all_edges)
    print(
        f"{len({module_name(p) for p in (ROOT / PACKAGE).rglob('*.py')})} modules, {len(all_edges)} import arrows, "
        f"{len(ups)} upward, {len(cs)} circles"
        + (f" ({', '.join(str(len(c)) for c in cs)} modules)" if cs else "")
        + f", {len(name_literals())} method names written out"
    )
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
