"""Reading jupytext percent notebooks as a list of cells with their line ranges.

The loader needs to know, line by line, which cell a line belongs to and whether
that cell is tagged ``export``; jupytext's reader gives cells but not line numbers,
so this module parses the percent format itself (the same header rules jupytext
uses) and ``tests/test_notebook.py`` checks it agrees with ``jupytext.read``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


_HEADER = re.compile(r"^# %%(?:\s+(?P<rest>.*))?$")

EXPORT_TAG = "export"


@dataclass
class Cell:
    """One cell of a percent notebook. ``start`` is the 0-based index of its ``# %%`` line."""

    cell_type: str  # "code", "markdown" or "raw"
    start: int
    stop: int  # exclusive: the next cell's header line, or the end of the file
    metadata: dict = field(default_factory=dict)

    @property
    def tags(self) -> list[str]:
        return list(self.metadata.get("tags", []))

    @property
    def is_export(self) -> bool:
        return self.cell_type == "code" and EXPORT_TAG in self.tags


_KEY = re.compile(r"(?:^|\s)([A-Za-z_][\w.-]*)=")


def _text_to_metadata(text: str) -> tuple[str, dict]:
    """Title and ``key=<json>`` pairs of a header; jupytext's own parser only for what this cannot read.

    Importing jupytext costs more than a second (nbformat, jsonschema), and loading a notebook
    should not: the autograder loads one per test session.
    """
    decoder = json.JSONDecoder()
    match = _KEY.search(text)
    title = text[: match.start()].strip() if match else text.strip()
    metadata, position = {}, match.start() if match else len(text)
    while position < len(text):
        match = _KEY.match(text, position)
        if match is None:
            if text[position:].strip():
                break
            return title, metadata
        try:
            value, end = decoder.raw_decode(text, match.end())
        except ValueError:
            break
        metadata[match.group(1)] = value
        position = end
    else:
        return title, metadata
    from jupytext.cell_metadata import text_to_metadata

    return text_to_metadata(text, allow_title=True)


def _parse_header(rest: str | None) -> tuple[str, dict]:
    if not rest:
        return "code", {}
    title, metadata = _text_to_metadata(rest.strip())
    cell_type = "code"
    for kind in ("markdown", "md", "raw"):
        if f"[{kind}]" in title:
            cell_type = "markdown" if kind == "md" else kind
    return cell_type, metadata


def parse_cells(lines: list[str]) -> list[Cell]:
    """Split the lines of a percent-format file into cells (the YAML header is not a cell)."""
    cells: list[Cell] = []
    for i, line in enumerate(lines):
        match = _HEADER.match(line.rstrip("\n"))
        if match:
            if cells:
                cells[-1].stop = i
            cell_type, metadata = _parse_header(match.group("rest"))
            cells.append(Cell(cell_type, i, len(lines), metadata))
    return cells


def read_cells(path: Path) -> tuple[list[str], list[Cell]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
    return lines, parse_cells(lines)


def export_source(path: Path) -> str:
    """The notebook's text with every line outside ``export`` code cells blanked.

    Blanking (rather than dropping) keeps line numbers identical to the file, so
    a traceback through the compiled module points at the learner's real line.
    """
    lines, cells = read_cells(path)
    keep = [False] * len(lines)
    for cell in cells:
        if cell.is_export:
            for i in range(cell.start + 1, cell.stop):
                keep[i] = True
    return "".join(line if keep[i] else "\n" for i, line in enumerate(lines))
