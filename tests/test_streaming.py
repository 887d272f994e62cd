"""The streamed tile corpus: shards that partition an epoch across ranks and DataLoader workers,
an order fixed by (seed, epoch), nodata tiles replaced from the next pass, and statistics from a
``rsdistill stats`` file; and a streamed MAE run under Lightning DDP that resumes exactly after
its processes are killed."""

import csv
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

from rsdistill.data import TileData
from rsdistill.data.statistics import band_statistics
from rsdistill.errors import InputError
from rsdistill.io import write_geotiff
from rsdistill.io.geotiff import _OPEN
from rsdistill.recipes import make_recipe, parse_recipe
from rsdistill.tasks import MAEPretrainer
from rsdistill.tasks.loading import load_task

TESTS = Path(__file__).resolve().parent


def write_corpus(folder: Path, files: int, size: int = 16, bands: int = 4, nodata_files: int = 0) -> Path:
    """``files`` GeoTIFFs of size² px (the last ``nodata_files`` of them all nodata) and their stats file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(files):
        cube = rng.random((size, size, bands)).astype(np.float32) * 100 + k
        if k >= files - nodata_files:
            cube[:] = -1
        write_geotiff(folder / f"scene_{k:04d}.tif", cube, nodata=-1)
    band_statistics(sorted(folder.glob("scene_*.tif"))[: files - nodata_files]).save(folder / "stats.json")
    return folder


def streamed(folder: Path, **options) -> TileData:
    return TileData(images=[str(folder / "scene_*.tif")], stats=str(folder / "stats.json"), tile_size=8, batch_size=4,
                    streamed=True, **{"shuffle_buffer": 3, **options})


def epoch_keys(data: TileData, epoch: int, ranks: int) -> list[list[tuple[int, int, int]]]:
    """The tile keys each rank's loader yields in ``epoch``, in order."""
    seen = []
    for rank in range(ranks):
        loader = data.train_dataloader()
        loader.where = lambda: (epoch, rank, ranks)  # noqa: B023 (used at once)
        assert len(loader) == data.train_set.batches_per_rank()
        seen.append([tuple(key.tolist()) for batch in loader for key in batch["tile"]])
    return seen


def test_shards_partition_each_epoch_in_an_order_fixed_by_seed_and_epoch(tmp_path):
    folder = write_corpus(tmp_path / "corpus", files=8)  # 8 scenes × 4 tiles of 8²: 32 candidates
    data = streamed(folder, num_workers=2)
    every = {(f, r, c) for f in range(8) for r in (0, 8) for c in (0, 8)}
    first = epoch_keys(data, 0, ranks=2)
    assert [len(keys) for keys in first] == [16, 16]  # 2 ranks × 2 workers: each tile once, no rank sees another's
    assert Counter(first[0] + first[1]) == Counter(every)
    assert epoch_keys(data, 0, ranks=2) == first  # the same (seed, epoch): the same batches
    second = epoch_keys(data, 1, ranks=2)
    assert set(second[0] + second[1]) == every and second != first  # a new order each epoch
    alone = epoch_keys(streamed(folder), 0, ranks=1)[0]  # one process, no worker: still every tile once
    assert sorted(alone) == sorted(every)
    # memory bounded by what is read now, not by the corpus: no corpus file stays open after its header
    # was read or its shard moved on (each open 224-band GeoTIFF holds about 1.6 MB)
    assert not [key for key in _OPEN.datasets if key[1] == os.getpid() and key[0].startswith(str(folder))]
    item = next(iter(data.train_dataloader()))
    assert item["image"].shape == (4, 4, 8, 8) and item["valid"].all()
    pixels = np.stack([rasterio.open(path).read() for path in sorted(folder.glob("scene_*.tif"))])
    assert data.data_range == pytest.approx(pixels.max() - pixels.min())  # the stats file's range of every valid pixel
    assert data.info["scenes"] == [f"{folder / 'scene_*.tif'} (8 files in all)"]  # the corpus by its pattern in cards
    with pytest.raises(InputError, match="fewer than the 4 shards"):
        epoch_keys(streamed(write_corpus(tmp_path / "small", files=3, size=8), num_workers=2), 0, ranks=2)


def test_nodata_tiles_are_replaced_from_the_next_pass_and_stats_are_required(tmp_path):
    folder = write_corpus(tmp_path / "corpus", files=4, nodata_files=2)
    data = streamed(folder)
    [keys] = epoch_keys(data, 0, ranks=1)
    assert len(keys) == 16 and {f for f, _, _ in keys} == {0, 1}  # the quota is a pass's 16 candidates, from the 8 valid tiles
    assert Counter(keys).most_common(1)[0][1] == 2
    with pytest.raises(InputError, match="streamed: true needs stats"):
        TileData(images=[str(folder / "scene_*.tif")], tile_size=8, streamed=True)
    (folder / "old.json").write_text((folder / "stats.json").read_text().replace('"minimum"', '"low"'))
    with pytest.raises(InputError, match="old.json: the statistics have no minimum/maximum"):
        TileData(images=[str(folder / "scene_*.tif")], stats=str(folder / "old.json"), tile_size=8, streamed=True)


