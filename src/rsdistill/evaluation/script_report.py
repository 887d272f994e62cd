"""What a benchmark script prints, kept so that it can be committed as a results file.

A script in ``benchmarks/`` prints a few lines of text and Markdown tables. ``ScriptReport``
prints them as before and keeps them, in order, with the command that produced them and the
machine it ran on; ``--out FILE.json`` writes that record, and ``rsdistill tables FILE.json``
prints the same text again (``markdown``), so a published table can be checked against the
file by rendering it (``tests/test_results_files.py``). Cells are kept as printed: a benchmark's
numbers are its medians and ranges as the table gives them, not re-derived.

Record (JSON): ``{"report": SCRIPT, "command": str, "machine": {...}, "items": [ITEM, ...]}``,
each item either ``{"text": str}`` or ``{"columns": [str, ...], "rows": [[str, ...], ...]}``.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from rsdistill.errors import InputError
from rsdistill.files import write_json


def machine() -> dict:
    """The facts a timing depends on: CPU model, cores, torch and its thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version()}


class ScriptReport:
    """Prints a script's text and tables as they come and keeps them for ``save``."""

    def __init__(self, out: str | Path | None = None):
        self.out = None if out is None else Path(out)
        if self.out is not None and self.out.suffix != ".json":
            raise InputError(f"--out {out}: the report is written as JSON; name a .json file")
        self.items: list[dict] = []

    def text(self, line: str = "") -> None:
        """One line of text (a blank line when empty)."""
        print(line, flush=True)
        self.items.append({"text": line})

    def table(self, *columns: str) -> None:
        """Starts a table with these column headings; ``row`` adds to it."""
        print("\n".join(_header(columns)), flush=True)
        self.items.append({"columns": list(columns), "rows": []})

    def row(self, *cells) -> None:
        """One row of the table last started, cells formatted as they are to be read."""
        table = self.items[-1] if self.items else {}
        if "columns" not in table:
            raise ValueError("ScriptReport.row before ScriptReport.table")
        if len(cells) != len(table["columns"]):
            raise ValueError(f"a row of {len(cells)} cells in a table of {len(table['columns'])} columns")
        cells = [str(cell) for cell in cells]
        print(_line(cells), flush=True)
        table["rows"].append(cells)

    def save(self) -> None:
        """Writes the record to ``out`` (atomically), if one was given."""
        if self.out is None:
            return
        command = " ".join(shlex.quote(part) for part in ["python", *sys.argv])
        write_json(self.out, {"report": Path(sys.argv[0]).name, "command": command, "machine": machine(), "items": self.items})
        print(f"\nwrote {self.out}")


def markdown(report: dict) -> str:
    """The text and tables of a saved report, as the script printed them."""
    lines = []
    for item in report["items"]:
        if "columns" in item:
            lines += [*_header(item["columns"]), *map(_line, item["rows"])]
        else:
            lines.append(item["text"])
    return "\n".join(lines) + "\n"


def _line(cells) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def _header(columns) -> list[str]:
    """A Markdown table's heading row and its rule."""
    return [_line(columns), "|---" * len(columns) + "|"]
