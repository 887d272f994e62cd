"""docs/results.md ends with every committed results file (docs/results/*.json) rendered by
``rsdistill tables``, the functions that wrote each run's results.md; this test renders them again
and compares, so a published table is checked against its file without re-running anything, and
a results file cannot be added, changed or removed without the page following (issue 34). The
figures docs/results.md cites are in the repository and small."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rsdistill.errors import InputError
from rsdistill.experiments.results_files import render, render_files

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKER = "<!-- generated: rsdistill tables docs/results/*.json -->"


def test_results_md_ends_with_every_results_file_as_rsdistill_tables_prints_it(monkeypatch):
    monkeypatch.chdir(ROOT)  # the headings name the files as the command line does
    files = sorted(str(p.relative_to(ROOT)) for p in (DOCS / "results").glob("*.json"))
    assert len(files) >= 10
    text = (DOCS / "results.md").read_text()
    assert text.count(MARKER) == 1, f"docs/results.md needs the line {MARKER} once, above the generated appendix"
    published = text.split(MARKER, 1)[1].strip("\n")
    expected = render_files(files).strip("\n")
    if published != expected:
        first = next(i for i, (a, b) in enumerate(zip(published.splitlines() + [""], expected.splitlines() + [""])) if a != b)
        raise AssertionError(f"the appendix differs from `rsdistill tables docs/results/*.json` at its line {first + 1}:\n"
                             f"published: {(published.splitlines() + [''])[first]!r}\nrendered:  {(expected.splitlines() + [''])[first]!r}")


def test_a_file_that_is_not_a_results_file_is_one_line():
    with pytest.raises(InputError, match="not a results file"):
        render({"a": 1})


def test_every_figure_results_md_cites_is_committed_and_small():
    text = (DOCS / "results.md").read_text()
    cited = sorted(set(re.findall(r"\(((?:results|figures)/[\w./-]+\.png)\)", text)))
    assert cited, "docs/results.md cites no committed figure"
    for name in cited:
        figure = DOCS / name
        assert figure.is_file(), f"docs/results.md cites {name}, which is not in the repository"
        assert figure.stat().st_size < 300_000, f"{name}: {figure.stat().st_size:,} bytes, over the 300 kB a committed figure may have"


def test_a_one_seed_curve_shows_no_spread():
    """A sweep run with one seed (the committed Slovenia seed-0 curve) prints a dash for the
    spread of every score and pair, never an unmeasured '± 0.00'."""
    text = render(json.loads((DOCS / "results" / "blm_kd_slovenia_label_budget_seed0.json").read_text()))
    assert "± 0.00" not in text and text.count("± –") == 9 * 4 + 7 * 4
