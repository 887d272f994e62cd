"""Every bad input gives one clear error line naming the file and the problem, exit code 2, no traceback."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from rsdistill.cli import main
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.errors import InputError
from rsdistill.io import read_scene, write_geotiff


def run_cli(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def test_truncated_mat(tmp_path, capsys):
    good = tmp_path / "good.mat"
    scipy.io.savemat(good, {"data": np.random.rand(20, 20, 30)}, do_compression=True)
    broken = tmp_path / "broken.mat"
    broken.write_bytes(good.read_bytes()[:600])
    code, err = run_cli(capsys, "info", str(broken))
    assert code == 2 and "broken.mat" in err and "truncated or corrupt" in err and "\n" not in err


def test_not_a_mat_file(tmp_path, capsys):
    path = tmp_path / "junk.mat"
    path.write_bytes(b"hello world" * 20)
    code, err = run_cli(capsys, "info", str(path))
    assert code == 2 and "junk.mat: not a MATLAB .mat file" in err


def test_mat_without_numeric_array(tmp_path, capsys):
    path = tmp_path / "text.mat"
    scipy.io.savemat(path, {"name": "indian pines", "n": 3})
    code, err = run_cli(capsys, "info", str(path))
    assert code == 2 and "text.mat: no 2-D or 3-D numeric variable" in err


def test_envi_header_disagrees_with_data(tmp_path, capsys):
    data = tmp_path / "cube.img"
    np.zeros((4, 5, 6), np.float32).tofile(data)
    (tmp_path / "cube.hdr").write_text(
        "ENVI\nsamples = 6\nlines = 5\nbands = 5\nheader offset = 0\nfile type = ENVI Standard\n"
        "data type = 4\ninterleave = bsq\nbyte order = 0\n"
    )
    code, err = run_cli(capsys, "info", str(data))
    assert code == 2 and "cube.img: file has 480 bytes" in err and "600 bytes" in err


def test_geotiff_without_wavelengths_when_required(tmp_path):
    scene = make_synthetic_scene("sentinel2", 8, 8).scene
    path = write_geotiff(tmp_path / "plain.tif", scene.cube)
    with pytest.raises(InputError, match="plain.tif: no wavelength metadata"):
        read_scene(path).sensor()


def test_cli_align_on_scene_without_wavelengths(tmp_path, capsys):
    path = write_geotiff(tmp_path / "plain.tif", make_synthetic_scene("sentinel2", 8, 8).scene.cube)
    code, err = run_cli(capsys, "align", "--source", str(path), "--target", "hls")
    assert code == 2 and "plain.tif: no wavelength metadata" in err


def test_wavelength_count_differs_from_band_count(tmp_path, capsys):
    path = tmp_path / "cube.npy"
    np.save(path, np.random.rand(6, 6, 12).astype(np.float32))
    with pytest.raises(InputError, match="cube.npy: 3 wavelengths given for 12 bands"):
        read_scene(path, wavelengths=[500, 600, 700])
    code, err = run_cli(capsys, "info", str(path), "--sensor", "sentinel2")
    assert code == 2 and "cube.npy: sensor 'sentinel2' has 13 bands but the file has 12" in err


def test_all_nodata_band_not_flagged(tmp_path, capsys):
    cube = np.random.rand(6, 6, 5).astype(np.float32)
    cube[:, :, 3] = -9999
    path = write_geotiff(tmp_path / "hole.tif", cube, nodata=-9999)
    with pytest.raises(InputError, match="hole.tif: band 3 has no valid sample"):
        read_scene(path)
    scene = read_scene(path, empty_bands="bad")
    assert scene.bad_bands.tolist() == [False, False, False, True, False] and scene.valid.all()
    code, err = run_cli(capsys, "stats", str(path), "--out", str(tmp_path / "s.json"))
    assert code == 2 and "band 3" in err


def test_label_map_shape_differs_from_cube(tmp_path):
    cube = tmp_path / "cube.npy"
    np.save(cube, np.random.rand(10, 12, 4).astype(np.float32))
    labels = tmp_path / "labels.npy"
    np.save(labels, np.ones((10, 11), np.uint8))
    with pytest.raises(InputError, match="labels.npy is 10×11 but scene .*cube.npy is 10×12"):
        read_scene(cube, labels=labels)


def test_unknown_sensor(capsys):
    code, err = run_cli(capsys, "align", "--source", "enmap", "--target", "landsat42")
    assert code == 2 and "unknown sensor 'landsat42'" in err and "sentinel2" in err


def test_missing_file(capsys):
    code, err = run_cli(capsys, "info", "/nonexistent/scene.tif")
    assert code == 2 and "/nonexistent/scene.tif: no such file" in err


def test_no_traceback_from_the_installed_command(tmp_path):
    broken = tmp_path / "broken.mat"
    broken.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 200)
    result = subprocess.run([sys.executable, "-m", "rsdistill", "info", str(broken)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert "broken.mat" in result.stderr
