import json

import numpy as np

from rsdistill.cli import main
from rsdistill.data.synthetic import make_synthetic_scene
from rsdistill.spectral import get_sensor


def test_synthetic_scene_is_a_linear_mixture():
    synthetic = make_synthetic_scene("enmap", 32, 24, noise=0.0, seed=5)
    scene, abundances = synthetic.scene, synthetic.abundances
    assert scene.shape == (32, 24, 224)
    np.testing.assert_allclose(abundances.sum(-1), 1.0, rtol=1e-5)
    assert (abundances >= 0).all()
    np.testing.assert_array_equal(scene.labels, abundances.argmax(-1) + 1)
    good = ~scene.bad_bands
    np.testing.assert_allclose(scene.cube[:, :, good], (abundances @ synthetic.endmembers.T)[:, :, good], atol=1e-5)
    assert scene.bad_bands.sum() == 6 and not scene.cube[:, :, ~good].any()


def test_vegetation_has_a_red_edge():
    synthetic = make_synthetic_scene("sentinel2", 4, 4)
    names = [b.name for b in get_sensor("sentinel2").bands]
    vegetation = synthetic.endmembers[:, synthetic.materials.index("vegetation")]
    assert vegetation[names.index("B8A")] > 4 * vegetation[names.index("B04")]


def test_help_lists_every_verb(capsys):
    try:
        main(["--help"])
    except SystemExit as stop:
        assert stop.code == 0
    out = capsys.readouterr().out
    for verb in ("info", "sensors", "align", "stats", "quickstart"):
        assert verb in out


def test_info_on_real_enmap_tile(real_file, capsys):
    assert main(["info", str(real_file("enmap_potsdam_specdeepmap/images/enmap_potsdam_tile_128_0.tif"))]) == 0
    out = capsys.readouterr().out
    assert "32 × 32 × 224" in out and "418.2 – 2445.5 nm" in out and "EPSG:32633" in out and "129-134" in out


def test_info_on_label_map_lists_classes(real_file, capsys):
    assert main(["info", str(real_file("pavia_university/PaviaU_gt.mat"))]) == 0
    out = capsys.readouterr().out
    assert "label map" in out and "class   2  18649 px" in out


def test_align_and_stats_verbs(real_file, tmp_path, capsys):
    assert main(["align", "--source", "enmap", "--target", "hls", "--method", "srf"]) == 0
    assert "NIR_Narrow" in capsys.readouterr().out
    tiles = sorted(real_file("enmap_potsdam_specdeepmap/images").glob("*.tif"))[:3]
    assert main(["stats", *map(str, tiles), "--out", str(tmp_path / "stats.json")]) == 0
    assert "224 bands" in capsys.readouterr().out and (tmp_path / "stats.json").is_file()


def test_verbs_find_files_by_the_data_root_rule(data_dir, tmp_path, monkeypatch, capsys):
    """``info`` and ``stats`` did not read relative paths under $RSDISTILL_DATA, and said only
    "no such file or folder"."""
    monkeypatch.setenv("RSDISTILL_DATA", str(data_dir))
    monkeypatch.chdir(tmp_path)
    tile = "enmap_potsdam_specdeepmap/images/enmap_potsdam_tile_128_0.tif"
    assert main(["info", tile]) == 0
    assert "224" in capsys.readouterr().out
    assert main(["stats", tile, "--out", str(tmp_path / "stats.json")]) == 0
    assert main(["info", "enmap_potsdam_specdeepmap/images/missing.tif"]) == 2
    err = capsys.readouterr().err
    assert str(data_dir / "enmap_potsdam_specdeepmap/images/missing.tif") in err and "RSDISTILL_DATA" in err


def test_align_reports_and_skips_a_band_the_source_cannot_make(capsys):
    """The README's ``align --source enmap --target sentinel2 --method srf`` failed on B10 (cirrus,
    inside EnMAP's water-vapour gap)."""
    assert main(["align", "--source", "enmap", "--target", "sentinel2", "--method", "srf"]) == 0
    out = capsys.readouterr().out
    assert "not covered by enmap, skipped: B10" in out and "B11" in out


def test_the_quickstart_console_has_no_warning_line(tmp_path):
    """Lightning's litlogger tip, torch's LeafSpec deprecation, "Checkpoint directory ... exists and
    is not empty" (on a brand-new run folder), and "Seed set to 0", "GPU/TPU available: False ..."
    and "`Trainer.fit` stopped: `max_epochs=1` reached" were printed on every fit; RSDISTILL_VERBOSE
    brings them back."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RSDISTILL_VERBOSE"}
    done = subprocess.run([sys.executable, "-m", "rsdistill", "quickstart", "--epochs", "1", "--out", str(tmp_path / "qs")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    noise = ("warn", "tip:", "not empty", "seed set to", "available: ", "stopped: `max_epochs")
    lines = [line for line in (done.stdout + done.stderr).splitlines() if any(n in line.lower() for n in noise)]
    assert lines == []
    assert "student_kd" in done.stdout
    # the paired line is the run's own difference, KD − no KD, whatever its sign
    (pair,) = [row for row in json.loads((tmp_path / "qs/results.json").read_text())["paired"] if row["metric"] == "oa"]
    assert pair["seeds"] == [0, 1, 2]  # three seeds by default, each a paired unit
    differences = ", ".join(f"{100 * d:+.2f}" for d in pair["differences"])
    assert f"KD − no KD, OA points per seed: {differences}; mean {100 * pair['mean']:+.2f} ± {100 * pair['std']:.2f}, ahead on" in done.stdout


def test_the_quickstart_verdict_pairs_three_seeds_or_says_it_cannot():
    from rsdistill.cli.verbs import quickstart_verdict
    from rsdistill.evaluation.paired import paired_differences

    oa = {("student_kd", 0): 0.80, ("student", 0): 0.78, ("student_kd", 1): 0.70, ("student", 1): 0.71, ("student_kd", 2): 0.90, ("student", 2): 0.87}
    records = [{"model": m, "seed": s, "oa": v} for (m, s), v in oa.items()]
    line = quickstart_verdict(paired_differences(records, [("student_kd", "student")], ["oa"])[0])
    # differences +2, -1, +3: mean 1.33, population std 1.70, t = 1.33 / (2.08 / sqrt 3) = 1.11, p = 0.38 (2 df)
    assert line == "KD − no KD, OA points per seed: +2.00, -1.00, +3.00; mean +1.33 ± 1.70, ahead on 2 of 3 seeds, paired t p 0.383"
    one = quickstart_verdict(paired_differences(records[:2], [("student_kd", "student")], ["oa"])[0])
    assert one == "KD − no KD, OA points per seed: +2.00 (fewer than 3 seeds: no test; --seeds 0 1 2 gives one)"
