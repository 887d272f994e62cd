"""Peak memory and throughput of pretraining tiles read from a growing corpus of scene files.

    python benchmarks/streamed_corpus.py [--files 10 100 1000] [--workers 0 1 2] [--tiles 512]
        [--threads 1] [--buffer 256] [--work /tmp/streamed_corpus]

The corpus is copies of the real EnMAP Potsdam tiles (32² px, 224 bands, int16, their band
metadata, nodata and bad bands), cycled to the file count and written to ``--work`` (never to the
project), with a ``rsdistill stats`` file. For each file count, each data mode (``streamed``:
``TileData(streamed=True)``; ``built``: the default ``TileData``, which reads every tile once when
it is built, for its nodata check and statistics, and keeps every scene open) and each worker count, a fresh process builds the data and
draws ``--tiles`` training tiles of 16² (batches of 32) through its DataLoader. It reports the
build time, tiles per second while drawing, and the resident high-water mark (``ru_maxrss``) of the
main process and of its largest DataLoader worker. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from rsdistill.data.paths import data_root
from rsdistill.data.statistics import band_statistics
from rsdistill.evaluation.script_report import ScriptReport

CHILD = """
import json, resource, sys, time, torch
torch.set_num_threads(int(sys.argv[5]))
from rsdistill.data import TileData
folder, mode, workers, tiles, buffer = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[6])
start = time.perf_counter()
data = TileData(images=[folder + "/scene_*.tif"], stats=folder + "/stats.json", tile_size=16, batch_size=32,
                num_workers=workers, train_tiles_per_epoch=tiles, streamed=mode == "streamed",
                **({"shuffle_buffer": buffer} if mode == "streamed" else {}))
built = time.perf_counter()
drawn = sum(len(batch["image"]) for batch in data.train_dataloader())
done = time.perf_counter()
print(json.dumps({"build_s": built - start, "tiles": drawn, "tiles_per_s": drawn / (done - built),
                  "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def corpus(files: int, work: Path) -> Path:
    """``files`` copies of the real EnMAP tiles (cycled) and their stats file in ``work/<files>``."""
    folder = work / str(files)
    if not (folder / "stats.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tiles = sorted((data_root() / "enmap_potsdam_specdeepmap/images").glob("*.tif"))
        for k in range(files):
            shutil.copyfile(tiles[k % len(tiles)], folder / f"scene_{k:05d}.tif")
        band_statistics(sorted(folder.glob("scene_*.tif"))).save(folder / "stats.json")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tiles", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--buffer", type=int, default=256, help="shuffle buffer of the streamed rows (tiles)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/streamed_corpus"))
    parser.add_argument("--out", help="also write what is printed as a results file (JSON) for `rsdistill tables`")
    args = parser.parse_args()
    report = ScriptReport(args.out)
    report.table("files", "data", "workers", "build (s)", "tiles/s", "peak MB main", "peak MB worker")
    for files in args.files:
        folder = corpus(files, args.work)
        for mode, workers in [("streamed", w) for w in args.workers] + [("built", 0)]:
            done = subprocess.run([sys.executable, "-c", CHILD, str(folder), mode, str(workers), str(args.tiles), str(args.threads), str(args.buffer)],
                                  capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            worker = f"{r['worker_mb']:.0f}" if workers else ""
            report.row(files, mode, workers, f"{r['build_s']:.1f}", f"{r['tiles_per_s']:.0f}", f"{r['main_mb']:.0f}", worker)
    report.save()


if __name__ == "__main__":
    main()
