"""The committed results files (docs/results/*.json) and the results pages (docs/results.md, the
index, and the docs/results-*.md it lists) agree: every file is cited on a page and renders with ``rsdistill tables`` (the functions that wrote its run's
results.md), and every table a page marks ``<!-- rsdistill tables docs/results/NAME.json -->``
is, row for row, a table of that file's rendering, so a quoted table cannot drift from its file
(issue 34). The rest of a file's tables are one command away, not copied into the page. The
figures the pages cite are in the repository and small."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rsdistill.errors import InputError
from rsdistill.experiments.results_files import render

DOCS = Path(__file__).resolve().parents[1] / "docs"
FILES = sorted((DOCS / "results").glob("*.json"))
PAGES = [DOCS / "results.md", *sorted(DOCS.glob("results-*.md"))]
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


def test_the_index_lists_every_results_page():
    index = PAGES[0].read_text()
    assert len(PAGES) >= 7 and all(f"]({page.name})" in index for page in PAGES[1:])


def test_every_results_file_is_cited_and_renders():
    text = "\n".join(page.read_text() for page in PAGES)
    assert len(FILES) >= 10
    for path in FILES:
        assert f"docs/results/{path.name}" in text, f"{path.name} is not cited on any results page"
        assert tables(render(json.loads(path.read_text())).splitlines()), path.name


def test_every_quoted_table_is_a_table_of_its_file():
    pages = {page: page.read_text().splitlines() for page in PAGES}
    quoted = [(name, page, index) for page, lines in pages.items() for name, index in _quoted(lines)]
    assert {name for name, _, _ in quoted} >= {"blm_kd_enmap_tiles.json", "galileo_dubai_frozen_backbones.json",
                                            "kd_slovenia_privileged_cv_srf.json", "segmentation_dubai_mask_cdkd_rerun_seed0.json",
                                            "galileo_slovenia_cv_kd.json", "galileo_enmap_cv_kd.json"}
    rendered = {}  # results file -> the tables `rsdistill tables` prints for it (a file is quoted several times)
    for name, page, index in quoted:
        lines = pages[page]
        assert (DOCS / "results" / name).is_file(), f"docs/{page.name} quotes {name}, which is not committed"
        table = tables(lines[index + 1:])[0]
        assert lines[index + 1] == table[0], f"the table quoted from {name} must follow its marker line"
        if name not in rendered:
            rendered[name] = tables(render(json.loads((DOCS / "results" / name).read_text())).splitlines())
        assert table in rendered[name], (
            f"the table quoted from {name} (docs/{page.name} line {index + 2}) is not what `rsdistill tables` prints")


def _quoted(lines: list[str]) -> list[tuple[str, int]]:
    """(results file, line index of its marker) of every table a page of ``lines`` quotes."""
    return [(QUOTE.fullmatch(line).group(1), index) for index, line in enumerate(lines) if QUOTE.fullmatch(line)]


def test_a_file_that_is_not_a_results_file_is_one_line():
    with pytest.raises(InputError, match="not a results file"):
        render({"a": 1})


def test_a_one_seed_curve_shows_no_spread():
    """A sweep run with one seed (the committed Slovenia seed-0 curve) prints a dash for the
    spread of every score and pair, never an unmeasured '± 0.00'."""
    text = render(json.loads((DOCS / "results" / "blm_kd_slovenia_label_budget_seed0.json").read_text()))
    assert "± 0.00" not in text and text.count("± –") == 9 * 4 + 7 * 4


def test_every_figure_the_results_pages_cite_is_committed_and_small():
    text = "\n".join(page.read_text() for page in PAGES)
    cited = sorted(set(re.findall(r"\(((?:results|figures)/[\w./-]+\.png)\)", text)))
    assert cited, "the results pages cite no committed figure"
    for name in cited:
        figure = DOCS / name
        assert figure.is_file(), f"a results page cites {name}, which is not in the repository"
        assert figure.stat().st_size < 300_000, f"{name}: {figure.stat().st_size:,} bytes, over the 300 kB a committed figure may have"


def test_tables_piped_into_a_reader_that_stops_early_print_no_traceback():
    """`rsdistill tables ... | head -n 1`: every results file (far more than a pipe's buffer), so
    the writes after head has gone fail; the verb ends quietly (break tried: without the
    BrokenPipeError branch in cli.main, a traceback ends stderr)."""
    import subprocess
    import sys

    files = " ".join(str(f) for f in FILES)
    done = subprocess.run(f"{sys.executable} -m rsdistill tables {files} | head -n 1", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.startswith("## ") and done.stderr == ""


def test_a_benchmark_scripts_out_renders_what_it_printed(tmp_path):
    """``benchmarks/masking_cost.py --out`` (tiny sizes) keeps its text and table: ``rsdistill
    tables`` prints them again, and the file names the command and the machine."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "masking.json"
    done = subprocess.run([sys.executable, str(root / "benchmarks/masking_cost.py"), "--bands", "6", "--tile", "8", "--batch", "2",
                           "--threads", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["command"].endswith(f"--out {out}") and report["machine"]["cores"] >= 1
    printed = done.stdout.split(f"\nwrote {out}")[0]
    assert render(report) == printed
    assert [row.split(" | ")[0] for row in tables(printed.splitlines())[0][2:]] == ["| random", "| gabor", "| wavelet"]


def test_a_report_row_must_fit_its_table(tmp_path):
    from rsdistill.evaluation.script_report import ScriptReport

    with pytest.raises(InputError, match="name a .json file"):
        ScriptReport(tmp_path / "table.md")
    report = ScriptReport()
    with pytest.raises(ValueError, match="before ScriptReport.table"):
        report.row("a")
    report.table("x", "y")
    with pytest.raises(ValueError, match="1 cells in a table of 2"):
        report.row("a")


def test_a_one_seed_pair_shows_no_spread():
    """The paired table of a one-seed experiment (the committed Mask-CDKD teacher rows, seed 0)
    gives the difference and a dash, never an unmeasured '± 0.00'."""
    text = render(json.loads((DOCS / "results/segmentation_dubai_mask_cdkd_teacher_seed0.json").read_text()))
    paired = [line for line in text.splitlines() if " − upernet_teacher |" in line]
    assert len(paired) == 3 and all(" ± – |" in line for line in paired) and "± 0.00" not in text
