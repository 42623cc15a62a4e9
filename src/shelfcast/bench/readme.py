"""Write the README's result tables from the committed benchmark JSON files, so no number is typed by hand.

A table lives between `<!-- table:NAME -->` and `<!-- /table:NAME -->`; NAME is a JSON file in
`bench/results/` without its suffix. `shelfcast bench readme` rewrites every such block.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)[:60]
    return str(value)


def records_table(records: list[dict]) -> str:
    columns = [k for k in records[0] if not isinstance(records[0][k], (list, dict))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in records]
    return "\n".join(lines)


def scalars_table(doc: dict) -> str:
    lines = ["| measure | value |", "|---|--:|"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in doc.items() if not isinstance(v, (list, dict))]
    return "\n".join(lines)


def render(name: str, doc) -> str:
    if name.startswith("compression") or name.startswith("ablation") or name.startswith("generalisation"):
        from shelfcast.bench.cli import markdown_table

        return markdown_table(doc)
    if isinstance(doc, list):
        return records_table(doc)
    parts = [scalars_table(doc)]
    for key, value in doc.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            parts.append(f"\n{key}:\n\n" + records_table(value))
    return "\n".join(parts)


def update_readme(readme: Path, results: Path) -> list[str]:
    """Rewrite every table block of `readme`; returns the names written."""
    text = readme.read_text()
    written = []

    def replace(match: re.Match) -> str:
        name = match.group("name")
        path = results / f"{name}.json"
        if not path.exists():
            raise FileNotFoundError(f"{readme} has a table '{name}' but {path} does not exist; run its benchmark")
        written.append(name)
        return match.group(1) + render(name, json.loads(path.read_text())) + "\n" + match.group(4)

    readme.write_text(BLOCK.sub(replace, text))
    return written
