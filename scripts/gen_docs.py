"""Pages the docs site builds from the code and the committed results (mkdocs-gen-files).

Run by ``mkdocs build`` (``plugins: gen-files`` in mkdocs.yml), never by hand:

* ``reference/cli.md``, ``reference/configuration.md``, ``reference/file-formats.md``: the
  hand-written introduction in ``docs/`` with the part rendered by
  ``scripts/docs_reference.py`` appended — every command and option of the Typer app,
  every key of the config models, every key of the schemas of ``elcl/schemas.py``;
* ``experiments/reports/*.md``: the committed benchmark reports (``report.md`` as
  ``elcl evaluate`` wrote it, with its frontier plot), so the experiment pages link to
  the very file their figures quote.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import docs_reference  # noqa: E402  (scripts/ is not a package)

# page under experiments/reports/ -> (committed report directory, title)
REPORTS = {
    "quick": ("results/quick/report", "`make quick`"),
    "reproduce_cpu": ("results/reproduce_cpu/report", "`make reproduce-cpu`, six CPU seeds"),
    "reproduce_cpu_all": ("results/reproduce_cpu/report_all", "`make reproduce-cpu-report-all`, nine seeds"),
    "reproduce_cpu_context": ("results/reproduce_cpu_context/report", "`make reproduce-cpu-context`"),
    "reproduce_cpu_confirm": ("results/reproduce_cpu_confirm/report", "`make reproduce-cpu-confirm`"),
}


def write_reports() -> None:
    for page, (folder, title) in REPORTS.items():
        text = (ROOT / folder / "report.md").read_text(encoding="utf-8")
        body = text.split("\n", 1)[1] if text.startswith("# ") else text
        # R[i][j] is prose here, not a Markdown reference link (the reports hold no links).
        body = body.replace("[", "\\[")
        frontier = ROOT / folder / "frontier.png"
        lines = [
            f"# Report: {title}",
            "",
            f"`{folder}/report.md`, as `elcl evaluate` wrote it (rebuilt from the committed runs by"
            " `tests/test_committed_results.py`).",
            "",
            body.strip(),
            "",
        ]
        if frontier.is_file():
            with mkdocs_gen_files.open(f"experiments/reports/{page}_frontier.png", "wb") as f:
                f.write(frontier.read_bytes())
            lines += [f"![frontier]({page}_frontier.png)", ""]
        with mkdocs_gen_files.open(f"experiments/reports/{page}.md", "w") as f:
            f.write("\n".join(lines))


# Each page's hand-written introduction stays in docs/; the generated part is appended.
for page, render in (
    ("reference/cli.md", docs_reference.render_cli),
    ("reference/configuration.md", docs_reference.render_config),
    ("reference/file-formats.md", docs_reference.render_schemas),
):
    with mkdocs_gen_files.open(page, "a") as f:
        f.write("\n\n" + render())
write_reports()
