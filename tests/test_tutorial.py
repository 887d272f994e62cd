"""docs/tutorial.md runs as written: every ``rsdistill`` line of its bash blocks, in order, on the
shared data (``$RSDISTILL_DATA``), each exiting 0, shortened as the README's commands are
(``fixtures.SHORTER``: the quickstart one epoch of one seed; its three seeds run in
``test_synthetic_and_cli.py::test_the_quickstart_console_has_no_warning_line``)."""

from __future__ import annotations

import re
from pathlib import Path

from fixtures import SHORTER, shell_commands
from rsdistill.cli import main

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"


def test_the_tutorial_runs_as_written(data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    steps = [[word for word, _ in argv] for _, argv in shell_commands(TUTORIAL.read_text(), {"RSDISTILL_DATA": str(data_dir)})]
    assert [s[0] for s in steps] == ["info", "info", "show", "quickstart", "map", "export", "map"]
    for step in steps:
        assert main(step + SHORTER.get(step[0], [])) == 0, f"rsdistill {' '.join(step)}\n{capsys.readouterr().err[-2000:]}"
    for made in ("scene.png", "runs/tutorial/results.md", "student_map.tif", "student.onnx", "student.parity.md", "student_map_onnx.tif"):
        assert (tmp_path / made).stat().st_size > 0, made
    printed = capsys.readouterr().out
    maps = re.findall(r"student_map(?:_onnx)?\.tif and .*?: (class .*)", printed)
    assert len(maps) == 2 and maps[0] == maps[1]  # PyTorch and onnxruntime draw the same map
