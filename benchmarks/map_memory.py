"""Peak memory and time of ``rsdistill map`` (pixel classifier, block by block) against scene size.

    python benchmarks/map_memory.py --ckpt runs/blm_kd/enmap_tiles/student/seed_0/last.ckpt \
        [--sizes 256 512 1024 2048] [--threads 2] [--work /tmp/map_memory]

The scenes are mosaics of the real EnMAP Potsdam tiles (224 bands, their wavelengths, bad bands
and nodata; int16 GeoTIFFs, tiled) written to ``--work`` (never to the project); each map runs in
a fresh process, which reports its resident high-water mark (``ru_maxrss``) and wall time. Prints
a Markdown table: scene size, file size, peak MB, seconds, pixels per second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio

from rsdistill.data.paths import data_root
from rsdistill.evaluation.script_report import ScriptReport

CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[4]))
from rsdistill.cli import main
start = time.perf_counter()
code = main(["map", "--ckpt", sys.argv[1], "--scene", sys.argv[2], "--out", sys.argv[3]])
print(json.dumps({"code": code, "seconds": time.perf_counter() - start, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def mosaic(size: int, out: Path) -> Path:
    """A ``size``² mosaic of the real 32² EnMAP tiles, written window by window (never whole in memory)."""
    tiles = sorted((data_root() / "enmap_potsdam_specdeepmap/images").glob("*.tif"))
    with rasterio.open(tiles[0]) as first:
        profile, tags = first.profile, [first.tags(b) for b in range(1, first.count + 1)]
        nodata = first.nodata
    cubes = []
    for path in tiles:
        with rasterio.open(path) as ds:
            cubes.append(np.where(ds.read() == nodata, -32768, ds.read()).astype(np.int16))
    profile.update(height=size, width=size, dtype="int16", nodata=-32768, tiled=True, blockxsize=256, blockysize=256,
                   compress="none", interleave="pixel", count=len(tags))
    with rasterio.open(out, "w", **profile) as ds:
        for band, band_tags in enumerate(tags, start=1):
            ds.update_tags(band, **band_tags)
        for row in range(0, size, 32):
            strip = np.concatenate([cubes[(row // 32 * 7 + col // 32) % len(cubes)] for col in range(0, size, 32)], axis=2)
            ds.write(strip[:, :, :size], window=rasterio.windows.Window(0, row, size, 32))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/map_memory")
    parser.add_argument("--out", help="also write what is printed as a results file (JSON) for `rsdistill tables`")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report = ScriptReport(args.out)
    report.text(f"rsdistill map --ckpt {args.ckpt}, {args.threads} threads, fresh process per scene")
    report.text()
    report.table("scene", "bands", "file MB", "peak MB", "seconds", "pixels / s")
    for size in args.sizes:
        scene = work / f"enmap_mosaic_{size}.tif"
        if not scene.is_file():
            mosaic(size, scene)
        done = subprocess.run([sys.executable, "-c", CHILD, args.ckpt, str(scene), str(work / f"map_{size}.tif"), str(args.threads)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        report.row(f"{size}×{size}", 224, f"{scene.stat().st_size / 2**20:.0f}", f"{result['peak_mb']:.0f}", f"{result['seconds']:.1f}",
                   f"{size * size / result['seconds']:,.0f}")
    report.save()


if __name__ == "__main__":
    main()