def mae_recipe(folder: Path, run_dir: Path, epochs: int, ddp: bool, kill_at: tuple[int, int] | None = None) -> dict:
    model = {"embed_dim": 16, "depth": 2, "num_heads": 2, "decoder_embed_dim": 8, "decoder_depth": 1, "patch_size": 4, "lr": 0.003}
    data = {"images": [str(folder / "scene_00[0-4]?.tif")], "validation": [str(folder / "scene_005?.tif")], "stats": str(folder / "stats.json"),
            "tile_size": 8, "batch_size": 4, "streamed": True, "shuffle_buffer": 8, "num_workers": 1}
    callbacks = [{"class_path": "fixtures.RecordTiles", "init_args": {"folder": str(run_dir.parent / f"{run_dir.name}_tiles")}}]
    if kill_at is not None:
        callbacks.append({"class_path": "fixtures.KillJob", "init_args": {"epoch": kill_at[0], "batch": kill_at[1]}})
    trainer = {"max_epochs": epochs, "enable_progress_bar": False, "enable_model_summary": False, "log_every_n_steps": 1, "deterministic": True,
               "callbacks": callbacks}
    if ddp:
        trainer.update({"strategy": "ddp", "accelerator": "cpu", "devices": 2})
    return make_recipe(MAEPretrainer, TileData, model, data, trainer, run_dir, 0)


def start(recipe: dict, path: Path, *extra: str) -> subprocess.Popen:
    """``rsdistill fit`` of ``recipe`` (written to ``path``) started in its own session; ``finish`` waits."""
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "rsdistill", "fit", "-c", str(path), *extra], cwd=path.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(job: subprocess.Popen) -> subprocess.CompletedProcess:
    with job:
        try:
            out, err = job.communicate(timeout=600)
        except subprocess.TimeoutExpired:  # kill the whole job (both ranks, their workers), not only the launcher
            os.killpg(job.pid, signal.SIGKILL)
            out, err = job.communicate()
            pytest.fail(f"rsdistill {' '.join(job.args[3:6])} did not finish in 600 s; its stderr ends:\n{err[-3000:]}")
    return subprocess.CompletedProcess(job.args, job.returncode, out, err)


def fit(recipe: dict, path: Path, *extra: str) -> subprocess.CompletedProcess:
    return finish(start(recipe, path, *extra))


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(), reason="torch without gloo")
def test_streamed_mae_under_ddp_shards_reduces_and_resumes_after_a_kill(tmp_path):
    folder = write_corpus(tmp_path / "corpus", files=60, size=16)  # 50 training scenes = 200 tiles = 25 steps per rank
    # the run to be killed runs beside the uninterrupted one (each spends most of its time importing)
    killed_job = start(mae_recipe(folder, tmp_path / "killed", 2, ddp=True, kill_at=(1, 10)), tmp_path / "killed.yaml")
    done = fit(mae_recipe(folder, tmp_path / "straight", 2, ddp=True), tmp_path / "straight.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    straight = tmp_path / "straight"
    assert {p.name for p in straight.iterdir()} == {"config.yaml", "hparams.yaml", "last.ckpt", "metrics.csv", "encoder.safetensors",
                                                   "encoder.json"} | {p.name for p in straight.iterdir() if p.suffix == ".png"}
    for epoch in range(2):  # per epoch, the two ranks' tiles are disjoint and cover the corpus once
        seen = [np.loadtxt(tmp_path / "straight_tiles" / f"rank_{rank}_epoch_{epoch}.txt", dtype=int).reshape(-1, 3) for rank in (0, 1)]
        assert len(seen[0]) == len(seen[1]) == 100 and len({tuple(k) for k in np.concatenate(seen)}) == 200
    ddp_val = {k: float(v) for k, v in [r for r in rows(straight) if r.get("val/psnr_tile")][-1].items() if k.startswith("val/") and v}
    single = parse_recipe(mae_recipe(folder, tmp_path / "single", 1, ddp=False))
    [scores] = single.trainer.validate(load_task(straight / "last.ckpt"), single.datamodule, verbose=False)
    for key in ("val/psnr_tile", "val/psnr_masked", "val/ssim_tile", "val/sam_tile", "val/total"):
        assert scores[key] == pytest.approx(ddp_val[key], rel=1e-5), key  # reduced across ranks, not rank 0's half

    killed = finish(killed_job)
    assert killed.returncode == -signal.SIGKILL  # every rank killed in epoch 1, as a scheduler kills a job
    assert torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)["epoch"] == 0
    done = fit(mae_recipe(folder, tmp_path / "killed", 2, ddp=True), tmp_path / "resumed.yaml", "--ckpt_path", "last")
    assert done.returncode == 0, done.stderr[-3000:]
    expected, resumed = (torch.load(p / "last.ckpt", weights_only=True)["state_dict"] for p in (straight, tmp_path / "killed"))
    assert expected.keys() == resumed.keys() and all(torch.equal(expected[k], resumed[k]) for k in expected)
    assert rows(tmp_path / "killed") == rows(straight)
