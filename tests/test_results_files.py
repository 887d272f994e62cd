"""The committed results files (docs/results/*.json) and docs/results.md agree: every file is
cited on the page and renders with ``rsdistill tables`` (the functions that wrote its run's
results.md), and every table the page marks ``<!-- rsdistill tables docs/results/NAME.json -->``
is, row for row, a table of that file's rendering, so a quoted table cannot drift from its file
(issue 34). The rest of a file's tables are one command away, not copied into the page. The
figures docs/results.md cites are in the repository and small."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rsdistill.errors import InputError
from rsdistill.experiments.results_files import render

DOCS = Path(__file__).resolve().parents[1] / "docs"
FILES = sorted((DOCS / "results").glob("*.json"))
QUOTE = re.compile(r"<!-- rsdistill tables docs/results/([\w.-]+\.json) -->")


def tables(markdown_lines: list[str]) -> list[list[str]]:
    """The runs of consecutive table lines."""
    found, current = [], []
    for line in markdown_lines + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            found.append(current)
            current = []
    return found


def test_every_results_file_is_cited_and_renders():
    text = (DOCS / "results.md").read_text()
    assert len(FILES) >= 10
    for path in FILES:
        assert f"docs/results/{path.name}" in text, f"{path.name} is not cited in docs/results.md"
        assert tables(render(json.loads(path.read_text())).splitlines()), path.name


def test_every_quoted_table_is_a_table_of_its_file():
    lines = (DOCS / "results.md").read_text().splitlines()
    quoted = [(QUOTE.fullmatch(line).group(1), index) for index, line in enumerate(lines) if QUOTE.fullmatch(line)]
    assert {name for name, _ in quoted} >= {"blm_kd_enmap_tiles.json", "galileo_dubai_frozen_backbones.json",
                                            "kd_slovenia_privileged_cv_srf.json", "segmentation_dubai_mask_cdkd_rerun_seed0.json",
                                            "galileo_slovenia_cv_kd.json", "galileo_enmap_cv_kd.json"}
    for name, index in quoted:
        assert (DOCS / "results" / name).is_file(), f"docs/results.md quotes {name}, which is not committed"
        table = tables(lines[index + 1:])[0]
        assert lines[index + 1] == table[0], f"the table quoted from {name} must follow its marker line"
        assert table in tables(render(json.loads((DOCS / "results" / name).read_text())).splitlines()), (
            f"the table quoted from {name} (docs/results.md line {index + 2}) is not what `rsdistill tables` prints")


def test_a_file_that_is_not_a_results_file_is_one_line():
    with pytest.raises(InputError, match="not a results file"):
        render({"a": 1})


def test_a_one_seed_curve_shows_no_spread():
    """A sweep run with one seed (the committed Slovenia seed-0 curve) prints a dash for the
    spread of every score and pair, never an unmeasured '± 0.00'."""
    text = render(json.loads((DOCS / "results" / "blm_kd_slovenia_label_budget_seed0.json").read_text()))
    assert "± 0.00" not in text and text.count("± –") == 9 * 4 + 7 * 4


def test_every_figure_results_md_cites_is_committed_and_small():
    text = (DOCS / "results.md").read_text()
    cited = sorted(set(re.findall(r"\(((?:results|figures)/[\w./-]+\.png)\)", text)))
    assert cited, "docs/results.md cites no committed figure"
    for name in cited:
        figure = DOCS / name
        assert figure.is_file(), f"docs/results.md cites {name}, which is not in the repository"
        assert figure.stat().st_size < 300_000, f"{name}: {figure.stat().st_size:,} bytes, over the 300 kB a committed figure may have"
