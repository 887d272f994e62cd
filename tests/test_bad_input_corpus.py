"""Every case of the bad-input corpus (``tests/bad_inputs.py``) through the installed command, each
in its own process: a non-zero exit, no traceback, at most three lines, the file named, in bounded time."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from bad_inputs import CASES


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict:
    """{case name: (the file it must name, the finished process, or the error making the case)}.
    Cases are made one after another, then run a process per core at once: each spends most of its
    seconds importing torch and Lightning."""
    made = {}
    for case in CASES:
        try:
            made[case.__name__] = case(tmp_path_factory.mktemp(case.__name__))
        except Exception as error:  # reported by that case's test, not by every test of the module
            made[case.__name__] = error
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(argv):
        return subprocess.run([sys.executable, "-m", "rsdistill", *argv], capture_output=True, text=True, errors="replace", timeout=120, env=env)

    runnable = {name: value for name, value in made.items() if not isinstance(value, Exception)}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = dict(zip(runnable, pool.map(run, [argv for argv, _ in runnable.values()])))
    return {name: value if isinstance(value, Exception) else (value[1], results[name]) for name, value in made.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_bad_input_is_one_clear_error(case, outcomes):
    outcome = outcomes[case.__name__]
    if isinstance(outcome, Exception):
        raise outcome
    name, result = outcome
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0, result.stdout[-500:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines and len(lines) <= 3, result.stderr[-2000:]
    assert name in lines[-1] or name.replace("\\", "") in result.stderr, result.stderr


def test_an_all_nodata_raster_reports_every_pixel_as_nodata(tmp_path, capsys):
    import numpy as np

    from rsdistill.io import read_scene, write_geotiff

    path = write_geotiff(tmp_path / "empty.tif", np.full((16, 16, 3), -9999, np.float32), nodata=-9999)
    scene = read_scene(path, empty_bands="bad")
    assert not scene.valid.any() and scene.bad_bands.all()
    from rsdistill.cli import main

    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "nodata       256 pixel(s) of 256" in out and "values       none: no valid pixel" in out


def test_a_mat_label_map_of_another_shape_is_reported(tmp_path):
    import numpy as np
    import scipy.io

    from rsdistill.io.describe import describe_file

    path = tmp_path / "scene.mat"
    scipy.io.savemat(path, {"cube": np.random.rand(10, 12, 5), "gt": np.ones((12, 10), np.uint8)})
    assert any("gt 12×10 looks like a label map but the cube cube is 10×12" in line for line in describe_file(path))
