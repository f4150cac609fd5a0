"""Numbers of the studies as JSON and Markdown, and the index page that shows a study folder at a glance."""

from __future__ import annotations

import json
from pathlib import Path

INDEX = "index.md"


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n")
    return path


def markdown_table(rows: list[dict], columns, keys: tuple[str, ...] = ("feature",)) -> str:
    """Rows as a Markdown table: the ``keys`` as they are, then each ``(key, label, format)`` column (blank for
    None)."""
    header = [*keys, *(label for _, label, _ in columns)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(keys) + "|" + "---:|" * len(columns)]
    for row in rows:
        cells = [str(row.get(key, "")) for key in keys]
        cells += ["" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, title: str, rows: list[dict], columns, keys: tuple[str, ...] = ("feature",)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {title}\n\n" + markdown_table(rows, columns, keys))
    return path


def update_index(out: Path, study: str, summary: str, files: list[Path]) -> Path:
    """Add (or replace) one study's section in ``out/index.md``: its summary, tables inline, figures shown."""
    index = out / INDEX
    sections: dict[str, str] = {}
    if index.exists():
        for block in index.read_text().split("\n## ")[1:]:
            name = block.split("\n", 1)[0].strip()
            sections[name] = "## " + block.rstrip() + "\n"
    body = [f"## {study}\n", summary.strip() + "\n"]
    for path in files:
        relative = path.relative_to(out)
        if path.suffix == ".png":
            body.append(f"![{relative}]({relative})\n")
        elif path.suffix == ".md":
            body.append(path.read_text().split("\n", 2)[-1].strip() + "\n")
        else:
            body.append(f"[{relative}]({relative})\n")
    sections[study] = "\n".join(body)
    text = "# preimage analyses\n\nEach section is one `preimage analyze` study run into this folder.\n\n"
    index.write_text(text + "\n".join(sections[name] for name in sorted(sections)))
    return index
